"""Exact policy gradient ascent on a tabular MDP: softmax, escort, NeuRD and GNPG with exact gradients.

Every iteration evaluates the current policy exactly (``Q^pi`` and the discounted visitation ``d^pi_rho`` by one
sparse LU factorisation of ``I - gamma P_pi``). The policy gradient is

    dV(rho)/dtheta_s = 1/(1-gamma) * d(s) * sum_a dpi(a|s)/dtheta_s * Q(s, a) = w(s) * f(theta_s) * A(s, .)

with ``A = Q - V``, the state weight ``w(s) = d(s) / (1 - gamma)`` and the parameterization's factor ``f``:

- softmax: ``f = pi``;
- escort, ``pi = |theta|^p / ||theta||_p^p`` computed exactly in float64: ``f = (p / ||theta_s||_p) * sign(theta) *
  pi^(1-1/p)`` (``= p * pi / theta``, and 0 at a coordinate that is exactly 0);
- GNPG: the softmax gradient divided by its L2 norm (over all states);
- NeuRD: no Jacobian at all, ``theta_s += eta * w(s) * A(s, .)``, gated by the logit threshold.

Every update uses the weight ``state_weighting`` chooses: ``visitation`` (``w``) or ``uniform`` (1 in every state).
The parameterizations and optimizers live in ``agents.tabular_policies``, the exact evaluation in ``agents.exact_mdp``;
``agents.tabular_pg.TabularPG`` adds sampled (REINFORCE) gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import numpy as np

from agents.exact_mdp import (
    Evaluation,
    as_mdp,
    best_actions,
    is_one_step,
    linear_solve_evaluator,
    one_step_evaluator,
    second_best_actions,
    uniform_start,
)
from agents.tabular_policies import SGD, Adam, make_parameterization
from envs.tabular import TabularMDP, value_iteration

POLICIES = ("softmax", "escort", "neurd", "gnpg")
OPTIMIZERS = ("sgd", "adam")
INITS = ("uniform", "random", "adversarial")
ESCAPES = ("auto", "action", "value")
RHOS = ("env", "uniform")
STATE_WEIGHTINGS = ("visitation", "uniform")
HISTORY_KEYS = ("value", "gap", "pi_star", "grad_norm")

Callback = Callable[["ExactPG"], bool | None]
StateWeights = Callable[[Evaluation, float], np.ndarray]

#: ``(S,)`` state weight of the update, from the evaluation and ``gamma``.
STATE_WEIGHTS: dict[str, StateWeights] = {
    "visitation": lambda ev, gamma: ev.d / (1.0 - gamma),
    "uniform": lambda ev, gamma: np.ones_like(ev.d),
}


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

    State weighting, the same rule for every parameterization: ``"visitation"`` (the default) weights state ``s`` by
    ``w(s) = d^pi_rho(s) / (1 - gamma)`` (softmax and escort follow the policy gradient ``w(s) f(theta_s) A(s, .)``, GNPG
    its unit-norm version, NeuRD steps ``eta w(s) A(s, .)``); ``"uniform"`` weights every state by 1 (NeuRD then steps
    ``eta A(s, .)`` as OpenSpiel's NeuRD does: its counterfactual reach, that of chance and the other players, is 1 in
    every state of a single-agent MDP without chance). :meth:`gradient` is ``dV(rho)/dtheta`` under either weighting,
    :meth:`update_direction` what the optimizer follows. NeuRD's logits are mean-centred and thresholded at ``beta``.

    Escape time: the first iteration at which ``pi(a*|s0) >= escape_threshold`` (``escape="action"``; ``s0`` is the most
    likely start state) or ``V^pi(rho) >= V*(rho) - (1 - escape_threshold) * |V*(rho)|`` (``escape="value"``, i.e.
    ``V >= escape_threshold * V*`` for positive ``V*``); ``"auto"`` takes ``"action"`` when the MDP has a single
    non-terminal state (a bandit) and ``"value"`` otherwise.

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
    :param escape: escape criterion, ``auto``, ``action`` or ``value``.
    :param escape_threshold: threshold of the escape criterion, in ``(0, 1]``.
    :param rho: the objective's start distribution: the env's (``env``) or ``uniform`` over the non-terminal states
        (the full-support ``rho`` that convergence rates for MDPs assume); ``s0`` stays the env's start state.
    :param state_weighting: the state weight of the update: ``visitation`` (``d(s) / (1 - gamma)``) or ``uniform`` (1).
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
        escape: str = "auto",
        escape_threshold: float = 0.9,
        rho: str = "env",
        state_weighting: str = "visitation",
    ) -> None:
        check_choice("rho", rho, RHOS)
        check_choice("state_weighting", state_weighting, STATE_WEIGHTINGS)
        model = as_mdp(env)
        self.start_state = int(model.initial.argmax())
        self.mdp = model if rho == "env" else uniform_start(model)
        check_choice("policy", policy, POLICIES)
        check_choice("optimizer", optimizer, OPTIMIZERS)
        check_choice("init", init, INITS)
        check_choice("escape", escape, ESCAPES)
        for name, value in (("p", p), ("learning_rate", learning_rate)):
            check_positive(name, value)
        check_positive("beta", beta, allow_inf=True)
        check_open_unit("pi0", pi0)
        check_open_unit("escape_threshold", escape_threshold, closed_right=True)
        if not isinstance(normalize, bool):
            raise ValueError(f"normalize must be true or false, got {normalize!r}")
        if isinstance(seed, bool) or not isinstance(seed, Integral):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.policy_name, self.p, self.normalize = policy, float(p), normalize
        self.optimizer_name, self.learning_rate = optimizer, float(learning_rate)
        self.init, self.pi0, self.seed = init, float(pi0), int(seed)
        self.beta, self.escape_threshold, self.state_weighting = float(beta), float(escape_threshold), state_weighting

        self.optimal_V, self.optimal_Q = value_iteration(self.mdp)
        self.optimal_value = float(self.mdp.initial @ self.optimal_V)
        self.optimal_actions = best_actions(self.optimal_Q)
        self.suboptimal_actions = second_best_actions(self.optimal_Q, self.optimal_actions)
        self.escape = _resolve_escape(escape, self.mdp)
        self._evaluate = one_step_evaluator(self.mdp) if is_one_step(self.mdp) else linear_solve_evaluator(self.mdp)

        self.parameterization = make_parameterization(policy, self.p, normalize, self.beta)
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
        Exact ``dV^pi(rho)/dtheta`` (NeuRD and GNPG: of their softmax logits), whatever the ``state_weighting``.

        :param theta: parameters (default: the current ones).
        :param evaluation: the evaluation of ``theta``, if already computed.
        :return: ``(S, A)`` gradient."""
        return self._directions(theta, evaluation)[0]

    def update_direction(self, theta: np.ndarray | None = None, evaluation: Evaluation | None = None) -> np.ndarray:
        """
        The direction the optimizer follows, with the state weight of ``state_weighting``: the weighted gradient
        (softmax, escort), its unit-norm version (GNPG), or the thresholded weighted advantages (NeuRD).

        :param theta: parameters (default: the current ones).
        :param evaluation: the evaluation of ``theta``, if already computed.
        :return: ``(S, A)`` ascent direction."""
        return self._directions(theta, evaluation)[1]

    def state_weights(self, evaluation: Evaluation | None = None) -> np.ndarray:
        """:param evaluation: an evaluation (default: of the current parameters).
        :return: ``(S,)`` the state weight of the update: ``d^pi_rho(s) / (1 - gamma)`` or 1."""
        ev = self.evaluate() if evaluation is None else evaluation
        return STATE_WEIGHTS[self.state_weighting](ev, self.mdp.gamma)

    def _directions(self, theta: np.ndarray | None, evaluation: Evaluation | None) -> tuple[np.ndarray, np.ndarray]:
        """The gradient ``dV(rho)/dtheta`` and the update direction at ``theta``."""
        theta = self.theta if theta is None else theta
        ev = self.evaluate(theta) if evaluation is None else evaluation
        # per-state gradient of sum_a pi(a|s) Q(s, a): f(theta_s) * A(s, .)
        state_gradient = self.parameterization.gradient_factor(theta, ev.pi) * ev.advantage
        weight = self.state_weights(ev)[:, None]
        direction = self.parameterization.direction(theta, weight * ev.advantage, weight * state_gradient)
        return STATE_WEIGHTS["visitation"](ev, self.mdp.gamma)[:, None] * state_gradient, direction

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
                grad, direction = self._directions(self.theta, ev)
                records[i] = self._record(ev, grad)
                self._check_escape(records[i])
                self.theta = self.parameterization.project(self.theta + self.optimizer.step(direction))
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


def _resolve_escape(escape: str, mdp: TabularMDP) -> str:
    if escape != "auto":
        return escape
    return "action" if int((~mdp.terminal).sum()) == 1 else "value"


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """:raises ValueError: unless ``value`` is one of ``choices`` (named ``name`` in the message)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def check_positive(name: str, value: Any, allow_inf: bool = False) -> None:
    """:raises ValueError: unless ``value`` is a number > 0 (finite unless ``allow_inf``)."""
    if isinstance(value, bool) or not isinstance(value, Real) or np.isnan(value) or value <= 0:
        raise ValueError(f"{name} must be a {'' if allow_inf else 'finite '}number > 0, got {value!r}")
    if not allow_inf and np.isinf(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_open_unit(name: str, value: Any, closed_right: bool = False) -> None:
    """:raises ValueError: unless ``value`` is in ``(0, 1)`` (``(0, 1]`` with ``closed_right``)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a number in (0, 1{']' if closed_right else ')'}, got {value!r}")
    if not (0.0 < value < 1.0 or (closed_right and value == 1.0)):
        raise ValueError(f"{name} must be in (0, 1{']' if closed_right else ')'}, got {value!r}")
