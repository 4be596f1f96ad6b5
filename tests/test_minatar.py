"""envs.minatar: the MinAtar ids after ``import envs``, the channel-first observations of the family, MinAtar's env
kwargs, seeding, and every game trained for a few hundred steps with ppo and qac under escort."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("minatar")

import envs  # noqa: E402
from envs.make import MINATAR, env_family, make_vec_env  # noqa: E402
from envs.minatar import DEFAULT_KWARGS, GAMES, MINATAR_IDS  # noqa: E402
from experiments.cli import main  # noqa: E402
from experiments.evaluate import load_model, load_run  # noqa: E402
from policies.extractors import MinAtarCNN  # noqa: E402

#: Channels of each game's grid and size of its minimal action set (MinAtar's README and ``minimal_action_set``).
SHAPES = {"Asterix": (4, 5), "Breakout": (4, 3), "Freeway": (7, 3), "Seaquest": (10, 6), "SpaceInvaders": (6, 4)}


def test_import_envs_registers_every_game_with_minatars_defaults() -> None:
    assert set(MINATAR_IDS) == {f"MinAtar/{name}-v1" for name in GAMES}
    env = gym.make("MinAtar/Freeway-v1")
    assert env.observation_space.shape == (10, 10, 7) and env.observation_space.dtype == np.bool_
    assert {k: env.spec.kwargs[k] for k in DEFAULT_KWARGS} == {"sticky_action_prob": 0.1, "difficulty_ramping": True}
    assert gym.make("MinAtar/Freeway-v0").action_space.n == 6
    assert envs.MINATAR_IDS == MINATAR_IDS


@pytest.mark.parametrize("env_id", MINATAR_IDS)
def test_family_observations_are_channel_first_float32_zeros_and_ones(env_id: str) -> None:
    channels, n_actions = SHAPES[env_id.split("/")[1].split("-")[0]]
    assert env_family(env_id) == MINATAR
    vec_env = make_vec_env(env_id, 2, seed=0)
    assert vec_env.observation_space.shape == (channels, 10, 10) and vec_env.observation_space.dtype == np.float32
    assert vec_env.action_space.n == n_actions
    raw = gym.make(env_id)
    raw_obs, _ = raw.reset(seed=envs.env_seeds(0, 2)[0])
    obs = vec_env.reset()
    assert set(np.unique(obs)) <= {0.0, 1.0}
    np.testing.assert_array_equal(obs[0], np.moveaxis(raw_obs, -1, 0).astype(np.float32))


def _trajectory(seed: int, **env_kwargs: float | bool) -> tuple[np.ndarray, np.ndarray]:
    vec_env = make_vec_env("MinAtar/SpaceInvaders-v1", 2, seed=seed, env_kwargs=env_kwargs)
    rng = np.random.default_rng(0)
    observations, rewards = [vec_env.reset()], []
    for _ in range(300):
        obs, reward, _, _ = vec_env.step(rng.integers(vec_env.action_space.n, size=2))
        observations.append(obs)
        rewards.append(reward)
    return np.stack(observations), np.stack(rewards)


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    first, again, other = _trajectory(0), _trajectory(0), _trajectory(1)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_sticky_actions_are_an_env_kwarg() -> None:
    # with sticky_action_prob=1 every action repeats the first one (no-op), so the player never moves
    vec_env = make_vec_env("MinAtar/Breakout-v1", 1, seed=0, env_kwargs={"sticky_action_prob": 1.0})
    paddle = vec_env.reset()[0, 0]
    for _ in range(5):
        obs, _, done, _ = vec_env.step(np.array([2]))
        assert done[0] or np.array_equal(obs[0, 0], paddle)
    moving = make_vec_env("MinAtar/Breakout-v1", 1, seed=0, env_kwargs={"sticky_action_prob": 0.0})
    start = moving.reset()[0, 0]
    assert not np.array_equal(moving.step(np.array([2]))[0][0, 0], start)


def test_difficulty_ramping_is_an_env_kwarg() -> None:
    for ramping in (True, False):
        env = gym.make("MinAtar/SpaceInvaders-v1", difficulty_ramping=ramping)
        assert env.unwrapped.game.env.ramping is ramping


def test_the_papers_network_has_one_3x3_convolution_and_128_hidden_units() -> None:
    space = gym.spaces.Box(0.0, 1.0, (4, 10, 10), np.float32)
    extractor = MinAtarCNN(space)
    convolutions = [m for m in extractor.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in extractor.modules() if isinstance(m, torch.nn.Linear)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convolutions] == [(16, (3, 3), (1, 1))]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(16 * 8 * 8, 128)]
    features = extractor(torch.ones(3, 4, 10, 10))
    assert features.shape == (3, 128) and bool((features >= 0).all())


@pytest.mark.parametrize("algo", ["ppo", "qac"])
@pytest.mark.parametrize("env_id", MINATAR_IDS)
def test_every_game_trains_under_escort_and_saves_a_loadable_model(algo: str, env_id: str, tmp_path: Path) -> None:
    argv = ["--algo", algo, "--env", env_id, "--policy", "escort", "-n", "256", "--n-envs", "2", "--eval-freq", "0"]
    argv += ["--eval-episodes", "1", "--env-kwargs", "max_episode_steps=100", "--hyperparams", "n_steps=64", "batch_size=64"]
    argv += ["-f", str(tmp_path), "--verbose", "0"]
    assert main(argv) == 0
    (run_dir,) = (tmp_path / algo).iterdir()
    model = load_model(load_run(run_dir))
    obs = make_vec_env(env_id, 1, seed=3, training=False).reset()
    probs = model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0]).distribution.probs
    assert torch.allclose(probs.sum(-1), torch.ones(1)) and type(model.policy.features_extractor) is MinAtarCNN
