"""BanditEnv: one-step episodes that follow the two-state transition model."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs  # noqa: F401  (registers the ids)
from envs.bandit import BanditEnv
from envs.tabular import discounted_visitation, policy_evaluation, value_iteration


def test_default_arms_are_optimal_close_and_bad() -> None:
    env = gym.make("Bandit-v0")
    assert env.action_space.n == 3
    assert env.unwrapped.rewards == (1.0, 0.9, 0.1)
    assert env.spec.max_episode_steps is None


@settings(max_examples=25, deadline=None)
@given(rewards=st.lists(st.floats(-5, 5), min_size=1, max_size=6), seed=st.integers(0, 100))
def test_model_values_match_the_arm_rewards(rewards: list[float], seed: int) -> None:
    mdp = BanditEnv(rewards=rewards).transition_model()
    assert (mdp.n_states, mdp.n_actions) == (2, len(rewards))
    np.testing.assert_array_equal(mdp.P[:, :, 1], 1.0)
    np.testing.assert_array_equal(mdp.R[0], rewards)
    assert mdp.terminal.tolist() == [False, True] and mdp.initial.tolist() == [1.0, 0.0]
    V, Q = value_iteration(mdp)
    assert V[0] == pytest.approx(max(rewards)) and V[1] == 0.0
    np.testing.assert_allclose(Q[0], rewards)
    pi = np.random.default_rng(seed).dirichlet(np.ones(len(rewards)), size=2)
    V_pi, _ = policy_evaluation(mdp, pi)
    assert V_pi[0] == pytest.approx(pi[0] @ rewards)
    gamma = mdp.gamma
    np.testing.assert_allclose(discounted_visitation(mdp, pi), [1 - gamma, gamma])


@pytest.mark.parametrize("arm", [0, 1, 2])
def test_one_pull_ends_the_episode_as_the_model_says(arm: int) -> None:
    env = gym.make("Bandit-v0")
    mdp, table = env.unwrapped.transition_model(), env.unwrapped.observations()
    obs, info = env.reset(seed=0)
    assert info["state"] == 0 and np.array_equal(obs, table[0]) and obs.dtype == np.float32
    obs, reward, terminated, truncated, info = env.step(arm)
    assert reward == mdp.R[0, arm] and terminated and not truncated
    assert info["state"] == 1 and mdp.terminal[1] and np.array_equal(obs, table[1])
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.step(arm)
    assert env.reset()[1]["state"] == 0


def test_noisy_rewards_have_the_arm_mean_and_depend_only_on_the_seed() -> None:
    def pulls(seed: int) -> list[float]:
        env = BanditEnv(rewards=[1.0, -2.0], noise=0.5)
        env.reset(seed=seed)
        rewards = []
        for _ in range(2000):
            rewards.append(env.step(1)[1])
            env.reset()
        return rewards

    rewards = np.array(pulls(0))
    assert abs(rewards.mean() + 2.0) < 4 * 0.5 / np.sqrt(len(rewards))
    assert rewards.std() == pytest.approx(0.5, rel=0.1)
    assert pulls(0) == pulls(0) and pulls(0) != pulls(1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rewards": []}, "non-empty"),
        ({"rewards": "1,2"}, "non-empty list"),
        ({"rewards": [1.0, None]}, r"rewards\[1\] must be a finite number"),
        ({"rewards": [1.0, float("inf")]}, r"rewards\[1\]"),
        ({"noise": -0.1}, "noise"),
        ({"gamma": 1.5}, "gamma"),
        ({"render_mode": "human"}, "render_mode"),
    ],
)
def test_invalid_kwargs_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BanditEnv(**kwargs)


def test_invalid_arm_is_rejected() -> None:
    env = BanditEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="arm index"):
        env.step(3)


def test_ansi_rendering_names_the_last_pull() -> None:
    env = BanditEnv(render_mode="ansi")
    env.reset(seed=0)
    assert "no pull yet" in env.render()
    env.step(1)
    assert "pulled 1, reward 0.9" in env.render()


def test_gymnasium_and_sb3_env_checkers_pass() -> None:
    for kwargs in ({}, {"noise": 0.3, "rewards": [0.0, 1.0]}):
        env = gym.make("Bandit-v0", **kwargs)
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=True)


def test_rgb_rendering_marks_the_last_pull() -> None:
    env = BanditEnv(render_mode="rgb_array")
    env.reset(seed=0)
    before = env.render()
    env.step(1)
    after = env.render()
    assert before.dtype == np.uint8 and before.shape == after.shape == (32, 24, 3)
    changed = np.argwhere((before != after).any(axis=2))
    assert changed.size and set(changed[:, 1] // 8) == {1}
