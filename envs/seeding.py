"""Env seeds derived from a run's seed with ``numpy.random.SeedSequence``: independent across runs, copies and streams.

The rule: copy ``i`` of a stream (``TRAIN_STREAM`` for training envs, ``EVAL_STREAM`` for evaluation envs) of a run
with seed ``s`` gets

    SeedSequence(s, spawn_key=(stream, i)).generate_state(1)[0]

as a Python int, i.e. child ``i`` of child ``stream`` of ``SeedSequence(s)``: the seeds of two runs, of two copies and
of the two streams are hashes of different inputs, so they do not overlap the way ``s + i`` does (there, runs ``s``
and ``s + 1`` share all but one env seed). The same ``s`` gives the same seeds; ``s = None`` draws fresh entropy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

#: Spawn keys of the env seeds of a run: its training envs and its evaluation envs.
TRAIN_STREAM, EVAL_STREAM = 0, 1


def check_seed(seed: int | None) -> None:
    """:param seed: a run's seed
    :raises ValueError: unless it is an integer >= 0 or None"""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be an integer >= 0 or None, got {seed!r}")


def env_seeds(seed: int | None, n: int, stream: int = TRAIN_STREAM) -> list[int]:
    """The env seeds of ``n`` copies of one stream of a run.

    :param seed: the run's seed, an integer >= 0 (None: fresh entropy, a random set of seeds)
    :param n: number of copies
    :param stream: ``TRAIN_STREAM`` (training envs) or ``EVAL_STREAM`` (evaluation envs); any integer >= 0 is a stream
    :return: ``n`` seeds in ``[0, 2**32)``, as Python ints (what ALE, MiniGrid and Gymnasium accept)
    """
    check_seed(seed)
    entropy = np.random.SeedSequence(seed).entropy
    return [int(np.random.SeedSequence(entropy, spawn_key=(stream, i)).generate_state(1)[0]) for i in range(n)]


class SeedSequenceDummyVecEnv(DummyVecEnv):
    """SB3's ``DummyVecEnv`` whose ``seed(s)`` gives the copies ``env_seeds(s, num_envs, stream)``, not ``s + i``.

    The seeds are used at the next ``reset()``, as ``DummyVecEnv``'s are; each copy's action space is seeded with its
    own seed at once (as SB3's ``make_vec_env`` seeds it). An algorithm built with ``seed=s`` calls ``env.seed(s)``
    and so gets the same seeds again.

    :param env_fns: functions that make the copies
    :param stream: spawn key of the seeds (``TRAIN_STREAM`` or ``EVAL_STREAM``)
    """

    def __init__(self, env_fns: list[Callable[[], gym.Env]], stream: int = TRAIN_STREAM) -> None:
        self.stream = stream
        super().__init__(env_fns)

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """
        :param seed: the run's seed (None: random seeds, action spaces left as they are)
        :return: the seed each copy gets at the next reset
        """
        seeds = env_seeds(seed, self.num_envs, self.stream)
        if seed is not None:
            for env, env_seed in zip(self.envs, seeds):
                env.action_space.seed(env_seed)
        self._seeds = list[int | None](seeds)
        return self._seeds
