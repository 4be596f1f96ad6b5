"""FourRooms batched: ``N`` copies held in numpy arrays and stepped together, for SB3 and for Gymnasium's vector API.

One core, :class:`FourRoomsBatch`, holds the dynamics: the state of every copy is one integer (the augmented state
``mask * n_cells + cell`` of :meth:`envs.FourRoomsEnv.transition_model`), and a step is a few table look-ups over all
copies at once, with the tables of one :class:`envs.FourRoomsEnv`. Two thin front ends put an API on it:

- :class:`FourRoomsVecEnv`, an SB3 ``VecEnv`` (what ``envs.make_vec_env`` and ``train.py`` use with ``n_envs > 1``):
  auto-reset with ``terminal_observation`` and ``TimeLimit.truncated`` in the infos, and ``Monitor``'s episode
  statistics (``info["episode"]``, an optional ``monitor.csv``).
- :class:`FourRoomsVectorEnv`, a Gymnasium ``VectorEnv`` (the ``vector_entry_point`` of ``FourRooms-v0``, so
  ``gym.make_vec("FourRooms-v0", num_envs=N)`` makes it): next-step auto-reset, infos as arrays, as
  ``SyncVectorEnv`` returns them.

Without slip the copies follow ``FourRoomsEnv`` exactly: same observations, rewards, flags and ``info["state"]`` for
the same actions. With ``slip > 0`` the slips of all copies are drawn from one generator, seeded by the list of
per-copy seeds, so the trajectories have the law of ``FourRoomsEnv``'s but not its random numbers. One int seed ``s``
gives the copies ``envs.seeding.env_seeds(s, num_envs, stream)``, derived with ``numpy.random.SeedSequence``, as
``envs.make_vec_env`` gives them to ``DummyVecEnv`` copies: runs with different seeds share no copy seed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.monitor import Monitor, ResultsWriter
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from envs.four_rooms import MOVES, FourRoomsEnv
from envs.seeding import TRAIN_STREAM, env_seeds

N_ACTIONS = len(MOVES)
MONITOR_NAME = "batched"


def _seed_list(seed: int | Sequence[int | None] | None, num_envs: int) -> list[int | None]:
    """Per-copy seeds from one int (``env_seeds(seed, num_envs)``, the training stream), a list (one per copy), or None
    (all None: the generator is kept)."""
    if seed is None:
        return [None] * num_envs
    if isinstance(seed, (int, np.integer)):
        return list[int | None](env_seeds(int(seed), num_envs, TRAIN_STREAM))
    seeds = list(seed)
    if len(seeds) != num_envs:
        raise ValueError(f"expected {num_envs} seeds, one per environment, got {len(seeds)}")
    return seeds


class FourRoomsBatch:
    """
    The dynamics of ``num_envs`` FourRooms copies, as arrays; no auto-reset, no API.

    ``states[i]`` is copy ``i``'s augmented state, ``elapsed[i]`` its steps since its last reset. Transitions, rewards
    and observations are read from tables of one :class:`envs.FourRoomsEnv` (``env``), built once.

    :param num_envs: number of copies, >= 1
    :param max_episode_steps: steps after which an episode is truncated (None: never)
    :param env_kwargs: keyword arguments of :class:`envs.FourRoomsEnv` (checked by it)
    """

    def __init__(self, num_envs: int, max_episode_steps: int | None = None, **env_kwargs: Any) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if max_episode_steps is not None and (isinstance(max_episode_steps, bool) or max_episode_steps < 1):
            raise ValueError(f"max_episode_steps must be an integer >= 1 or None, got {max_episode_steps!r}")
        self.env = FourRoomsEnv(**env_kwargs)
        self.num_envs = int(num_envs)
        self.max_episode_steps = max_episode_steps
        next_state, rewards = self.env._move_outcomes()
        self._next_state = next_state.ravel()
        self._reward = rewards.ravel()
        self._terminal = np.arange(self.env.n_states) % self.env.n_cells == self.env._goal_cell
        self.observations = self.env.observations()
        self.start_state = int(self.env.start_states[0])
        self.start_states = self.env.start_states
        self.np_random = np.random.default_rng()
        self.states = np.full(self.num_envs, self.start_state, dtype=np.int64)
        self.elapsed = np.zeros(self.num_envs, dtype=np.int64)

    def seed(self, seeds: Sequence[int | None]) -> None:
        """
        Reseed the slip generator from the per-copy seeds; a list of Nones keeps the current generator.

        :param seeds: one seed per copy
        """
        if any(s is not None for s in seeds):
            self.np_random = np.random.default_rng([int(s) for s in seeds if s is not None])

    def reset(self, envs: np.ndarray | slice = slice(None)) -> None:
        """
        Put copies on the start state with no sub-goal collected, or, with ``start_distribution="uniform"``, in
        non-terminal states drawn uniformly from ``np_random``.

        :param envs: indices (or a boolean mask, or a slice) of the copies to reset; default all
        """
        if len(self.start_states) == 1:
            self.states[envs] = self.start_state
        else:
            self.states[envs] = self.np_random.choice(self.start_states, size=self.states[envs].shape)
        self.elapsed[envs] = 0

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Move every copy one step; ``states`` then holds the states reached (terminal ones included).

        :param actions: ``(num_envs,)`` integers in ``[0, 4)``
        :return: rewards (float64), terminated and truncated (bool), each ``(num_envs,)``;
            truncated is ``elapsed >= max_episode_steps``, as Gymnasium's ``TimeLimit`` sets it
        """
        moves = np.asarray(actions, dtype=np.int64).reshape(-1)
        if moves.shape[0] != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions, got {moves.shape[0]}")
        if moves.min() < 0 or moves.max() >= N_ACTIONS:
            raise ValueError(f"actions must be in [0, {N_ACTIONS}), got values from {moves.min()} to {moves.max()}")
        if self.env.slip:
            slipped = self.np_random.random(self.num_envs) < self.env.slip
            moves = np.where(slipped, self.np_random.integers(N_ACTIONS, size=self.num_envs), moves)
        index = self.states * N_ACTIONS + moves
        rewards = self._reward.take(index)
        self.states = self._next_state.take(index)
        self.elapsed += 1
        terminated = self._terminal.take(self.states)
        if self.max_episode_steps is None:
            return rewards, terminated, np.zeros(self.num_envs, dtype=bool)
        return rewards, terminated, self.elapsed >= self.max_episode_steps

    def observe(self, states: np.ndarray | None = None) -> np.ndarray:
        """
        Observations of states, as ``FourRoomsEnv`` returns them.

        :param states: augmented states (default: the copies' current states)
        :return: ``(len(states), n_cells + n_subgoals)`` float32 array (a new one)
        """
        return self.observations.take(self.states if states is None else states, axis=0)

    def view(self, i: int) -> FourRoomsEnv:
        """
        The :class:`envs.FourRoomsEnv` of the tables, put in copy ``i``'s state: for reading (render, attributes).

        :param i: index of the copy
        :return: that env; stepping or resetting it does not change the batch
        """
        mask, cell = divmod(int(self.states[i]), self.env.n_cells)
        self.env._mask, self.env._cell = mask, cell
        return self.env


class FourRoomsVecEnv(VecEnv):
    """
    ``num_envs`` FourRooms copies as one SB3 ``VecEnv``, stepped together by :class:`FourRoomsBatch`.

    It returns what ``DummyVecEnv`` returns over ``Monitor(gym.make("FourRooms-v0"))`` copies: float32 rewards, a copy
    reset as soon as its episode ends, and infos with ``"state"``, ``"TimeLimit.truncated"``, and, for copies whose
    episode ended, ``"terminal_observation"`` and ``"episode": {"r", "l", "t"}`` (so ``ep_info_buffer`` fills). With
    ``monitor_dir`` the episodes of all copies go to one ``<monitor_dir>/batched.monitor.csv`` in ``Monitor``'s
    format. ``seed(s)`` gives copy ``i`` the seed ``env_seeds(s, num_envs, seed_stream)[i]`` at the next ``reset()``
    (SB3's ``VecEnv.seed`` would give it ``s + i``) and seeds the action space with copy 0's; the seeds drive the slips
    only.

    ``get_attr`` and ``env_method`` read one ``FourRoomsEnv`` put in the requested copy's state (``transition_model``,
    ``observations``, ``render``, ``collected_subgoals`` work); ``set_attr`` is not supported (the copies share their
    tables: make a new env instead).

    :param num_envs: number of copies
    :param seed: the run's seed, from which the copies' seeds for the first reset are derived (see ``seed``); None:
        random ones
    :param seed_stream: spawn key of the copies' seeds: ``envs.seeding.TRAIN_STREAM`` or ``EVAL_STREAM``
    :param max_episode_steps: truncate episodes after this many steps (None: never)
    :param monitor_dir: folder of the monitor CSV (None: no file)
    :param env_id: id written in the monitor CSV's header
    :param env_kwargs: keyword arguments of :class:`envs.FourRoomsEnv`
    """

    def __init__(
        self,
        num_envs: int,
        seed: int | None = None,
        *,
        seed_stream: int = TRAIN_STREAM,
        max_episode_steps: int | None = None,
        monitor_dir: str | None = None,
        env_id: str = "FourRooms-v0",
        **env_kwargs: Any,
    ) -> None:
        self.batch = FourRoomsBatch(num_envs, max_episode_steps, **env_kwargs)
        super().__init__(self.batch.num_envs, self.batch.env.observation_space, self.batch.env.action_space)
        self.t_start = time.time()
        self.results_writer: ResultsWriter | None = None
        if monitor_dir is not None:
            self.results_writer = ResultsWriter(
                os.path.join(monitor_dir, MONITOR_NAME), header={"t_start": self.t_start, "env_id": env_id}
            )
        self.returns = np.zeros(self.num_envs)
        self._actions = np.zeros(self.num_envs, dtype=np.int64)
        self.seed_stream = seed_stream
        self.seed(seed)

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """
        Derive the copies' seeds for the next ``reset()`` from one seed (an SB3 algorithm built with ``seed=s`` calls
        this with ``s``); seed the action space with copy 0's.

        :param seed: the run's seed (None: random seeds, action space left as it is)
        :return: ``env_seeds(seed, num_envs, seed_stream)``
        """
        seeds = env_seeds(seed, self.num_envs, self.seed_stream)
        if seed is not None:
            self.action_space.seed(seeds[0])
        self._seeds = list[int | None](seeds)
        return self._seeds

    def reset(self) -> np.ndarray:
        """
        Reset every copy (seeding the slips first if ``seed`` was called); partial episodes are dropped, as
        ``Monitor`` drops them.

        :return: ``(num_envs, obs_dim)`` observations
        """
        self.batch.seed(self._seeds)
        self.batch.reset()
        self.returns[:] = 0.0
        self.reset_infos = [{"state": state} for state in self.batch.states.tolist()]
        self._reset_seeds()
        self._reset_options()
        return self.batch.observe()

    def step_async(self, actions: np.ndarray) -> None:
        """:param actions: one action per copy"""
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        """
        Step every copy; reset those whose episode ended.

        :return: observations (after the resets), float32 rewards, dones, infos
        """
        rewards, terminated, truncated = self.batch.step(self._actions)
        self.returns += rewards
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{"state": s, "TimeLimit.truncated": False} for s in self.batch.states.tolist()]
        if np.count_nonzero(dones):
            self._end_episodes(np.flatnonzero(dones), infos, truncated & ~terminated)
        return self.batch.observe(), rewards.astype(np.float32), dones, infos

    def _end_episodes(self, ended: np.ndarray, infos: list[dict[str, Any]], time_limit: np.ndarray) -> None:
        """Fill the infos of the copies whose episode ended, log their episodes, and reset them."""
        final_obs = self.batch.observe(self.batch.states[ended])
        elapsed = round(time.time() - self.t_start, 6)
        for k, i in enumerate(ended.tolist()):
            episode = {"r": round(float(self.returns[i]), 6), "l": int(self.batch.elapsed[i]), "t": elapsed}
            infos[i].update({"TimeLimit.truncated": bool(time_limit[i]), "terminal_observation": final_obs[k]})
            infos[i]["episode"] = episode
            if self.results_writer is not None:
                self.results_writer.write_row(episode)
        self.batch.reset(ended)
        for i in ended.tolist():
            self.reset_infos[i] = {"state": int(self.batch.states[i])}
        self.returns[ended] = 0.0

    def close(self) -> None:
        """Close the monitor file."""
        if self.results_writer is not None:
            self.results_writer.close()
            self.results_writer = None

    def get_images(self) -> Sequence[np.ndarray | None]:
        """:return: one ``rgb_array`` frame per copy (``render_mode="rgb_array"``), else Nones"""
        if self.render_mode != "rgb_array":
            return [None] * self.num_envs
        return [self.batch.view(i).render() for i in range(self.num_envs)]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """
        :param attr_name: attribute of ``FourRoomsEnv``
        :param indices: copies to read (default all)
        :return: the attribute as each copy sees it
        """
        return [getattr(self.batch.view(i), attr_name) for i in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Not supported: the copies share their tables."""
        raise AttributeError(
            f"cannot set '{attr_name}' on {type(self).__name__}: its copies share one set of tables; make a new env"
        )

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """
        :param method_name: a reading method of ``FourRoomsEnv`` (``render``, ``transition_model``, ...)
        :param method_args: its positional arguments
        :param indices: copies to call it for (default all)
        :param method_kwargs: its keyword arguments
        :return: its result for each copy
        """
        return [getattr(self.batch.view(i), method_name)(*method_args, **method_kwargs) for i in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """
        :param wrapper_class: a wrapper class
        :param indices: copies to ask about (default all)
        :return: True for ``Monitor`` (the episode statistics are ``Monitor``'s), False otherwise
        """
        return [issubclass(Monitor, wrapper_class)] * len(self._indices(indices))

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, (int, np.integer)):
            return [int(indices)]
        return [int(i) for i in indices]


class FourRoomsVectorEnv(gym.vector.VectorEnv):
    """
    ``num_envs`` FourRooms copies as one Gymnasium ``VectorEnv``: the ``vector_entry_point`` of ``FourRooms-v0``.

    Next-step auto-reset, as ``SyncVectorEnv``: the step after a copy's episode ends resets it (its action is
    ignored, its reward is 0). Infos are ``{"state": (num_envs,) int array, "_state": all True}``. ``reset(seed=s)``
    gives copy ``i`` the seed ``envs.seeding.env_seeds(s, num_envs)[i]`` (derived with ``numpy.random.SeedSequence``,
    not ``s + i``); a list gives each copy its own; the seeds drive the slips only.

    :param num_envs: number of copies
    :param max_episode_steps: truncate episodes after this many steps (``make_vec`` passes the registered 200)
    :param env_kwargs: keyword arguments of :class:`envs.FourRoomsEnv`
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": FourRoomsEnv.metadata["render_modes"]}

    def __init__(self, num_envs: int = 1, max_episode_steps: int | None = None, **env_kwargs: Any) -> None:
        self.batch = FourRoomsBatch(num_envs, max_episode_steps, **env_kwargs)
        self.num_envs = self.batch.num_envs
        self.render_mode = self.batch.env.render_mode
        self.single_observation_space = self.batch.env.observation_space
        self.single_action_space = self.batch.env.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._np_random = self.batch.np_random
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """
        Reset every copy.

        :param seed: one seed from which the copies' are derived (``env_seeds(seed, num_envs)``), or one seed per
            copy, or None (keep the generator)
        :param options: unused
        :return: observations and ``{"state", "_state"}``
        """
        self.batch.seed(_seed_list(seed, self.num_envs))
        self._np_random = self.batch.np_random
        self.batch.reset()
        self._needs_reset[:] = False
        return self.batch.observe(), self._infos()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """
        Step every copy, or reset it if its episode ended on the previous step.

        :param actions: ``(num_envs,)`` actions
        :return: observations, float64 rewards, terminations, truncations, ``{"state", "_state"}``
        """
        rewards, terminated, truncated = self.batch.step(actions)
        if np.count_nonzero(self._needs_reset):
            restarted = self._needs_reset
            self.batch.reset(restarted)
            rewards[restarted], terminated[restarted], truncated[restarted] = 0.0, False, False
        self._needs_reset = terminated | truncated
        return self.batch.observe(), rewards, terminated, truncated, self._infos()

    def _infos(self) -> dict[str, Any]:
        return {"state": self.batch.states.copy(), "_state": np.ones(self.num_envs, dtype=bool)}

    def render(self) -> tuple[np.ndarray | str, ...] | None:
        """:return: one frame per copy, or None without a render mode"""
        if self.render_mode is None:
            return None
        return tuple(self.batch.view(i).render() for i in range(self.num_envs))
