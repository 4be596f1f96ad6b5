"""MinAtar (Young & Tian, 2019): five Atari games on a 10x10 grid, registered under ``MinAtar/*`` ids.

## Description

MinAtar (https://github.com/kenjyoung/MinAtar, package ``minatar``) re-implements Asterix, Breakout, Freeway, Seaquest
and Space Invaders on a 10x10 grid whose cells are on or off in one channel per kind of object (ball, paddle, brick,
trail, ...). It keeps the games' dynamics (moving objects, sticky actions, difficulty that increases during an episode)
at a tiny fraction of the ALE's cost: the community's cheap proxy for Atari (Revisiting Rainbow, gymnax, PureJaxRL).

The ids are MinAtar's own (``minatar.gym.BaseEnv``): ``MinAtar/<Game>-v1`` has the game's minimal action set,
``MinAtar/<Game>-v0`` all six actions (the set of MinAtar's paper). ``import envs`` registers them when ``minatar`` is
installed (Gymnasium 1.x no longer loads the package's plugin entry point); ``gym.make`` then gives MinAtar's env
unchanged, and ``envs.make_vec_env`` adds :class:`MinAtarObservation` for torch.

## Action Space

``Discrete(n)``, the game's minimal action set for ``-v1``, indices into MinAtar's six actions for ``-v0``:

| Num | Action |
|-----|--------|
| 0   | no-op  |
| 1   | left   |
| 2   | up     |
| 3   | right  |
| 4   | down   |
| 5   | fire   |

| Game          | channels | minimal actions (``-v1``) |
|---------------|----------|---------------------------|
| Asterix       | 4        | 5                         |
| Breakout      | 4        | 3                         |
| Freeway       | 7        | 3                         |
| Seaquest      | 10       | 6                         |
| SpaceInvaders | 6        | 4                         |

## Observation Space

MinAtar's own: ``Box(False, True, (10, 10, C), bool)``, channel-last. Through ``envs.make_vec_env``:
``Box(0.0, 1.0, (C, 10, 10), float32)``, channel-first, the layout of torch's ``Conv2d``, values 0 or 1 (not an
image for SB3: it is neither scaled nor transposed), read by ``policies.extractors.MinAtarCNN``.

## Rewards

The game's score: +1 per brick (Breakout), crossing (Freeway), treasure (Asterix), enemy shot (Space Invaders,
Seaquest; Seaquest also pays for the oxygen left when surfacing with six divers).

## Starting State

Each game's own, drawn from the env's ``numpy.random.RandomState``; ``reset(seed=s)`` reseeds it, so the same seed
gives the same episode (``envs.make_vec_env`` gives each copy its ``envs.env_seeds`` seed at its first reset).

## Episode End

Termination is the game's: the ball is lost (Breakout), the player is hit (Asterix, Space Invaders, Seaquest) or out
of oxygen (Seaquest), or 2500 frames have passed (Freeway). There is no time limit besides Freeway's, as in MinAtar's
paper: ``--env-kwargs max_episode_steps=N`` adds one (a truncation).

## Arguments

- ``sticky_action_prob=0.1``: probability that the previous action is repeated instead of the chosen one.
- ``difficulty_ramping=True``: enemies speed up and spawn faster during an episode (Asterix, Seaquest, Space Invaders).
- ``render_mode``: ``"rgb_array"`` (needs ``seaborn``), ``"array"`` or ``"human"``.
"""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import register

#: Name in the ids -> MinAtar's module name of the game.
GAMES: dict[str, str] = {
    "Asterix": "asterix",
    "Breakout": "breakout",
    "Freeway": "freeway",
    "Seaquest": "seaquest",
    "SpaceInvaders": "space_invaders",
}
#: MinAtar's defaults (``minatar.Environment``), written into the registrations so that ``gym.spec(id).kwargs`` shows them.
DEFAULT_KWARGS: dict[str, float | bool] = {"sticky_action_prob": 0.1, "difficulty_ramping": True}
#: The minimal-action-set ids, one per game: the ``minatar`` suite.
MINATAR_IDS: tuple[str, ...] = tuple(f"MinAtar/{name}-v1" for name in GAMES)
ENTRY_POINT = "minatar.gym:BaseEnv"


def minatar_installed() -> bool:
    """:return: whether the ``minatar`` package can be imported (without importing it)"""
    return importlib.util.find_spec("minatar") is not None


def register_minatar() -> bool:
    """Register ``MinAtar/<Game>-v0`` and ``-v1`` as ``minatar.gym.register_envs`` does, with MinAtar's defaults as kwargs.

    Nothing is imported: the entry point is loaded by ``gym.make``. Ids already registered are left alone.

    :return: whether ``minatar`` is installed (and so the ids are registered)
    """
    if not minatar_installed():
        return False
    for name, game in GAMES.items():
        for version, minimal in (("v0", False), ("v1", True)):
            env_id = f"MinAtar/{name}-{version}"
            if env_id not in gym.registry:
                register(
                    id=env_id,
                    entry_point=ENTRY_POINT,
                    kwargs={"game": game, "use_minimal_action_set": minimal, **DEFAULT_KWARGS},
                )
    return True


class MinAtarObservation(gym.ObservationWrapper):
    """MinAtar's ``(10, 10, C)`` bool grid as a ``(C, 10, 10)`` float32 array of zeros and ones, for torch.

    :param env: a MinAtar env (``Box(bool, (10, 10, C))`` observations)
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        height, width, channels = env.observation_space.shape
        self.observation_space = spaces.Box(0.0, 1.0, (channels, height, width), np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """:param observation: ``(10, 10, C)`` bool
        :return: ``(C, 10, 10)`` float32"""
        return np.ascontiguousarray(np.moveaxis(observation, -1, 0), dtype=np.float32)
