"""Exact evaluation of a learned policy on an env that has a transition model (FourRooms, Bandit)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from envs import policy_evaluation, value_iteration


def greedy_policy(model: BaseAlgorithm, observations: np.ndarray, eval_env: VecEnv | None = None) -> np.ndarray:
    """The model's greedy (mode) action in every state, as a deterministic policy matrix.

    :param model: a trained SB3 model
    :param observations: (S, obs_dim) observation of each state of the transition model
    :param eval_env: the env whose normalisation statistics the model expects (VecNormalize), if any
    :return: (S, A) one-hot policy
    """
    obs = eval_env.normalize_obs(observations) if isinstance(eval_env, VecNormalize) else observations
    actions, _ = model.predict(obs, deterministic=True)
    pi = np.zeros((len(observations), int(model.action_space.n)))
    pi[np.arange(len(observations)), np.asarray(actions).reshape(-1)] = 1.0
    return pi


def greedy_report(
    model: BaseAlgorithm, env_id: str, env_kwargs: dict[str, Any], eval_env: VecEnv | None = None
) -> dict[str, Any]:
    """How good the greedy policy is, exactly: its discounted value from the start over V*, and its path's sub-goals.

    :param model: a trained SB3 model
    :param env_id: the env id
    :param env_kwargs: its kwargs
    :param eval_env: the evaluation env (for observation normalisation)
    :return: ``{}`` for envs without ``transition_model()``; else ``optimal_value``, ``greedy_value``,
        ``fraction_of_optimal`` and, for envs with sub-goals, ``subgoals_collected`` (indices, in order of the flags)
    """
    env = gym.make(env_id, **env_kwargs)
    base = env.unwrapped
    if not hasattr(base, "transition_model"):
        env.close()
        return {}
    mdp = base.transition_model()
    pi = greedy_policy(model, base.observations(), eval_env)
    optimal = float(value_iteration(mdp)[0] @ mdp.initial)
    greedy = float(policy_evaluation(mdp, pi)[0] @ mdp.initial)
    report: dict[str, Any] = {"optimal_value": optimal, "greedy_value": greedy, "fraction_of_optimal": greedy / optimal}
    if hasattr(base, "collected_subgoals"):
        report["subgoals_collected"] = _greedy_subgoals(env, pi)
    env.close()
    return report


def _greedy_subgoals(env: gym.Env, pi: np.ndarray) -> list[int]:
    """Follow the greedy policy for one episode (seed 0) and list the sub-goals it collects."""
    _, info = env.reset(seed=0)
    done = False
    while not done:
        _, _, terminated, truncated, info = env.step(int(np.argmax(pi[info["state"]])))
        done = terminated or truncated
    return [int(i) for i in env.unwrapped.collected_subgoals()]
