"""On-policy episodes of a tabular env, sampled in batches from the env's own dynamics (not from its model).

A sampler rolls out ``N`` episodes of a table policy ``pi`` (``(S, A)``) side by side and returns them as
:class:`Episodes`, arrays indexed ``[t, i]`` (step, episode) in the states of the env's ``transition_model()``:

- ``Bandit-v0``: one pull per episode, rewards from :meth:`envs.BanditEnv.sample_rewards` (the env's noise);
- ``FourRooms-v0``: :class:`envs.four_rooms_vec.FourRoomsBatch` built with the env's arguments (slip included);
- any other env with a transition model and ``info["state"]``: ``N`` copies in a Gymnasium ``SyncVectorEnv``.

Episodes start in the env's start state, or in states drawn from a given start distribution where the batch can be put
in any state (Bandit, FourRooms). They end on termination or after ``horizon`` steps: the env's time limit
(``env.spec.max_episode_steps``), else the number of steps after which ``gamma^t < 1e-10``. All randomness (actions,
start states, slips, reward noise) comes from the one generator the sampler is given.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import scipy.signal

from envs.bandit import BanditEnv
from envs.four_rooms import FourRoomsEnv
from envs.four_rooms_vec import FourRoomsBatch
from envs.tabular import TabularMDP

#: Without a time limit, episodes stop once ``gamma^t`` falls below this.
DISCOUNT_TOLERANCE = 1e-10


@dataclass(frozen=True)
class Episodes:
    """
    ``N`` episodes of at most ``T`` steps, side by side; entries after an episode's end are padding.

    :param states: ``(T + 1, N)`` int64, the state at step ``t`` (row ``T``: the state after the last step).
    :param actions: ``(T, N)`` int64 actions.
    :param rewards: ``(T, N)`` float64 rewards, 0 after the end.
    :param alive: ``(T, N)`` bool, whether episode ``i`` was still running at step ``t`` (``s_t`` not terminal).
    """

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    alive: np.ndarray

    @property
    def n_episodes(self) -> int:
        """``N``."""
        return self.actions.shape[1]

    @property
    def lengths(self) -> np.ndarray:
        """``(N,)`` the number of steps of each episode."""
        return self.alive.sum(axis=0)

    def returns_to_go(self, gamma: float) -> np.ndarray:
        """:param gamma: discount.
        :return: ``(T, N)`` ``G_t = sum_{k >= t} gamma^(k - t) r_k`` (to the episode's end)."""
        if self.rewards.shape[0] == 1:
            return self.rewards.copy()
        return scipy.signal.lfilter([1.0], [1.0, -gamma], self.rewards[::-1], axis=0)[::-1]


class Sampler(Protocol):
    """Rolls out episodes of a table policy."""

    def sample(self, pi: np.ndarray, n: int) -> Episodes:
        """:param pi: ``(S, A)`` action probabilities.
        :param n: number of episodes, >= 1.
        :return: the episodes."""
        ...


def action_cdf(pi: np.ndarray) -> np.ndarray:
    """:param pi: ``(S, A)`` probabilities.
    :return: ``(S, A)`` row-wise cumulative sums, the last column exactly 1 (a zero-probability action is never drawn)."""
    cdf = np.cumsum(pi, axis=1)
    total = cdf[:, -1:]
    return np.divide(cdf, total, out=np.tile(np.arange(1, pi.shape[1] + 1) / pi.shape[1], (len(pi), 1)), where=total > 0)


def draw(cdf: np.ndarray, states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """:param cdf: ``(S, A)`` from :func:`action_cdf`.
    :param states: ``(N,)`` states.
    :param rng: generator.
    :return: ``(N,)`` one action per state, drawn by inversion."""
    return (cdf[states] <= rng.random(len(states))[:, None]).sum(axis=1)


def time_limit(env: Any, gamma: float) -> int:
    """:param env: an env.
    :param gamma: its model's discount.
    :return: ``env.spec.max_episode_steps``, else the first ``t`` with ``gamma^t < DISCOUNT_TOLERANCE``."""
    spec = getattr(env, "spec", None)
    if spec is not None and spec.max_episode_steps is not None:
        return int(spec.max_episode_steps)
    return 1 if gamma == 0 else max(1, math.ceil(math.log(DISCOUNT_TOLERANCE) / math.log(gamma)))


class BanditSampler:
    """
    One pull per episode from the decision state, with :meth:`envs.BanditEnv.sample_rewards`.

    :param env: a (wrapped) :class:`envs.BanditEnv`.
    :param mdp: its model (the start distribution is its only non-terminal state whatever ``start`` says).
    :param start: unused.
    :param rng: generator of the actions and the reward noise.
    """

    def __init__(self, env: Any, mdp: TabularMDP, start: np.ndarray | None, rng: np.random.Generator) -> None:
        self.bandit: BanditEnv = env.unwrapped
        self.rng = rng

    def sample(self, pi: np.ndarray, n: int) -> Episodes:
        """:param pi: ``(2, A)`` action probabilities (row 0: the decision state).
        :param n: number of episodes.
        :return: ``n`` one-step episodes."""
        decision = np.zeros(n, dtype=np.int64)
        actions = draw(action_cdf(pi[:1]), decision, self.rng)
        rewards = self.bandit.sample_rewards(actions, self.rng)
        states = np.stack([decision, np.ones(n, dtype=np.int64)])
        return Episodes(states, actions[None], rewards[None], np.ones((1, n), dtype=bool))


Step = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def rollout(start: np.ndarray, step: Step, pi: np.ndarray, horizon: int, rng: np.random.Generator) -> Episodes:
    """
    Run episodes side by side until all have ended or ``horizon`` steps have passed.

    :param start: ``(N,)`` start states.
    :param step: moves every copy by its action: ``(actions) -> (next states, rewards, terminated)``.
    :param pi: ``(S, A)`` action probabilities.
    :param horizon: the most steps.
    :param rng: generator of the actions.
    :return: the episodes.
    """
    cdf = action_cdf(pi)
    states, actions, rewards, alive = [start], [], [], []
    running = np.ones(len(start), dtype=bool)
    for _ in range(horizon):
        a = draw(cdf, states[-1], rng)
        next_states, r, terminated = step(a)
        actions.append(a)
        rewards.append(np.where(running, r, 0.0))
        alive.append(running)
        states.append(next_states)
        running = running & ~terminated
        if not running.any():
            break
    return Episodes(np.stack(states), np.stack(actions), np.stack(rewards), np.stack(alive))


class FourRoomsSampler:
    """
    FourRooms episodes stepped together by :class:`envs.four_rooms_vec.FourRoomsBatch`, made with the env's arguments
    (and checked against the env's model). Copies that have reached the goal keep moving; their steps are padding.

    :param env: a (wrapped) :class:`envs.FourRoomsEnv`.
    :param mdp: its model.
    :param start: start distribution over the model's states, or None for the env's start state.
    :param rng: generator of the actions, start states and slips.
    """

    def __init__(self, env: Any, mdp: TabularMDP, start: np.ndarray | None, rng: np.random.Generator) -> None:
        base: FourRoomsEnv = env.unwrapped
        subgoals = [[row, col, reward] for row, col, reward in base.subgoals]
        self.kwargs = dict(start=base.start, goal=base.goal, goal_reward=base.goal_reward, subgoals=subgoals, slip=base.slip)
        self.kwargs.update(gamma=base.gamma, start_distribution=base.start_distribution)
        model = FourRoomsBatch(1, None, **self.kwargs).env.transition_model()
        if not (np.array_equal(model.P, mdp.P) and np.array_equal(model.R, mdp.R)):
            raise ValueError("the batched FourRooms made from the env's arguments does not match its transition model")
        self.start = None if start is None else action_cdf(np.asarray(start, dtype=np.float64)[None])[0]
        self.horizon = time_limit(env, mdp.gamma)
        self.rng = rng
        self._batches: dict[int, FourRoomsBatch] = {}
        self.pool: RolloutPool | None = None

    def _batch(self, n: int) -> FourRoomsBatch:
        if n not in self._batches:
            self._batches[n] = FourRoomsBatch(n, None, **self.kwargs)
            self._batches[n].np_random = self.rng
        return self._batches[n]

    def start_states(self, n: int) -> np.ndarray:
        """:param n: number of episodes.
        :return: ``(n,)`` start states of a new batch of episodes (drawn from the generator where the start is random)."""
        batch = self._batch(n)
        batch.reset()
        if self.start is not None:
            batch.states = np.searchsorted(self.start, self.rng.random(n), side="right")
        return batch.states.copy()

    def sample(self, pi: np.ndarray, n: int) -> Episodes:
        """:param pi: ``(S, A)`` action probabilities.
        :param n: number of episodes.
        :return: the episodes (from the :class:`RolloutPool` the sampler has joined, if any)."""
        if self.pool is not None:
            return self.pool.sample(self, pi, n)
        start = self.start_states(n)
        batch = self._batches[n]

        def step(actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            rewards, terminated, _ = batch.step(actions)
            return batch.states, rewards, terminated

        return rollout(start, step, pi, self.horizon, self.rng)


class RolloutPool:
    """
    The episodes of several :class:`FourRoomsSampler` s (one per agent, each run in its own thread), stepped together
    in one :class:`envs.four_rooms_vec.FourRoomsBatch`: every agent asks for its episodes with :meth:`sample` and
    waits; once every agent still running has asked, the last one to ask rolls out all the requests side by side and
    wakes the others. Each agent's episodes are number for number the ones its sampler alone gives: its start states
    and its actions are drawn from its own generator, in the same order (the pool needs ``slip = 0``, where the env
    draws nothing). An agent that stops calls :meth:`leave`.

    :param members: the number of agents that will ask.
    """

    def __init__(self, members: int) -> None:
        self._live = int(members)
        self._condition = threading.Condition()
        self._requests: dict[int, tuple[FourRoomsSampler, np.ndarray, int]] = {}
        self._results: dict[int, Episodes | BaseException] = {}
        self._batches: dict[int, FourRoomsBatch] = {}
        self._members_dynamics: tuple[str, int] | None = None

    def join(self, sampler: FourRoomsSampler) -> None:
        """:param sampler: a sampler whose episodes the pool will roll out from now on.
        :raises ValueError: when its env slips (the pool cannot reproduce its slip draws)."""
        if sampler.kwargs["slip"]:
            raise ValueError("a RolloutPool needs FourRooms-v0 without slip (slip = 0)")
        dynamics = (self._dynamics(sampler), sampler.horizon)
        if self._members_dynamics is None:
            self._members_dynamics = dynamics
        elif dynamics != self._members_dynamics:
            raise ValueError("a RolloutPool steps one FourRooms-v0: its agents' envs must differ at most in their start")
        sampler.pool = self

    @staticmethod
    def _dynamics(sampler: FourRoomsSampler) -> str:
        """:return: the env arguments that the joint batch's tables depend on (all but the start distribution)"""
        return repr(sorted((k, v) for k, v in sampler.kwargs.items() if k != "start_distribution"))

    def sample(self, sampler: FourRoomsSampler, pi: np.ndarray, n: int) -> Episodes:
        """:param sampler: the asking agent's sampler.
        :param pi: ``(S, A)`` its policy.
        :param n: its number of episodes.
        :return: its episodes."""
        ticket = id(sampler)
        with self._condition:
            self._requests[ticket] = (sampler, pi, n)
            self._serve_if_ready()
            while ticket not in self._results:
                self._condition.wait()
            result = self._results.pop(ticket)
        if isinstance(result, BaseException):
            raise result
        return result

    def leave(self) -> None:
        """An agent is done: the others no longer wait for it."""
        with self._condition:
            self._live -= 1
            self._serve_if_ready()

    def _serve_if_ready(self) -> None:
        if not self._requests or len(self._requests) < self._live:
            return
        requests, self._requests = self._requests, {}
        try:
            self._results.update(self._rollout(list(requests.values()), list(requests)))
        except BaseException as error:  # every waiting agent gets the error instead of waiting for ever
            self._results.update({ticket: error for ticket in requests})
        self._condition.notify_all()

    def _batch(self, sampler: FourRoomsSampler, n: int) -> FourRoomsBatch:
        if n not in self._batches:
            self._batches[n] = FourRoomsBatch(n, None, **sampler.kwargs)
        return self._batches[n]

    def _rollout(self, requests: list[tuple[FourRoomsSampler, np.ndarray, int]], tickets: list[int]) -> dict[int, Episodes]:
        """:func:`rollout` of every request side by side. Each agent's action draws come from its own generator: a
        block for the whole horizon is drawn at once, and once the agent's episodes have ended its generator is put
        back where drawing only the numbers used would have left it (a double costs one draw of the bit generator)."""
        sizes = np.array([n for _, _, n in requests])
        ends = np.cumsum(sizes)
        total = int(ends[-1])
        slices = [slice(e - n, e) for n, e in zip(sizes, ends, strict=True)]
        n_states = requests[0][1].shape[0]
        cdf = np.concatenate([action_cdf(pi) for _, pi, _ in requests])
        offset = np.repeat(np.arange(len(requests)) * n_states, sizes)
        batch = self._batch(requests[0][0], total)
        batch.states = np.concatenate([sampler.start_states(n) for sampler, _, n in requests])
        batch.elapsed[:] = 0
        horizon = requests[0][0].horizon
        saved = [sampler.rng.bit_generator.state for sampler, _, _ in requests]
        u = np.concatenate([sampler.rng.random((horizon, n)) for sampler, _, n in requests], axis=1)
        states, actions, rewards, alive = [batch.states.copy()], [], [], []
        running = np.ones(total, dtype=bool)
        steps = np.full(len(requests), horizon)
        active = np.ones(len(requests), dtype=bool)
        for t in range(horizon):
            a = (cdf.take(offset + states[-1], axis=0) <= u[t, :, None]).sum(axis=1)
            r, terminated, _ = batch.step(a)
            actions.append(a)
            rewards.append(np.where(running, r, 0.0))
            alive.append(running)
            states.append(batch.states.copy())
            running = running & ~terminated
            still = np.logical_or.reduceat(running, ends - sizes)
            steps[active & ~still] = t + 1
            active = still
            if not active.any():
                break
        for (sampler, _, n), state, k in zip(requests, saved, steps, strict=True):
            sampler.rng.bit_generator.state = state
            sampler.rng.random(int(k) * n)
        arrays = [np.stack(x) for x in (states, actions, rewards, alive)]
        return {
            ticket: Episodes(*(x[: steps[k] + (i == 0), slices[k]].copy() for i, x in enumerate(arrays)))
            for k, ticket in enumerate(tickets)
        }


class GymVectorSampler:
    """
    Any env with a transition model and ``info["state"]``: ``N`` copies (``gym.make(env.spec)``, or copies of the env
    when it has no spec) in a ``SyncVectorEnv``, reset with seeds from the generator. Slow (one Python step per copy),
    and only the env's own start distribution.

    :param env: the env.
    :param mdp: its model.
    :param start: must be None, or equal to the model's start distribution.
    :param rng: generator of the actions and the copies' seeds.
    """

    def __init__(self, env: Any, mdp: TabularMDP, start: np.ndarray | None, rng: np.random.Generator) -> None:
        if start is not None and not np.allclose(start, mdp.initial):
            name = getattr(getattr(env, "spec", None), "id", None) or type(env.unwrapped).__name__
            raise ValueError(f"sampled gradients on {name} start where the env starts: use rho='env'")
        spec = getattr(env, "spec", None)
        self.make: Callable[[], gym.Env] = (lambda: gym.make(spec)) if spec is not None else (lambda: copy.deepcopy(env))
        self.horizon = time_limit(env, mdp.gamma)
        self.rng = rng
        self._vectors: dict[int, gym.vector.SyncVectorEnv] = {}

    def sample(self, pi: np.ndarray, n: int) -> Episodes:
        """:param pi: ``(S, A)`` action probabilities.
        :param n: number of episodes.
        :return: the episodes."""
        if n not in self._vectors:
            self._vectors[n] = gym.vector.SyncVectorEnv([self.make for _ in range(n)])
        vector = self._vectors[n]
        _, info = vector.reset(seed=[int(s) for s in self.rng.integers(2**31, size=n)])

        def step(actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            _, rewards, terminated, truncated, info = vector.step(actions)
            return np.asarray(info["state"], dtype=np.int64), np.asarray(rewards, dtype=np.float64), terminated | truncated

        return rollout(np.asarray(info["state"], dtype=np.int64), step, pi, self.horizon, self.rng)


SamplerType = Callable[[Any, TabularMDP, "np.ndarray | None", np.random.Generator], Sampler]
#: The batched sampler of each env class; any other env gets :class:`GymVectorSampler`.
SAMPLERS: dict[type, SamplerType] = {BanditEnv: BanditSampler, FourRoomsEnv: FourRoomsSampler}


def make_sampler(env: Any, mdp: TabularMDP, start: np.ndarray | None, rng: np.random.Generator) -> Sampler:
    """
    :param env: a tabular env (not a bare model: episodes come from the env's dynamics).
    :param mdp: its model.
    :param start: start distribution over the model's states, or None for the env's own.
    :param rng: the generator of every random draw.
    :return: the env's sampler.
    """
    if isinstance(env, TabularMDP):
        raise ValueError("sampled gradients need an env to roll out episodes in, not a bare TabularMDP")
    return SAMPLERS.get(type(env.unwrapped), GymVectorSampler)(env, mdp, start, rng)
