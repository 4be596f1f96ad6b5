"""Exact policy gradient ascent on a tabular MDP: softmax, escort, NeuRD and GNPG with exact gradients.

Every iteration evaluates the current policy exactly (``Q^pi`` and the discounted visitation ``d^pi_rho`` by one
sparse LU factorisation of ``I - gamma P_pi``) and takes one step along

    dV(rho)/dtheta_s = 1/(1-gamma) * d(s) * sum_a dpi(a|s)/dtheta_s * Q(s, a)

For a policy ``pi(.|s) = softmax(z(theta_s))`` with elementwise logits ``z`` this is
``1/(1-gamma) * d(s) * pi(a|s) * A(s, a) * z'(theta_{s,a})`` with ``A = Q - V``:

- softmax: ``z = theta``, ``z' = 1``;
- escort: ``z = p * log(|theta| + eps)``, ``z' = p * sign(theta) / (|theta| + eps)``, which without ``eps`` is the
  escort gradient ``(p / ||theta_s||_p) * sign(theta) * pi^(1-1/p) * A``;
- GNPG: the softmax gradient divided by its L2 norm (over all states);
- NeuRD: no Jacobian at all, ``theta_s += eta * (Q(s, .) - V(s))`` in every state, gated by the logit threshold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

from envs.tabular import TabularMDP, discounted_visitation, policy_evaluation, value_iteration
from policies.distributions import DEFAULT_EPS

POLICIES = ("softmax", "escort", "neurd", "gnpg")
OPTIMIZERS = ("sgd", "adam")
INITS = ("uniform", "random", "adversarial")
ESCAPES = ("auto", "action", "value")
RHOS = ("env", "uniform")
HISTORY_KEYS = ("value", "gap", "pi_star", "grad_norm")

Callback = Callable[["ExactPG"], bool | None]


@dataclass(frozen=True)
class Evaluation:
    """
    Exact quantities of one policy.

    :param pi: ``(S, A)`` action probabilities.
    :param V: ``(S,)`` state values ``V^pi``.
    :param Q: ``(S, A)`` action values ``Q^pi``.
    :param d: ``(S,)`` normalised discounted state visitation ``d^pi_rho``.
    :param value: ``V^pi(rho)``.
    """

    pi: np.ndarray
    V: np.ndarray
    Q: np.ndarray
    d: np.ndarray
    value: float

    @property
    def advantage(self) -> np.ndarray:
        """``A(s, a) = Q(s, a) - V(s)``."""
        return self.Q - self.V[:, None]


def softmax(logits: np.ndarray) -> np.ndarray:
    """
    Row-wise softmax.

    :param logits: ``(S, A)`` logits.
    :return: ``(S, A)`` probabilities.
    """
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Parameterization:
    """How parameters ``theta`` (``(S, A)``) give a policy: logits ``z(theta)`` applied elementwise, then a softmax."""

    def probs(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` parameters.
        :return: ``(S, A)`` probabilities."""
        raise NotImplementedError

    def logit_slope(self, theta: np.ndarray) -> np.ndarray | float:
        """:param theta: ``(S, A)`` parameters.
        :return: ``dz/dtheta`` elementwise."""
        raise NotImplementedError

    def from_probs(self, pi: np.ndarray) -> np.ndarray:
        """:param pi: ``(S, A)`` strictly positive probabilities.
        :return: parameters whose policy is ``pi``."""
        raise NotImplementedError

    def project(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: parameters after a step.
        :return: the parameters kept (by default ``theta`` itself)."""
        return theta

    def direction(self, theta: np.ndarray, advantage: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` parameters.
        :param advantage: ``(S, A)`` advantages ``Q - V`` of their policy.
        :param grad: ``(S, A)`` exact gradient of ``V(rho)``.
        :return: the ascent direction (by default the gradient itself)."""
        return grad


class SoftmaxParameterization(Parameterization):
    """``pi(.|s) = softmax(theta_s)``; the same initial policy ``pi0`` has ``theta = log pi0``."""

    def probs(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` logits.
        :return: ``(S, A)`` probabilities."""
        return softmax(theta)

    def logit_slope(self, theta: np.ndarray) -> np.ndarray | float:
        """:param theta: ``(S, A)`` logits.
        :return: 1."""
        return 1.0

    def from_probs(self, pi: np.ndarray) -> np.ndarray:
        """:param pi: ``(S, A)`` strictly positive probabilities.
        :return: ``log pi``."""
        return np.log(pi)


class GnpgParameterization(SoftmaxParameterization):
    """Softmax logits moved along the normalised gradient ``g / ||g||_2`` (Mei et al., 2021)."""

    def direction(self, theta: np.ndarray, advantage: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` logits.
        :param advantage: ``(S, A)`` advantages (unused).
        :param grad: ``(S, A)`` exact softmax gradient.
        :return: ``grad / ||grad||_2`` (0 where the gradient is 0)."""
        norm = np.linalg.norm(grad)
        return grad / norm if norm > 0 else grad


class EscortParameterization(Parameterization):
    """
    ``pi(a|s) = |theta_sa|^p / ||theta_s||_p^p``, computed as the softmax of ``p * log(|theta| + eps)``.

    The initial policy ``pi0`` has ``theta = pi0^(1/p)`` (unit p-norm, every entry positive).

    :param p: escort power, > 0.
    :param normalize: renormalise every ``theta_s`` to unit p-norm after each step.
    :param eps: floor added to ``|theta|``, the rule of :func:`policies.escort_logits`.
    """

    def __init__(self, p: float, normalize: bool, eps: float) -> None:
        self.p = p
        self.normalize = normalize
        self.eps = eps

    def probs(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` escort parameters.
        :return: ``(S, A)`` probabilities."""
        return softmax(self.p * np.log(np.abs(theta) + self.eps))

    def logit_slope(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` escort parameters.
        :return: ``p * sign(theta) / (|theta| + eps)``."""
        return self.p * np.sign(theta) / (np.abs(theta) + self.eps)

    def from_probs(self, pi: np.ndarray) -> np.ndarray:
        """:param pi: ``(S, A)`` probabilities.
        :return: ``pi^(1/p)``."""
        return pi ** (1.0 / self.p)

    def project(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: parameters after a step.
        :return: each row divided by its p-norm when ``normalize``, else ``theta``."""
        if not self.normalize:
            return theta
        norms = (np.abs(theta) ** self.p).sum(axis=1, keepdims=True) ** (1.0 / self.p)
        return theta / np.where(norms > 0, norms, 1.0)


class NeurdParameterization(SoftmaxParameterization):
    """
    Softmax logits moved along the thresholded advantages, kept mean-centred (as OpenSpiel's ``neurd.py`` centres
    them before thresholding).

    :param beta: the logit threshold, > 0 (``inf``: none).
    """

    def __init__(self, beta: float) -> None:
        self.beta = beta

    def direction(self, theta: np.ndarray, advantage: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """:param theta: ``(S, A)`` mean-centred logits.
        :param advantage: ``(S, A)`` advantages ``Q - V``.
        :param grad: ``(S, A)`` softmax gradient (unused: NeuRD drops the softmax Jacobian).
        :return: the advantages, zeroed where the threshold forbids the move."""
        return neurd_threshold(theta, advantage, self.beta)

    def from_probs(self, pi: np.ndarray) -> np.ndarray:
        """:param pi: ``(S, A)`` strictly positive probabilities.
        :return: mean-centred log-probabilities."""
        return self.project(np.log(pi))

    def project(self, theta: np.ndarray) -> np.ndarray:
        """:param theta: logits after a step.
        :return: the logits minus their row mean."""
        return theta - theta.mean(axis=1, keepdims=True)


def neurd_threshold(theta: np.ndarray, update: np.ndarray, beta: float) -> np.ndarray:
    """
    OpenSpiel's ``thresholded``: a logit may only increase while below ``beta`` and only decrease while above ``-beta``.

    :param theta: ``(S, A)`` mean-centred logits.
    :param update: ``(S, A)`` proposed update direction.
    :param beta: the threshold, > 0.
    :return: the update with the forbidden entries set to 0.
    """
    return np.where(theta < beta, np.maximum(update, 0.0), 0.0) + np.where(theta > -beta, np.minimum(update, 0.0), 0.0)


class SGD:
    """Plain gradient ascent: ``step = lr * direction``.

    :param learning_rate: step size ``eta``.
    """

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = learning_rate

    def step(self, direction: np.ndarray) -> np.ndarray:
        """:param direction: ascent direction.
        :return: the step to add to ``theta``."""
        return self.learning_rate * direction


class Adam:
    """Adam (Kingma and Ba, 2015) for ascent, with bias correction.

    :param learning_rate: step size.
    :param betas: decay rates of the first and second moments.
    :param eps: added to the root of the second moment.
    """

    def __init__(self, learning_rate: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.learning_rate = learning_rate
        self.betas = betas
        self.eps = eps
        self.t = 0
        self.m: np.ndarray | float = 0.0
        self.v: np.ndarray | float = 0.0

    def step(self, direction: np.ndarray) -> np.ndarray:
        """:param direction: ascent direction.
        :return: the step to add to ``theta``."""
        beta1, beta2 = self.betas
        self.t += 1
        self.m = beta1 * self.m + (1.0 - beta1) * direction
        self.v = beta2 * self.v + (1.0 - beta2) * direction**2
        m_hat = self.m / (1.0 - beta1**self.t)
        v_hat = self.v / (1.0 - beta2**self.t)
        return self.learning_rate * m_hat / (np.sqrt(v_hat) + self.eps)


class ExactPG:
    """
    Exact (expected) policy gradient ascent on a tabular MDP.

    ``a*`` in state ``s`` is ``argmax_a Q*(s, a)`` (first in action order among ties). The adversarial initial policy
    puts ``pi0`` on ``a*``, ``pi0^2`` on each other action but one, and the rest, ``1 - pi0 - (A - 2) pi0^2``, on one
    sub-optimal action ``b``: the best strictly sub-optimal action by ``Q*`` (the second-best action value, the
    slowest to leave), or the next action after ``a*`` where every action is optimal (terminal states, and states where
    all moves tie). The other actions carry little mass but not none: at exactly zero probability no parameterization
    could move them. Every parameterization starts from the same policy (softmax ``theta = log pi0``, escort
    ``theta = pi0^(1/p)``).

    NeuRD updates every state by ``eta * (Q(s, .) - V(s))`` without the visitation weight ``d(s) / (1 - gamma)``:
    OpenSpiel's NeuRD weights by the counterfactual reach (that of chance and the other players, not the learner's own),
    which is 1 in every state of a single-agent MDP without chance. Its logits are mean-centred and thresholded at
    ``beta``.

    Escape time: the first iteration at which ``pi(a*|s0) >= escape_threshold`` (``escape="action"``; ``s0`` is the most
    likely start state) or ``V^pi(rho) >= V*(rho) - (1 - escape_threshold) * |V*(rho)|`` (``escape="value"``, i.e.
    ``V >= 0.9 V*`` for positive ``V*``); ``"auto"`` takes ``"action"`` when the MDP has a single non-terminal state (a
    bandit) and ``"value"`` otherwise.

    :param env: a tabular MDP, or an env whose ``unwrapped.transition_model()`` returns one.
    :param policy: ``softmax``, ``escort``, ``neurd`` or ``gnpg``.
    :param p: escort power, > 0 (escort only).
    :param normalize: renormalise escort parameters to unit p-norm after each step (escort only).
    :param optimizer: ``sgd`` (the theory) or ``adam``.
    :param learning_rate: step size ``eta`` > 0.
    :param init: ``uniform``, ``random`` (a Dirichlet(1) policy per state, from ``seed``) or ``adversarial``.
    :param pi0: ``pi0(a*)`` of the adversarial initial policy, in ``(0, 1)`` and below the mass left to ``b``.
    :param seed: seed of the random initialisation.
    :param beta: NeuRD logit threshold, > 0 (``inf``: no threshold).
    :param eps: escort floor added to ``|theta|`` (as in :func:`policies.escort_logits`).
    :param escape: escape criterion, ``auto``, ``action`` or ``value``.
    :param escape_threshold: threshold of the escape criterion, in ``(0, 1]``.
    :param rho: the objective's start distribution: the env's (``env``) or ``uniform`` over the non-terminal states
        (the full-support ``rho`` that convergence rates for MDPs assume); ``s0`` stays the env's start state.
    """

    def __init__(
        self,
        env: Any,
        policy: str = "escort",
        p: float = 2.0,
        normalize: bool = True,
        optimizer: str = "sgd",
        learning_rate: float = 0.1,
        init: str = "adversarial",
        pi0: float = 1e-2,
        seed: int = 0,
        beta: float = 2.0,
        eps: float = DEFAULT_EPS,
        escape: str = "auto",
        escape_threshold: float = 0.9,
        rho: str = "env",
    ) -> None:
        _check_choice("rho", rho, RHOS)
        model = as_mdp(env)
        self.start_state = int(model.initial.argmax())
        self.mdp = model if rho == "env" else uniform_start(model)
        _check_choice("policy", policy, POLICIES)
        _check_choice("optimizer", optimizer, OPTIMIZERS)
        _check_choice("init", init, INITS)
        _check_choice("escape", escape, ESCAPES)
        for name, value in (("p", p), ("learning_rate", learning_rate), ("eps", eps)):
            _check_positive(name, value)
        _check_positive("beta", beta, allow_inf=True)
        _check_open_unit("pi0", pi0)
        _check_open_unit("escape_threshold", escape_threshold, closed_right=True)
        if not isinstance(normalize, bool):
            raise ValueError(f"normalize must be true or false, got {normalize!r}")
        if isinstance(seed, bool) or not isinstance(seed, Integral):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.policy_name, self.p, self.normalize = policy, float(p), normalize
        self.optimizer_name, self.learning_rate = optimizer, float(learning_rate)
        self.init, self.pi0, self.seed = init, float(pi0), int(seed)
        self.beta, self.eps, self.escape_threshold = float(beta), float(eps), float(escape_threshold)

        self.optimal_V, self.optimal_Q = value_iteration(self.mdp)
        self.optimal_value = float(self.mdp.initial @ self.optimal_V)
        self.optimal_actions = _best(self.optimal_Q)
        self.suboptimal_actions = _second_best(self.optimal_Q, self.optimal_actions)
        self.escape = _resolve_escape(escape, self.mdp)
        self._evaluate = _one_step_evaluator(self.mdp) if is_one_step(self.mdp) else _linear_solve_evaluator(self.mdp)

        self.parameterization = _make_parameterization(policy, self.p, normalize, self.eps, self.beta)
        self.optimizer = SGD(self.learning_rate) if optimizer == "sgd" else Adam(self.learning_rate)
        self.theta = self.parameterization.from_probs(self.initial_policy())
        self.num_iterations = 0
        self.escape_time: int | None = None
        self._history: dict[str, list[np.ndarray]] = {key: [] for key in HISTORY_KEYS}

    def initial_policy(self) -> np.ndarray:
        """:return: ``(S, A)`` the initial policy chosen by ``init``, the same for every parameterization."""
        n_states, n_actions = self.mdp.n_states, self.mdp.n_actions
        if self.init == "uniform":
            return np.full((n_states, n_actions), 1.0 / n_actions)
        if self.init == "random":
            return np.random.default_rng(self.seed).dirichlet(np.ones(n_actions), size=n_states)
        if n_actions < 2:
            raise ValueError("the adversarial init needs at least 2 actions; use init='uniform'")
        rest = 1.0 - self.pi0 - (n_actions - 2) * self.pi0**2
        if rest <= self.pi0:
            raise ValueError(f"pi0 = {self.pi0} is too large for an adversarial init with {n_actions} actions; use pi0 <= 0.3")
        pi = np.full((n_states, n_actions), self.pi0**2)
        pi[np.arange(n_states), self.optimal_actions] = self.pi0
        pi[np.arange(n_states), self.suboptimal_actions] = rest
        return pi

    def policy(self, theta: np.ndarray | None = None) -> np.ndarray:
        """:param theta: parameters (default: the current ones).
        :return: ``(S, A)`` action probabilities."""
        return self.parameterization.probs(self.theta if theta is None else theta)

    def evaluate(self, theta: np.ndarray | None = None) -> Evaluation:
        """
        Evaluate a policy exactly.

        :param theta: parameters (default: the current ones).
        :return: its probabilities, ``V``, ``Q``, visitation and ``V(rho)``.
        """
        pi = self.policy(theta)
        V, Q, d = self._evaluate(pi)
        return Evaluation(pi=pi, V=V, Q=Q, d=d, value=float(self.mdp.initial @ V))

    def objective(self, theta: np.ndarray | None = None) -> float:
        """:param theta: parameters (default: the current ones).
        :return: ``V^pi(rho)``."""
        return self.evaluate(theta).value

    def gradient(self, theta: np.ndarray | None = None, evaluation: Evaluation | None = None) -> np.ndarray:
        """
        Exact ``dV^pi(rho)/dtheta`` of the parameterization (NeuRD and GNPG: of their softmax logits).

        :param theta: parameters (default: the current ones).
        :param evaluation: the evaluation of ``theta``, if already computed.
        :return: ``(S, A)`` gradient.
        """
        theta = self.theta if theta is None else theta
        ev = self.evaluate(theta) if evaluation is None else evaluation
        weight = ev.d[:, None] / (1.0 - self.mdp.gamma)
        slope = self.parameterization.logit_slope(theta)
        return weight * ev.pi * ev.advantage * slope

    def update_direction(self, theta: np.ndarray | None = None, evaluation: Evaluation | None = None) -> np.ndarray:
        """
        The direction the optimizer follows: the gradient (softmax, escort), the normalised softmax gradient (GNPG),
        or the thresholded advantages (NeuRD).

        :param theta: parameters (default: the current ones).
        :param evaluation: the evaluation of ``theta``, if already computed.
        :return: ``(S, A)`` ascent direction.
        """
        theta = self.theta if theta is None else theta
        ev = self.evaluate(theta) if evaluation is None else evaluation
        return self.parameterization.direction(theta, ev.advantage, self.gradient(theta, ev))

    def learn(self, n_iterations: int, callback: Callback | None = None) -> ExactPG:
        """
        Run ``n_iterations`` exact gradient steps, recording the current policy's quantities before each step.

        :param n_iterations: number of steps, >= 0.
        :param callback: called with the agent after every step; returning ``False`` stops early.
        :return: ``self``.
        """
        if isinstance(n_iterations, bool) or not isinstance(n_iterations, Integral) or n_iterations < 0:
            raise ValueError(f"n_iterations must be an integer >= 0, got {n_iterations!r}")
        records = np.empty((n_iterations, len(HISTORY_KEYS)))
        done = 0
        try:
            for i in range(n_iterations):
                ev = self.evaluate()
                grad = self.gradient(self.theta, ev)
                records[i] = self._record(ev, grad)
                self._check_escape(records[i])
                step = self.optimizer.step(self.parameterization.direction(self.theta, ev.advantage, grad))
                self.theta = self.parameterization.project(self.theta + step)
                self.num_iterations += 1
                done = i + 1
                if callback is not None and callback(self) is False:
                    break
        finally:
            for j, key in enumerate(HISTORY_KEYS):
                self._history[key].append(records[:done, j].copy())
        return self

    @property
    def history(self) -> dict[str, np.ndarray]:
        """Per iteration (before its step): ``value`` ``V^pi(rho)``, ``gap`` ``V* - V^pi(rho)``, ``pi_star``
        ``pi(a*|s0)`` and ``grad_norm`` ``||dV(rho)/dtheta||_2``."""
        return {key: np.concatenate(chunks) if chunks else np.empty(0) for key, chunks in self._history.items()}

    def _record(self, ev: Evaluation, grad: np.ndarray) -> np.ndarray:
        pi_star = ev.pi[self.start_state, self.optimal_actions[self.start_state]]
        return np.array([ev.value, self.optimal_value - ev.value, pi_star, np.linalg.norm(grad)])

    def _check_escape(self, record: np.ndarray) -> None:
        if self.escape_time is not None:
            return
        value, _, pi_star, _ = record
        if self.escape == "action":
            escaped = pi_star >= self.escape_threshold
        else:
            escaped = value >= self.optimal_value - (1.0 - self.escape_threshold) * abs(self.optimal_value)
        if escaped:
            self.escape_time = self.num_iterations


def as_mdp(env: Any) -> TabularMDP:
    """
    The tabular model of an env, or the MDP itself.

    :param env: a :class:`envs.TabularMDP` or an env whose ``unwrapped`` has ``transition_model()``.
    :return: the MDP.
    :raises ValueError: if ``env`` has no transition model.
    """
    if isinstance(env, TabularMDP):
        return env
    model = getattr(getattr(env, "unwrapped", env), "transition_model", None)
    if not callable(model):
        name = getattr(getattr(env, "spec", None), "id", None) or type(env).__name__
        raise ValueError(
            f"{name} has no transition_model(): exact policy gradients need a tabular env such as Bandit-v0 or FourRooms-v0"
        )
    return model()


def uniform_start(mdp: TabularMDP) -> TabularMDP:
    """
    :param mdp: an MDP with at least one non-terminal state.
    :return: the same MDP started uniformly at random in a non-terminal state.
    """
    live = ~mdp.terminal
    return dataclasses.replace(mdp, initial=live / live.sum())


def is_one_step(mdp: TabularMDP) -> bool:
    """
    Whether every episode lasts one step (a bandit or contextual bandit): no non-terminal state leads to another.

    :param mdp: the MDP.
    :return: ``True`` if ``P[s, a, s'] = 0`` for all non-terminal ``s`` and ``s'``.
    """
    live = ~mdp.terminal
    return not np.any(mdp.P[np.ix_(live, np.ones(mdp.n_actions, dtype=bool), live)])


Evaluator = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def _linear_solve_evaluator(mdp: TabularMDP) -> Evaluator:
    def evaluate(pi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        V, Q = policy_evaluation(mdp, pi)
        return V, Q, discounted_visitation(mdp, pi)

    return evaluate


def _one_step_evaluator(mdp: TabularMDP) -> Evaluator:
    """In a one-step MDP ``Q = R``, ``V = pi . R`` and ``d = (1 - gamma) rho`` on the non-terminal states."""
    live = ~mdp.terminal
    Q = np.where(live[:, None], mdp.R, 0.0)
    reach = mdp.gamma / (1.0 - mdp.gamma) * mdp.P[live][:, :, ~live]
    d_live = (1.0 - mdp.gamma) * np.where(live, mdp.initial, 0.0)

    def evaluate(pi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        V = np.einsum("sa,sa->s", pi, Q)
        d = d_live.copy()
        d[~live] = mdp.initial[~live] + np.einsum("s,sa,sat->t", d_live[live], pi[live], reach)
        return V, Q, d

    return evaluate


def _make_parameterization(policy: str, p: float, normalize: bool, eps: float, beta: float) -> Parameterization:
    makers: dict[str, Callable[[], Parameterization]] = {
        "softmax": SoftmaxParameterization,
        "gnpg": GnpgParameterization,
        "neurd": lambda: NeurdParameterization(beta),
        "escort": lambda: EscortParameterization(p, normalize, eps),
    }
    return makers[policy]()


def _near_top(Q: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    top = Q.max(axis=1, keepdims=True)
    return Q >= top - tol * np.maximum(1.0, np.abs(top))


def _best(Q: np.ndarray) -> np.ndarray:
    return _near_top(Q).argmax(axis=1)


def _second_best(Q: np.ndarray, best: np.ndarray) -> np.ndarray:
    n_actions = Q.shape[1]
    suboptimal = ~_near_top(Q)
    masked = np.where(suboptimal, Q, -np.inf)
    fallback = (best + 1) % n_actions
    return np.where(suboptimal.any(axis=1), masked.argmax(axis=1), fallback)


def _resolve_escape(escape: str, mdp: TabularMDP) -> str:
    if escape != "auto":
        return escape
    return "action" if int((~mdp.terminal).sum()) == 1 else "value"


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_positive(name: str, value: Any, allow_inf: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or np.isnan(value) or value <= 0:
        raise ValueError(f"{name} must be a {'' if allow_inf else 'finite '}number > 0, got {value!r}")
    if not allow_inf and np.isinf(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_open_unit(name: str, value: Any, closed_right: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a number in (0, 1{']' if closed_right else ')'}, got {value!r}")
    if not (0.0 < value < 1.0 or (closed_right and value == 1.0)):
        raise ValueError(f"{name} must be in (0, 1{']' if closed_right else ')'}, got {value!r}")
