"""envs.make: family detection, clear errors for missing packages and unknown ids, and each family's preprocessing."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs import make
from envs.make import ATARI, MINIGRID, OTHER, UnknownEnvError, ensure_registered, env_family, make_vec_env
from experiments.cli import main
from experiments.sb3_run import observation_kind

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("env_id", "family"),
    [
        ("ALE/Pong-v5", ATARI),
        ("ALE/Breakout-v5", ATARI),
        ("BreakoutNoFrameskip-v4", ATARI),
        ("SpaceInvadersDeterministic-v4", ATARI),
        ("Pong-v4", ATARI),  # not spelled as Atari: known by its registered entry point
        ("ALE/NotAGame-v5", ATARI),  # not registered: known by its spelling
        ("MiniGrid-DoorKey-5x5-v0", MINIGRID),
        ("MiniGrid-Empty-8x8-v0", MINIGRID),
        ("BabyAI-GoToRedBall-v0", MINIGRID),
        ("MiniGrid-NotAnEnv-v0", MINIGRID),
        ("FourRooms-v0", OTHER),
        ("envs:Bandit-v0", OTHER),
        ("CartPole-v1", OTHER),
        ("NotAnEnv-v0", OTHER),
    ],
)
def test_env_family(env_id: str, family: str) -> None:
    assert env_family(env_id) == family


@pytest.mark.parametrize(("family", "env_id"), [(ATARI, "ALE/Pong-v5"), (MINIGRID, "MiniGrid-DoorKey-5x5-v0")])
def test_missing_family_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, family: str, env_id: str) -> None:
    extra = make.FAMILY_PACKAGES[family][1]
    monkeypatch.setitem(make.FAMILY_PACKAGES, family, ("escort_rl_no_such_package", extra))
    with pytest.raises(UnknownEnvError, match=rf"not installed: pip install .*escort-rl\[{extra}\]"):
        ensure_registered(env_id)


def test_missing_package_is_one_line_from_train_py(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    monkeypatch.setitem(make.FAMILY_PACKAGES, ATARI, ("escort_rl_no_such_package", "atari"))
    assert main(["--env", "ALE/Breakout-v5", "-f", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "[atari]" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("env_id", "suggestion"), [("ALE/Breakout-v9", "ALE/Breakout-v5"), ("FourRoom-v0", "FourRooms-v0")])
def test_unknown_id_suggests_a_close_one(env_id: str, suggestion: str) -> None:
    with pytest.raises(UnknownEnvError, match=f"unknown environment id '{env_id}': did you mean .*{suggestion}"):
        ensure_registered(env_id)


def test_unknown_id_without_close_match() -> None:
    with pytest.raises(UnknownEnvError, match="unknown environment id 'Zzzzqx-v0'"):
        ensure_registered("Zzzzqx-v0")


def _emulator_frames_per_step(env_id: str) -> int:
    env = make_vec_env(env_id, 1, 0)
    env.reset()
    ale = env.envs[0].unwrapped.ale
    before = ale.getEpisodeFrameNumber()
    env.step(np.array([0]))
    frames = ale.getEpisodeFrameNumber() - before
    env.close()
    return frames


@pytest.mark.parametrize("env_id", ["ALE/Breakout-v5", "BreakoutNoFrameskip-v4", "Breakout-v4"])
def test_atari_skips_four_frames_per_step_whatever_the_id_style(env_id: str) -> None:
    assert _emulator_frames_per_step(env_id) == 4


def test_atari_keeps_the_ids_sticky_actions() -> None:
    for env_id, probability in (("ALE/Breakout-v5", 0.25), ("BreakoutNoFrameskip-v4", 0.0)):
        env = make_vec_env(env_id, 1, 0)
        assert env.envs[0].unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(probability)
        env.close()


def test_atari_observation_is_four_stacked_84x84_grey_frames_for_a_cnn() -> None:
    env = make_vec_env("ALE/Breakout-v5", 2, 0)
    obs = env.reset()
    assert env.observation_space.shape == (84, 84, 4) and env.observation_space.dtype == np.uint8
    assert obs.shape == (2, 84, 84, 4)
    assert observation_kind(env.observation_space) == "cnn"
    env.close()


def _first_life_loss(training: bool) -> tuple[bool, float]:
    env = make_vec_env("ALE/Breakout-v5", 1, 0, training=training)
    env.reset()
    rng = np.random.default_rng(0)
    lives = env.envs[0].unwrapped.ale.lives()
    for _ in range(2000):
        _, _, dones, infos = env.step(rng.integers(env.action_space.n, size=1))
        if infos[0]["lives"] < lives:
            env.close()
            return bool(dones[0]), float(infos[0]["lives"])
    raise AssertionError("no life lost in 2000 random steps")


def test_life_loss_ends_training_episodes_only() -> None:
    assert _first_life_loss(training=True) == (True, 4.0)
    assert _first_life_loss(training=False) == (False, 4.0)


def test_training_rewards_are_clipped_and_evaluation_rewards_are_not() -> None:
    rewards = {}
    for training in (True, False):
        env = make_vec_env("ALE/SpaceInvaders-v5", 1, 3, training=training)
        env.reset()
        rng = np.random.default_rng(0)
        rewards[training] = np.array([env.step(rng.integers(env.action_space.n, size=1))[1][0] for _ in range(300)])
        env.close()
    assert set(np.unique(rewards[True])) <= {0.0, 1.0}
    assert rewards[False].max() >= 5.0  # every Space Invaders alien is worth 5 to 30 points
    np.testing.assert_array_equal(np.sign(rewards[False]), rewards[True])


def test_atari_ram_observations_get_the_same_frame_skip() -> None:
    env = make_vec_env("ALE/Breakout-v5", 1, 0, env_kwargs={"obs_type": "ram"})
    env.reset()
    ale = env.envs[0].unwrapped.ale
    before = ale.getEpisodeFrameNumber()
    env.step(np.array([0]))
    assert ale.getEpisodeFrameNumber() - before == 4
    assert env.observation_space.shape == (128 * 4,)
    assert observation_kind(env.observation_space) == "mlp"
    env.close()


def test_atari_frame_skip_can_be_chosen() -> None:
    env = make_vec_env("ALE/Breakout-v5", 1, 0, env_kwargs={"frameskip": 2})
    env.reset()
    ale = env.envs[0].unwrapped.ale
    before = ale.getEpisodeFrameNumber()
    env.step(np.array([0]))
    assert ale.getEpisodeFrameNumber() - before == 2
    env.close()


def test_minigrid_observation_is_the_symbolic_view_for_a_cnn() -> None:
    env = make_vec_env("MiniGrid-DoorKey-5x5-v0", 2, 0)
    obs = env.reset()
    raw = gym.make("MiniGrid-DoorKey-5x5-v0")
    raw_obs, _ = raw.reset(seed=0)
    assert obs.shape == (2, 7, 7, 3) and obs.dtype == np.uint8
    np.testing.assert_array_equal(obs[0], raw_obs["image"])
    assert observation_kind(env.observation_space) == "cnn"
    env.close()


def test_other_envs_are_left_as_registered() -> None:
    env = make_vec_env("CartPole-v1", 2, 0)
    assert env.observation_space == gym.make("CartPole-v1").observation_space
    env.close()


def test_same_seed_same_atari_observations() -> None:
    first, second = (make_vec_env("ALE/Breakout-v5", 1, 7) for _ in range(2))
    np.testing.assert_array_equal(first.reset(), second.reset())
    for env in (first, second):
        env.close()
