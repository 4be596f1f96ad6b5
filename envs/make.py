"""Make vectorised environments with the wrappers their family needs (Atari, MiniGrid, MinAtar, everything else)."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any

import gymnasium as gym
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack

from envs.minatar import MinAtarObservation
from envs.seeding import TRAIN_STREAM, SeedSequenceDummyVecEnv, check_seed

ATARI, MINIGRID, MINATAR, OTHER = "atari", "minigrid", "minatar", "other"

#: For each family that needs an optional package: the module that registers its ids and the extra that installs it.
FAMILY_PACKAGES: dict[str, tuple[str, str]] = {
    ATARI: ("ale_py", "atari"),
    MINIGRID: ("minigrid", "minigrid"),
    MINATAR: ("minatar", "minatar"),
}
#: Top-level package of a registered entry point -> family.
ENTRY_POINT_FAMILIES: dict[str, str] = {"ale_py": ATARI, "minigrid": MINIGRID, "minatar": MINATAR}
#: Spellings of Atari, MiniGrid and MinAtar ids that are not registered (yet).
ATARI_SUFFIXES = ("NoFrameskip-v4", "NoFrameskip-v0", "Deterministic-v4", "Deterministic-v0")
MINIGRID_PREFIXES = ("MiniGrid-", "BabyAI-")
MINATAR_PREFIX = "MinAtar/"
#: Frames per agent step and frames stacked in an observation, for every Atari id (DQN's and rl-zoo3's standard).
ATARI_FRAME_SKIP = 4
ATARI_FRAME_STACK = 4


def env_family(env_id: str) -> str:
    """Name the family of an environment id.

    By spelling first, so that an id names its family even when the family's package is missing: ``ALE/*`` and
    ``*NoFrameskip-v4``/``*Deterministic-v4`` (and ``-v0``) are Atari, ``MiniGrid-*`` and ``BabyAI-*`` are MiniGrid,
    ``MinAtar/*`` is MinAtar. Any other id belongs to the package of its registered entry point (``ale_py``: Atari,
    ``minigrid``: MiniGrid, ``minatar``: MinAtar), after importing the installed family packages, so ``Pong-v4`` is
    Atari too. Everything else is ``"other"``.

    :param env_id: a Gymnasium id, e.g. ``ALE/Pong-v5``, ``BreakoutNoFrameskip-v4``, ``MiniGrid-DoorKey-5x5-v0``
    :return: ``"atari"``, ``"minigrid"``, ``"minatar"`` or ``"other"``
    """
    name = _split_id(env_id)[1]
    if name.startswith("ALE/") or name.endswith(ATARI_SUFFIXES):
        return ATARI
    if name.startswith(MINIGRID_PREFIXES):
        return MINIGRID
    if name.startswith(MINATAR_PREFIX):
        return MINATAR
    if name not in gym.registry:
        _import_installed_families()
    spec = gym.registry.get(name)
    return _entry_point_family(spec.entry_point) if spec is not None else OTHER


def _split_id(env_id: str) -> tuple[str | None, str]:
    """:param env_id: ``id`` or ``module:id``
    :return: (module or None, id)"""
    module, sep, name = env_id.rpartition(":")
    return (module or None) if sep else None, name


def _entry_point_family(entry_point: Any) -> str:
    module = entry_point.split(":")[0] if isinstance(entry_point, str) else getattr(entry_point, "__module__", "")
    return ENTRY_POINT_FAMILIES.get(module.split(".")[0], OTHER)


class UnknownEnvError(ValueError):
    """The id is not registered; the message names the fix (a close match, or the extra to install)."""


def ensure_registered(env_id: str) -> gym.envs.registration.EnvSpec:
    """Import what registers ``env_id`` (ours, its ``module:`` prefix, ALE, MiniGrid) and return its spec.

    :param env_id: a Gymnasium id, optionally ``module:id``
    :return: its registered spec
    :raises UnknownEnvError: naming the extra to install when the family's package is missing, else close matches
    """
    importlib.import_module("envs")
    module, name = _split_id(env_id)
    if module is not None:
        _import(module, f"'{env_id}' names the module {module}, which cannot be imported: check the spelling")
    family = env_family(env_id)
    if family in FAMILY_PACKAGES:
        package, extra = FAMILY_PACKAGES[family]
        _import(package, f"'{env_id}' is a {family} environment but {package} is not installed: {install_hint(extra)}")
    elif name not in gym.registry:
        _import_installed_families()
    try:
        return gym.spec(name)
    except gym.error.Error:
        close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see gymnasium.pprint_registry() for the ids"
        own = f"an env of your own: --gym-packages MODULE (the module that registers it), or --env MODULE:{name}"
        raise UnknownEnvError(f"unknown environment id '{env_id}': {hint} ({own})") from None


def install_hint(extra: str) -> str:
    """:param extra: an optional-dependency group of escort-rl
    :return: the command that installs it"""
    return f"pip install 'escort-rl[{extra}]' (in a checkout: pip install -e '.[{extra}]')"


def _import(module: str, message: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        raise UnknownEnvError(message) from None


def _import_installed_families() -> None:
    """Register the ids of every family package that is installed (ids like ``Pong-v4`` do not say their family)."""
    for package, _ in FAMILY_PACKAGES.values():
        try:
            importlib.import_module(package)
        except ImportError:
            continue


def _atari_setup(env_kwargs: dict[str, Any], training: bool) -> tuple[dict[str, Any], Callable[..., gym.Env], dict[str, Any]]:
    """The env kwargs and the wrapper that give every Atari id the same preprocessing.

    The frame skip is done once, ``ATARI_FRAME_SKIP`` (or a ``frameskip`` the user passes) frames per agent step,
    whatever the id's own ``frameskip`` (``v5``: 4, ``NoFrameskip-v4``: 1, ``v4``: random 2-4): image observations are
    skipped and max-pooled by ``AtariWrapper`` over an env that skips nothing; RAM observations (``obs_type="ram"``)
    are skipped by the emulator. Sticky actions (``repeat_action_probability``) stay as the id defines them.

    :param env_kwargs: the user's keyword arguments of ``gym.make``
    :param training: training preprocessing (life loss ends an episode, rewards clipped) or evaluation (neither)
    :return: (kwargs of ``gym.make``, wrapper class, its kwargs)
    """
    kwargs = dict(env_kwargs)
    skip = kwargs.pop("frameskip", ATARI_FRAME_SKIP)
    obs_type = kwargs.get("obs_type", "rgb")
    if obs_type == "ram":
        return {**kwargs, "frameskip": skip}, atari_ram_wrapper, {"training": training}
    if obs_type != "rgb":
        raise ValueError(f"obs_type={obs_type!r}: Atari preprocessing turns rgb frames grey itself; use 'rgb' or 'ram'")
    from stable_baselines3.common.atari_wrappers import AtariWrapper

    wrapper_kwargs = {"frame_skip": skip, "terminal_on_life_loss": training, "clip_reward": training}
    return {**kwargs, "frameskip": 1}, AtariWrapper, wrapper_kwargs


def atari_ram_wrapper(env: gym.Env, training: bool = True) -> gym.Env:
    """``AtariWrapper``'s preprocessing for RAM observations: no-op reset, fire reset, and for training episodic life
    and clipped rewards (frames are skipped by the emulator; there is no picture to warp).

    :param env: an ALE env with ``obs_type="ram"``
    :param training: training preprocessing or evaluation
    :return: the wrapped env
    """
    from stable_baselines3.common.atari_wrappers import ClipRewardEnv, EpisodicLifeEnv, FireResetEnv, NoopResetEnv

    env = NoopResetEnv(env, noop_max=30)
    if training:
        env = EpisodicLifeEnv(env)
    if "FIRE" in env.unwrapped.get_action_meanings():  # type: ignore[attr-defined]
        env = FireResetEnv(env)
    return ClipRewardEnv(env) if training else env


def _minigrid_setup(env_kwargs: dict[str, Any], training: bool) -> tuple[dict[str, Any], Callable[..., gym.Env], None]:
    """MiniGrid's Dict observation (7x7x3 view, direction, text mission) reduced to the 7x7x3 view, for a small CNN.

    The view is the whole state of tasks with a fixed mission (DoorKey, Empty, FourRooms, LavaGap, ...): with
    ``policies.extractors.MiniGridCNN`` PPO solves DoorKey-5x5 in about 30k steps, where the flattened view plus
    one-hot mission (``FlatObsWrapper``, 2835 values, an MLP) stays at the random policy's return after 100k.
    Tasks whose mission changes between episodes (BabyAI, Fetch, GoToDoor) need the mission, which this drops.
    """
    from minigrid.wrappers import ImgObsWrapper

    return dict(env_kwargs), ImgObsWrapper, None


def _minatar_setup(env_kwargs: dict[str, Any], training: bool) -> tuple[dict[str, Any], Callable[..., gym.Env], None]:
    """MinAtar's channel-last bool grid made channel-first float32 (``envs.minatar.MinAtarObservation``), for
    ``policies.extractors.MinAtarCNN``. Sticky actions and difficulty ramping stay as the kwargs set them (MinAtar's
    defaults: 0.1 and on), in training and evaluation alike."""
    return dict(env_kwargs), MinAtarObservation, None


def _plain_setup(env_kwargs: dict[str, Any], training: bool) -> tuple[dict[str, Any], None, None]:
    return dict(env_kwargs), None, None


#: Family -> (env kwargs, training) -> (kwargs of ``gym.make``, wrapper class or None, its kwargs).
FAMILY_SETUPS: dict[str, Callable[[dict[str, Any], bool], tuple[dict[str, Any], Any, Any]]] = {
    ATARI: _atari_setup,
    MINIGRID: _minigrid_setup,
    MINATAR: _minatar_setup,
    OTHER: _plain_setup,
}

#: Entry points whose copies one batched SB3 ``VecEnv`` steps together in numpy: entry point -> that class.
BATCHED_VEC_ENVS: dict[str, str] = {"envs.four_rooms:FourRoomsEnv": "envs.four_rooms_vec:FourRoomsVecEnv"}


def _batched_vec_env(
    spec: gym.envs.registration.EnvSpec,
    n_envs: int,
    seed: int | None,
    seed_stream: int,
    env_kwargs: dict[str, Any],
    monitor_dir: str | None,
) -> VecEnv:
    """The batched ``VecEnv`` of ``spec``; ``max_episode_steps`` from the kwargs or the registration, as ``gym.make``."""
    kwargs = {**spec.kwargs, **env_kwargs}
    max_episode_steps = kwargs.pop("max_episode_steps", spec.max_episode_steps)
    vec_env_class = gym.envs.registration.load_env_creator(BATCHED_VEC_ENVS[str(spec.entry_point)])
    return vec_env_class(
        n_envs,
        seed,
        seed_stream=seed_stream,
        max_episode_steps=max_episode_steps,
        monitor_dir=monitor_dir,
        env_id=spec.id,
        **kwargs,
    )


def _dummy_vec_env(
    env_id: str,
    n_envs: int,
    seed: int | None,
    seed_stream: int,
    env_kwargs: dict[str, Any],
    monitor_dir: str | None,
    wrapper_class: Callable[..., gym.Env] | None,
    wrapper_kwargs: dict[str, Any] | None,
) -> VecEnv:
    """SB3's ``make_vec_env`` copies (``Monitor`` files ``<monitor_dir>/<i>.monitor.csv``, then the wrapper) in a
    ``SeedSequenceDummyVecEnv``, seeded with the derived seeds (SB3's own ``seed`` would give copy ``i`` ``seed + i``)."""
    vec_env = sb3_make_vec_env(
        env_id,
        n_envs=n_envs,
        seed=None,
        monitor_dir=monitor_dir,
        wrapper_class=wrapper_class,
        wrapper_kwargs=wrapper_kwargs,
        env_kwargs=env_kwargs,
        vec_env_cls=SeedSequenceDummyVecEnv,
        vec_env_kwargs={"stream": seed_stream},
    )
    if seed is not None:
        vec_env.seed(seed)
    return vec_env


def make_vec_env(
    env_id: str,
    n_envs: int = 1,
    seed: int | None = 0,
    *,
    env_kwargs: dict[str, Any] | None = None,
    monitor_dir: str | None = None,
    training: bool = True,
    frame_stack: int | None = None,
    batched: bool = True,
    seed_stream: int = TRAIN_STREAM,
) -> VecEnv:
    """Make ``n_envs`` copies of an environment, with its family's standard preprocessing, in one SB3 ``VecEnv``.

    - Atari: SB3's ``AtariWrapper`` (noop reset, frame skip 4 for every id style, 84x84 grey; episodic life and reward
      clipping only when ``training``), 4 stacked frames; ``obs_type="ram"`` keeps the RAM vector (see
      :func:`_atari_setup`). ``Monitor`` sits below the wrappers, so episode statistics are real, unclipped game scores.
    - MiniGrid: ``ImgObsWrapper`` (the 7x7x3 symbolic view) for a small CNN (see :func:`_minigrid_setup`).
    - MinAtar: the ``(C, 10, 10)`` float32 grid for ``MinAtarCNN`` (see :func:`_minatar_setup`).
    - Everything else: the env as registered, with ``Monitor``.

    Env seeds: copy ``i`` gets ``envs.seeding.env_seeds(seed, n_envs, seed_stream)[i]``, child ``i`` of child
    ``seed_stream`` of ``numpy.random.SeedSequence(seed)`` (``generate_state(1)[0]``), at its first reset, and its
    action space is seeded with the same number. Runs with different seeds share no env seed, and a run's evaluation
    env (``seed_stream=EVAL_STREAM``) none with its training envs; the same seed gives the same envs. ``vec_env.seed(s)``,
    which an SB3 algorithm built with ``seed=s`` calls, applies the same rule (SB3's own gives copy ``i`` ``s + i``).

    :param env_id: a Gymnasium id
    :param n_envs: number of copies
    :param seed: the run's seed, an integer >= 0, from which every copy's seed is derived (None: random seeds)
    :param env_kwargs: keyword arguments of ``gym.make``
    :param monitor_dir: folder for the ``Monitor`` CSV files (None: no files)
    :param training: training preprocessing (Atari: life loss ends an episode, rewards clipped) or evaluation
    :param frame_stack: frames to stack (default: 4 for Atari, none otherwise)
    :param batched: step the copies of an env that has a batched ``VecEnv`` (``FourRooms-v0``:
        ``envs.four_rooms_vec.FourRoomsVecEnv``, one ``batched.monitor.csv``) together in numpy; False: one env per
        copy in SB3's ``DummyVecEnv`` (``envs.seeding.SeedSequenceDummyVecEnv``)
    :param seed_stream: spawn key of the env seeds: ``envs.seeding.TRAIN_STREAM`` (training envs) or ``EVAL_STREAM``
        (evaluation envs)
    :return: the vectorised env
    """
    check_seed(seed)
    spec = ensure_registered(env_id)
    family = env_family(env_id)
    kwargs, wrapper_class, wrapper_kwargs = FAMILY_SETUPS[family](env_kwargs or {}, training)
    if batched and spec.entry_point in BATCHED_VEC_ENVS:
        vec_env = _batched_vec_env(spec, n_envs, seed, seed_stream, kwargs, monitor_dir)
    else:
        vec_env = _dummy_vec_env(env_id, n_envs, seed, seed_stream, kwargs, monitor_dir, wrapper_class, wrapper_kwargs)
    stack = frame_stack if frame_stack is not None else (ATARI_FRAME_STACK if family == ATARI else 0)
    return VecFrameStack(vec_env, stack) if stack > 1 else vec_env
