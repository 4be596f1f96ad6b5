"""Tabular policy gradient with exact or sampled gradients: :class:`TabularPG`.

``gradient="exact"`` is :class:`agents.exact_pg.ExactPG`. ``gradient="sampled"`` replaces the exact gradient by a
REINFORCE estimate from ``n_episodes`` on-policy episodes rolled out in the env itself (``agents.tabular_rollout``), drawn
afresh at every call. With ``f_s`` the parameterization's gradient factor (``d(sum_a pi(a|s) Q(s, a))/dtheta_s =
f_s * A(s, .)``), the score is ``dlog pi(a|s)/dtheta_s = f_s * (e_a / pi(a|s) - 1)``, so every estimate is
``f_s * Ahat(s, .)`` with an importance-weighted advantage estimate

    Ahat(s, .) = sum over selected visits (t, i) of s:  w_t * (G_t - b) * (e_{a_t} / pi(a_t|s) - 1)

where ``G_t = sum_{k >= t} gamma^(k - t) r_k`` is the discounted return-to-go of the visit's episode and ``b`` its
baseline. The state weighting chooses the visits and ``w``:

- ``visitation``: every step, ``w_t = gamma^t / N``. This is the policy gradient's own sum over time steps,
  ``(1/N) sum_i sum_t gamma^t (G_t - b) dlog pi(a_t|s_t)``, whose expectation is
  ``sum_s d(s)/(1 - gamma) sum_a dpi(a|s) Q(s, a) = dV(rho)/dtheta``, the exact gradient with weight ``d(s)/(1-gamma)``.
- ``uniform``: the first visit of each episode to ``s`` only, ``w = 1 / n_s`` with ``n_s`` the number of episodes that
  visit ``s``. By the strong Markov property each term has expectation ``A(s, .)``, so ``Ahat(s, .)`` is unbiased for
  the uniform-weighted direction *given that s is visited*; unvisited states get 0, so overall
  ``E Ahat(s, .) = Pr(s visited by one of the N episodes) * A(s, .)``: an unbiased uniform weighting would need
  ``1/d(s)``, which the samples do not give.

The baseline is the leave-one-out per-state mean return-to-go: ``b`` for a visit of ``s`` in episode ``i`` is the mean
of ``G`` over all visits of ``s`` in the *other* episodes of the batch (0 if none visits ``s``, so ``N = 1`` is plain
REINFORCE). It does not depend on episode ``i``, so it leaves both estimates unbiased, and it tracks ``V(s)`` closely.

Per parameterization: softmax and escort (normalised or not) follow ``f_s * Ahat``; GNPG that over its L2 norm; NeuRD
drops ``f`` and follows ``Ahat`` itself, thresholded and mean-centred as exact NeuRD, with each visit's vector
``(G_t - b) * (e_{a_t} / pi(a_t|s) - 1)`` clipped elementwise to ``[-neurd_clip, neurd_clip]`` before the sum (R-NaD's
``get_loss_nerd`` clips its importance-corrected advantages so, at ``NerdConfig.clip = 10_000``); the clip biases only
visits with ``|G - b| / pi(a_t|s) > neurd_clip`` (roughly). :meth:`TabularPG.gradient` returns the visitation-weighted
estimate of ``dV(rho)/dtheta`` (of the softmax logits for NeuRD and GNPG) whatever the state weighting, as ExactPG does.

Truncation: episodes end at the env's time limit ``H`` (``FourRooms-v0``: 200; ``--env-kwargs max_episode_steps=N``
changes it), so the estimates are unbiased for the gradient of the ``H``-step objective ``E[sum_{t<H} gamma^t r_t]``,
which differs from the model's infinite-horizon gradient by terms of order ``gamma^H`` (``0.99^200 = 0.13``: small only
for policies whose episodes end well before ``H``). The history (``V(rho)``, the gap, ``pi(a*|s0)``) and the escape
criterion come from the exact evaluation of the current policy; the learning signal is sampled only.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np

from agents.exact_mdp import Evaluation
from agents.exact_pg import Callback, ExactPG, check_choice, check_open_unit, check_positive
from agents.tabular_rollout import Episodes, FourRoomsSampler, RolloutPool, Sampler, make_sampler

GRADIENTS = ("exact", "sampled")
#: ``spawn_key`` of the rollout generator's ``SeedSequence`` (the random init uses ``default_rng(seed)`` itself).
ROLLOUT_STREAM = 1
#: R-NaD's ``NerdConfig.clip``.
DEFAULT_NEURD_CLIP = 10_000.0
#: A sub-optimal greedy policy: ``V^greedy(rho) < V*(rho) - COMMITTAL_TOLERANCE * max(1, |V*(rho)|)``.
COMMITTAL_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Visits:
    """The steps of a batch of episodes, flattened (time-major), with what the estimators need.

    :param t: step index.
    :param episode: episode index.
    :param state: state ``s_t``.
    :param action: action ``a_t``.
    :param delta: ``G_t - b`` (return-to-go minus the leave-one-out baseline).
    :param pi_taken: ``pi(a_t|s_t)``.
    :param n_episodes: ``N``.
    """

    t: np.ndarray
    episode: np.ndarray
    state: np.ndarray
    action: np.ndarray
    delta: np.ndarray
    pi_taken: np.ndarray
    n_episodes: int


def leave_one_out_baseline(states: np.ndarray, episodes: np.ndarray, returns: np.ndarray, n_states: int, n: int) -> np.ndarray:
    """
    :param states: ``(M,)`` visited states.
    :param episodes: ``(M,)`` their episodes, in ``[0, n)``.
    :param returns: ``(M,)`` their returns-to-go.
    :param n_states: ``S``.
    :param n: number of episodes.
    :return: ``(M,)`` the mean return-to-go of the state over the visits of the other episodes (0 if there are none).
    """
    key = episodes * n_states + states
    own_sum = np.bincount(key, returns, minlength=n * n_states)[key]
    own_count = np.bincount(key, minlength=n * n_states)[key]
    others = np.bincount(states, minlength=n_states)[states] - own_count
    other_sum = np.bincount(states, returns, minlength=n_states)[states] - own_sum
    return np.divide(other_sum, others, out=np.zeros_like(returns), where=others > 0)


def visits(episodes: Episodes, pi: np.ndarray, gamma: float) -> Visits:
    """
    :param episodes: a batch of episodes of ``pi``.
    :param pi: ``(S, A)`` the policy that sampled them.
    :param gamma: discount.
    :return: their steps, with ``G - b`` and ``pi(a_t|s_t)``.
    """
    t, i = np.nonzero(episodes.alive)
    s, a = episodes.states[t, i], episodes.actions[t, i]
    returns = episodes.returns_to_go(gamma)[t, i]
    baseline = leave_one_out_baseline(s, i, returns, pi.shape[0], episodes.n_episodes)
    return Visits(t, i, s, a, returns - baseline, pi[s, a], episodes.n_episodes)


def visitation_weights(v: Visits, gamma: float, n_states: int) -> tuple[np.ndarray, np.ndarray]:
    """:return: every visit, weighted ``gamma^t / N``."""
    return np.arange(len(v.t)), gamma ** v.t.astype(np.float64) / v.n_episodes


def first_visit_weights(v: Visits, gamma: float, n_states: int) -> tuple[np.ndarray, np.ndarray]:
    """:return: each episode's first visit of each state, weighted ``1 / n_s`` (``n_s``: episodes that visit ``s``)."""
    _, first = np.unique(v.episode * n_states + v.state, return_index=True)
    states = v.state[first]
    return first, 1.0 / np.bincount(states, minlength=n_states)[states]


#: Which visits each state weighting keeps, and their weights: ``(visits, gamma, S) -> (indices, weights)``.
VISIT_WEIGHTS: dict[str, Callable[[Visits, float, int], tuple[np.ndarray, np.ndarray]]] = {
    "visitation": visitation_weights,
    "uniform": first_visit_weights,
}


def advantage_estimate(v: Visits, shape: tuple[int, int], gamma: float, weighting: str, clip: float) -> np.ndarray:
    """
    :param v: the visits.
    :param shape: ``(S, A)``.
    :param gamma: discount.
    :param weighting: ``visitation`` or ``uniform``.
    :param clip: bound on each entry of a visit's vector ``(G - b) (e_a / pi(a|s) - 1)`` (``inf``: none).
    :return: ``(S, A)`` ``Ahat``, the weighted importance-corrected advantage estimate.
    """
    n_states, n_actions = shape
    keep, weight = VISIT_WEIGHTS[weighting](v, gamma, n_states)
    s, a, delta = v.state[keep], v.action[keep], v.delta[keep]
    other = np.clip(-delta, -clip, clip)
    taken = np.clip(delta * (1.0 / v.pi_taken[keep] - 1.0), -clip, clip)
    every = np.bincount(s, weight * other, minlength=n_states)
    extra = np.bincount(s * n_actions + a, weight * (taken - other), minlength=n_states * n_actions)
    return every[:, None] + extra.reshape(shape)


class TabularPG(ExactPG):
    """
    Tabular policy gradient ascent with exact or sampled (REINFORCE) gradients; see the module docstring.

    Everything else (parameterizations, optimizers, inits, state weighting, history, escape time) is
    :class:`agents.exact_pg.ExactPG`'s; with ``gradient="exact"`` the two are the same algorithm, number for number.
    With sampled gradients the history's ``grad_norm`` is the norm of the estimate the step used, and ``num_episodes``
    counts the episodes drawn.

    Committal failure (:meth:`committal_failure`): the policy has converged to a sub-optimal deterministic policy. Its
    greedy policy ``g(s) = argmax_a pi(a|s)`` is sub-optimal (``V^g(rho) < V*(rho)`` beyond a relative 1e-6) and ``pi``
    puts at least ``committal_threshold`` on ``g(s)`` in every non-terminal state that ``g`` visits from ``rho``. On a
    bandit: ``pi(b) >= committal_threshold`` for a sub-optimal arm ``b``.

    :param env: a tabular MDP (exact gradients only), or an env whose ``unwrapped.transition_model()`` returns one.
    :param policy: ``softmax``, ``escort``, ``neurd`` or ``gnpg``.
    :param p: escort power, > 0 (escort only).
    :param gradient: ``exact`` or ``sampled``.
    :param n_episodes: episodes per sampled gradient, >= 1.
    :param neurd_clip: bound on the entries of each visit's importance-corrected advantage, > 0 (NeuRD, sampled only).
    :param committal_threshold: probability of the greedy action that counts as committed, in ``(0, 1]``.
    :param kwargs: the other arguments of :class:`agents.exact_pg.ExactPG` (``state_weighting``, ``init``, ``pi0``,
        ``seed``, ``rho``, ...); ``seed`` also seeds the rollouts.
    """

    def __init__(
        self,
        env: Any,
        policy: str = "escort",
        p: float = 2.0,
        gradient: str = "exact",
        n_episodes: int = 16,
        neurd_clip: float = DEFAULT_NEURD_CLIP,
        committal_threshold: float = 0.99,
        **kwargs: Any,
    ) -> None:
        check_choice("gradient", gradient, GRADIENTS)
        if isinstance(n_episodes, bool) or not isinstance(n_episodes, Integral) or n_episodes < 1:
            raise ValueError(f"n_episodes must be an integer >= 1, got {n_episodes!r}")
        check_positive("neurd_clip", neurd_clip, allow_inf=True)
        check_open_unit("committal_threshold", committal_threshold, closed_right=True)
        super().__init__(env, policy=policy, p=p, **kwargs)
        self.gradient_kind, self.n_episodes = gradient, int(n_episodes)
        self.neurd_clip, self.committal_threshold = float(neurd_clip), float(committal_threshold)
        self.num_episodes = 0
        self.sampler: Sampler | None = None
        if gradient == "sampled":
            if self.seed < 0:
                raise ValueError(f"seed must be >= 0 for sampled gradients (it seeds a SeedSequence), got {self.seed}")
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(ROLLOUT_STREAM,)))
            start = None if kwargs.get("rho", "env") == "env" else self.mdp.initial
            self.sampler = make_sampler(env, self.mdp, start, rng)

    def gradient(self, theta: np.ndarray | None = None, evaluation: Evaluation | None = None) -> np.ndarray:
        """
        ``dV^pi(rho)/dtheta`` (NeuRD and GNPG: of their softmax logits): exact, or estimated from ``n_episodes`` fresh
        episodes at every call (visitation-weighted whatever the ``state_weighting``).

        :param theta: parameters (default: the current ones).
        :param evaluation: the evaluation of ``theta`` (exact gradients only; sampled ones ignore it).
        :return: ``(S, A)`` gradient."""
        return self._directions(theta, evaluation)[0]

    def _directions(self, theta: np.ndarray | None, evaluation: Evaluation | None) -> tuple[np.ndarray, np.ndarray]:
        """The gradient ``dV(rho)/dtheta`` and the update direction: exact, or estimated from fresh episodes."""
        if self.sampler is None:
            return super()._directions(theta, evaluation)
        return self._sampled_directions(self.theta if theta is None else theta, self.sampler)

    def _sampled_directions(self, theta: np.ndarray, sampler: Sampler) -> tuple[np.ndarray, np.ndarray]:
        pi = self.policy(theta)
        v = visits(sampler.sample(pi, self.n_episodes), pi, self.mdp.gamma)
        self.num_episodes += self.n_episodes
        factor = self.parameterization.gradient_factor(theta, pi)
        advantage = advantage_estimate(v, pi.shape, self.mdp.gamma, "visitation", math.inf)
        clip = self.neurd_clip if self.policy_name == "neurd" else math.inf
        if self.state_weighting != "visitation" or clip != math.inf:
            update_advantage = advantage_estimate(v, pi.shape, self.mdp.gamma, self.state_weighting, clip)
        else:
            update_advantage = advantage
        direction = self.parameterization.direction(theta, update_advantage, factor * update_advantage)
        return factor * advantage, direction

    def sample_episodes(self, n: int | None = None, theta: np.ndarray | None = None) -> Episodes:
        """
        :param n: number of episodes (default ``n_episodes``).
        :param theta: parameters (default: the current ones).
        :return: fresh on-policy episodes in the env (sampled gradients only).
        """
        if self.sampler is None:
            raise ValueError("episodes are sampled with gradient='sampled' only")
        return self.sampler.sample(self.policy(theta), self.n_episodes if n is None else n)

    def committal_failure(self, theta: np.ndarray | None = None) -> bool:
        """
        :param theta: parameters (default: the current ones).
        :return: whether the policy is committed to a sub-optimal deterministic policy (see the class docstring).
        """
        pi = self.policy(theta)
        greedy = pi.argmax(axis=1)
        V, _, d = self._evaluate(np.eye(self.mdp.n_actions)[greedy])
        tolerance = COMMITTAL_TOLERANCE * max(1.0, abs(self.optimal_value))
        suboptimal = float(self.mdp.initial @ V) < self.optimal_value - tolerance
        on_path = (d > 1e-12) & ~self.mdp.terminal
        return bool(suboptimal and np.all(pi[on_path, greedy[on_path]] >= self.committal_threshold))


def learn_together(agents: Sequence[TabularPG], n_iterations: int, callbacks: Sequence[Callback | None] | None = None) -> None:
    """
    ``agent.learn(n_iterations, callback)`` for every agent, with the episodes of all of them stepped together in one
    batch (:class:`agents.tabular_rollout.RolloutPool`): the same numbers as learning one after the other, faster on
    FourRooms-v0 (``benchmarks/tabular_pg_speed.py``, 50 agents: 1.2-1.6x on an idle machine, 6.8x in a run on a loaded one,
    where many short numpy calls suffer most). Each agent learns in its own thread; numpy releases no time here, so the
    gain is the batched env step, not parallelism, and each agent's own work (its exact evaluation and its update)
    stays serial.

    :param agents: sampled-gradient agents on FourRooms-v0 without slip.
    :param n_iterations: iterations of each agent, >= 0 (an agent may stop earlier through its callback).
    :param callbacks: one per agent (None: none).
    :raises ValueError: when an agent's episodes cannot be pooled; the first error an agent raises while learning.
    """
    callbacks = [None] * len(agents) if callbacks is None else list(callbacks)
    if len(callbacks) != len(agents):
        raise ValueError(f"expected {len(agents)} callbacks, one per agent, got {len(callbacks)}")
    if not all(isinstance(agent.sampler, FourRoomsSampler) for agent in agents):
        raise ValueError("learn_together pools sampled-gradient agents on FourRooms-v0 only (gradient='sampled')")
    pool = RolloutPool(len(agents))
    errors: list[BaseException] = []

    def work(agent: TabularPG, callback: Callback | None) -> None:
        try:
            agent.learn(n_iterations, callback)
        except BaseException as error:  # reported to the caller below
            errors.append(error)
        finally:
            pool.leave()

    threads = [threading.Thread(target=work, args=pair, daemon=True) for pair in zip(agents, callbacks, strict=True)]
    try:
        for agent in agents:
            pool.join(agent.sampler)  # type: ignore[arg-type]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for agent in agents:
            agent.sampler.pool = None  # type: ignore[union-attr]
    if errors:
        raise errors[0]
