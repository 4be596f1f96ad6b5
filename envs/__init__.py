"""Registered environments and the exact tabular machinery behind them.

Importing this package registers ``FourRooms-v0``, ``Bandit-v0``, ``Digits-v0`` and, when ``minatar`` is installed,
``MinAtar/<Game>-v0``/``-v1`` (``envs.minatar``); ``gym.make("envs:FourRooms-v0")`` imports it first.
"""

from gymnasium.envs.registration import register

from envs.bandit import BanditEnv
from envs.digits import DigitsEnv
from envs.four_rooms import FourRoomsEnv
from envs.make import make_vec_env
from envs.minatar import MINATAR_IDS, MinAtarObservation, register_minatar
from envs.seeding import env_seeds
from envs.tabular import TabularMDP, discounted_visitation, policy_evaluation, value_iteration

register(
    id="FourRooms-v0",
    entry_point="envs.four_rooms:FourRoomsEnv",
    vector_entry_point="envs.four_rooms_vec:FourRoomsVectorEnv",
    max_episode_steps=200,
)
register(id="Bandit-v0", entry_point="envs.bandit:BanditEnv")
register(id="Digits-v0", entry_point="envs.digits:DigitsEnv")
register_minatar()

__all__ = [
    "BanditEnv",
    "DigitsEnv",
    "FourRoomsEnv",
    "MINATAR_IDS",
    "MinAtarObservation",
    "TabularMDP",
    "discounted_visitation",
    "env_seeds",
    "make_vec_env",
    "policy_evaluation",
    "value_iteration",
]
