"""Make vectorised environments with the wrappers their family needs (Atari, MiniGrid, everything else)."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any

import gymnasium as gym
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack

ATARI, MINIGRID, OTHER = "atari", "minigrid", "other"

#: For each family that needs an optional package: the module that registers its ids and the extra that installs it.
FAMILY_PACKAGES: dict[str, tuple[str, str]] = {ATARI: ("ale_py", "atari"), MINIGRID: ("minigrid", "minigrid")}


def env_family(env_id: str) -> str:
    """Name the family of an environment id from its spelling (no import needed).

    :param env_id: a Gymnasium id, e.g. ``ALE/Pong-v5``, ``BreakoutNoFrameskip-v4``, ``MiniGrid-DoorKey-5x5-v0``
    :return: ``"atari"``, ``"minigrid"`` or ``"other"``
    """
    name = env_id.split(":")[-1]
    if name.startswith("ALE/") or name.endswith(("NoFrameskip-v4", "NoFrameskip-v0", "Deterministic-v4")):
        return ATARI
    if name.startswith(("MiniGrid-", "BabyAI-")):
        return MINIGRID
    return OTHER


class UnknownEnvError(ValueError):
    """The id is not registered; the message names the fix (a close match, or the extra to install)."""


def ensure_registered(env_id: str) -> gym.envs.registration.EnvSpec:
    """Import what registers ``env_id`` (ours, ALE, MiniGrid) and return its spec.

    :param env_id: a Gymnasium id
    :return: its registered spec
    :raises UnknownEnvError: with a close match or the extra to install
    """
    importlib.import_module("envs")
    family = env_family(env_id)
    if family in FAMILY_PACKAGES:
        module, extra = FAMILY_PACKAGES[family]
        try:
            importlib.import_module(module)
        except ImportError:
            raise UnknownEnvError(
                f"'{env_id}' is a {family} environment but {module} is not installed: pip install -e '.[{extra}]'"
            ) from None
    try:
        return gym.spec(env_id)
    except gym.error.Error:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see gymnasium.pprint_registry() for the ids"
        raise UnknownEnvError(f"unknown environment id '{env_id}': {hint}") from None


def _atari_kwargs(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """ALE v5 ids skip 4 frames inside the emulator; AtariWrapper skips again, so the env must not."""
    spec = gym.spec(env_id)
    return {**env_kwargs, "frameskip": 1} if spec.kwargs.get("frameskip", 1) != 1 else dict(env_kwargs)


def _wrapper(family: str, training: bool) -> tuple[Callable[[gym.Env], gym.Env] | None, dict[str, Any] | None]:
    if family == ATARI:
        from stable_baselines3.common.atari_wrappers import AtariWrapper

        return AtariWrapper, {"terminal_on_life_loss": training, "clip_reward": training}
    if family == MINIGRID:
        from minigrid.wrappers import FlatObsWrapper

        return FlatObsWrapper, None
    return None, None


def make_vec_env(
    env_id: str,
    n_envs: int = 1,
    seed: int | None = 0,
    *,
    env_kwargs: dict[str, Any] | None = None,
    monitor_dir: str | None = None,
    training: bool = True,
    frame_stack: int | None = None,
) -> VecEnv:
    """Make ``n_envs`` copies of an environment, with its family's standard preprocessing, in one SB3 ``VecEnv``.

    - Atari: SB3's ``AtariWrapper`` (noop reset, frame skip 4, 84x84 grey; episodic life and reward clipping only when
      ``training``), 4 stacked frames. ``Monitor`` sits below the wrappers, so episode statistics are real game scores.
    - MiniGrid: ``FlatObsWrapper`` (image and mission in one flat vector) for an MLP.
    - Everything else: the env as registered, with ``Monitor``.

    :param env_id: a Gymnasium id
    :param n_envs: number of copies
    :param seed: seed of the first copy (copy i gets seed + i)
    :param env_kwargs: keyword arguments of ``gym.make``
    :param monitor_dir: folder for the ``Monitor`` CSV files (None: no files)
    :param training: training preprocessing (Atari: life loss ends an episode, rewards clipped) or evaluation
    :param frame_stack: frames to stack (default: 4 for Atari, none otherwise)
    :return: the vectorised env
    """
    ensure_registered(env_id)
    family = env_family(env_id)
    kwargs = _atari_kwargs(env_id, env_kwargs or {}) if family == ATARI else dict(env_kwargs or {})
    wrapper_class, wrapper_kwargs = _wrapper(family, training)
    vec_env = sb3_make_vec_env(
        env_id,
        n_envs=n_envs,
        seed=seed,
        monitor_dir=monitor_dir,
        wrapper_class=wrapper_class,
        wrapper_kwargs=wrapper_kwargs,
        env_kwargs=kwargs,
    )
    stack = frame_stack if frame_stack is not None else (4 if family == ATARI else 0)
    return VecFrameStack(vec_env, stack) if stack > 1 else vec_env
