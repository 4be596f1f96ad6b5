"""envs.make: family detection, clear errors for missing packages and unknown ids, each family's preprocessing, and
env seeds derived with SeedSequence (independent across runs, copies, training and evaluation)."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from agents import QAC
from envs import make
from envs.make import ATARI, MINATAR, MINIGRID, OTHER, UnknownEnvError, ensure_registered, env_family, make_vec_env
from envs.seeding import EVAL_STREAM, TRAIN_STREAM, env_seeds
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
    rewards, dones = {}, {}
    for training in (True, False):
        env = make_vec_env("ALE/SpaceInvaders-v5", 1, 3, training=training)
        env.reset()
        rng = np.random.default_rng(0)
        steps = [env.step(rng.integers(env.action_space.n, size=1)) for _ in range(300)]
        rewards[training], dones[training] = (np.array([step[k][0] for step in steps]) for k in (1, 2))
        env.close()
    # the same game until the training episode ends at the first life lost (after it, the two envs part)
    same = (np.flatnonzero(dones[True])[:1] + 1).tolist() or [300]
    assert set(np.unique(rewards[True])) <= {0.0, 1.0}
    assert rewards[False][: same[0]].max() >= 5.0  # every Space Invaders alien is worth 5 to 30 points
    np.testing.assert_array_equal(np.sign(rewards[False][: same[0]]), rewards[True][: same[0]])


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
    raw_obs, _ = raw.reset(seed=env_seeds(0, 2)[0])
    assert obs.shape == (2, 7, 7, 3) and obs.dtype == np.uint8
    np.testing.assert_array_equal(obs[0], raw_obs["image"])
    assert observation_kind(env.observation_space) == "cnn"
    env.close()


def test_minatar_ids_are_their_own_family_and_channel_first_for_torch() -> None:
    pytest.importorskip("minatar")
    assert env_family("MinAtar/Breakout-v1") == MINATAR and env_family("MinAtar/NotAGame-v1") == MINATAR
    env = make_vec_env("MinAtar/Breakout-v1", 2, 0)
    raw = gym.make("MinAtar/Breakout-v1")
    raw_obs, _ = raw.reset(seed=env_seeds(0, 2)[0])
    obs = env.reset()
    assert obs.shape == (2, 4, 10, 10) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[0], np.moveaxis(raw_obs, -1, 0))
    assert observation_kind(env.observation_space) == "mlp"  # 0/1 floats, not an image SB3 would scale or transpose
    env.close()


def test_missing_minatar_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(make.FAMILY_PACKAGES, MINATAR, ("escort_rl_no_such_package", "minatar"))
    with pytest.raises(UnknownEnvError, match=r"not installed: pip install .*escort-rl\[minatar\]"):
        ensure_registered("MinAtar/Breakout-v1")


def test_other_envs_are_left_as_registered() -> None:
    env = make_vec_env("CartPole-v1", 2, 0)
    assert env.observation_space == gym.make("CartPole-v1").observation_space
    env.close()


def test_same_seed_same_atari_observations() -> None:
    first, second = (make_vec_env("ALE/Breakout-v5", 1, 7) for _ in range(2))
    np.testing.assert_array_equal(first.reset(), second.reset())
    for env in (first, second):
        env.close()


def _reset_seeds(vec_env) -> list[int]:
    """:return: the seed each copy was reset with (Gymnasium's ``np_random_seed``), after a first reset"""
    vec_env.reset()
    return [int(seed) for seed in vec_env.get_attr("np_random_seed")]


def test_env_seeds_of_different_runs_copies_and_streams_are_all_distinct() -> None:
    train = [seed for run in range(100) for seed in env_seeds(run, 8, TRAIN_STREAM)]
    evaluation = [env_seeds(run, 1, EVAL_STREAM)[0] for run in range(100)]
    assert len(set(train)) == len(train) == 800
    assert len(set(evaluation)) == 100 and not set(train) & set(evaluation)
    assert all(isinstance(seed, int) and 0 <= seed < 2**32 for seed in train + evaluation)
    assert env_seeds(3, 8) == env_seeds(3, 8) and env_seeds(3, 4) == env_seeds(3, 8)[:4]
    assert env_seeds(None, 8) != env_seeds(None, 8)


def test_copies_are_reset_with_the_derived_seeds_and_their_action_spaces_seeded_with_them() -> None:
    runs = {seed: make_vec_env("CartPole-v1", 8, seed) for seed in (0, 1)}
    assert {seed: _reset_seeds(env) for seed, env in runs.items()} == {seed: env_seeds(seed, 8) for seed in runs}
    for env, want in zip(runs[0].envs, env_seeds(0, 8)):
        samples = [env.action_space.sample() for _ in range(32)]
        fresh = gym.spaces.Discrete(2, seed=want)
        assert samples == [fresh.sample() for _ in range(32)]
    evaluation = make_vec_env("CartPole-v1", 1, 0, training=False, seed_stream=EVAL_STREAM)
    assert _reset_seeds(evaluation) == env_seeds(0, 1, EVAL_STREAM) and not set(_reset_seeds(evaluation)) & set(
        env_seeds(0, 8)
    )


@pytest.mark.parametrize(("algo", "kwargs"), [(PPO, {"batch_size": 32}), (QAC, {})])
def test_an_algorithm_built_with_the_seed_keeps_the_derived_seeds(algo: type, kwargs: dict) -> None:
    """SB3 algorithms call ``env.seed(seed)``; SB3's own ``VecEnv.seed`` would give copy ``i`` ``seed + i``."""
    env = make_vec_env("CartPole-v1", 4, 5)
    model = algo("MlpPolicy", env, n_steps=8, seed=5, device="cpu", **kwargs)
    assert _reset_seeds(model.get_env()) == env_seeds(5, 4)


def _doorkey_starts(seed: int) -> tuple[list[tuple[bytes, tuple[int, int], int]], np.ndarray]:
    env = make_vec_env("MiniGrid-DoorKey-8x8-v0", 8, seed)
    obs = env.reset()
    starts = [
        (e.unwrapped.grid.encode().tobytes(), tuple(e.unwrapped.agent_pos), int(e.unwrapped.agent_dir)) for e in env.envs
    ]
    env.close()
    return starts, obs


def test_doorkey_runs_with_different_seeds_start_from_different_grids() -> None:
    (starts_0, obs_0), (starts_1, _), (again, obs_again) = (_doorkey_starts(seed) for seed in (0, 1, 0))
    assert not set(starts_1) & set(starts_0)
    assert len(set(starts_0)) == 8
    assert again == starts_0
    np.testing.assert_array_equal(obs_again, obs_0)


def test_atari_copies_get_their_own_seeds() -> None:
    env = make_vec_env("ALE/Pong-v5", 3, 0)
    seeds = _reset_seeds(env)
    assert seeds == env_seeds(0, 3) and len(set(seeds)) == 3
    assert not set(seeds) & set(env_seeds(1, 3))
    env.close()


def test_a_negative_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        make_vec_env("CartPole-v1", 2, -1)
