"""The batched FourRooms: same dynamics as FourRoomsEnv, SB3 VecEnv and Gymnasium VectorEnv semantics, train.py wiring."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.monitor import Monitor, load_results
from stable_baselines3.common.vec_env import DummyVecEnv

from envs import FourRoomsEnv
from envs.four_rooms_vec import FourRoomsBatch, FourRoomsVecEnv, FourRoomsVectorEnv
from envs.make import make_vec_env
from envs.seeding import EVAL_STREAM, env_seeds
from experiments.cli import parse_configs
from experiments.errors import UsageError
from experiments.sb3_run import make_envs

th.set_num_threads(1)

#: A layout where random actions often collect sub-goals, reach the goal and run into a short time limit.
BUSY = {"start": [9, 9], "goal": [8, 11], "subgoals": [[9, 10, 0.2], [10, 9, 0.3]], "max_episode_steps": 12}
DEFAULT = {"max_episode_steps": 40}


def _actions(n_steps: int, n_envs: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(4, size=(n_steps, n_envs))


def _pair(env_kwargs: dict, n_envs: int, tmp_path: Path, **kwargs) -> tuple[FourRoomsVecEnv, DummyVecEnv]:
    batched = make_vec_env("FourRooms-v0", n_envs, 3, env_kwargs=env_kwargs, monitor_dir=str(tmp_path / "b"), **kwargs)
    single = make_vec_env(
        "FourRooms-v0", n_envs, 3, env_kwargs=env_kwargs, monitor_dir=str(tmp_path / "s"), batched=False, **kwargs
    )
    assert isinstance(batched, FourRoomsVecEnv) and isinstance(single, DummyVecEnv)
    return batched, single


@pytest.mark.parametrize("env_kwargs", [BUSY, DEFAULT], ids=["busy", "default"])
def test_sb3_vec_env_matches_single_envs_step_by_step(env_kwargs: dict, tmp_path: Path) -> None:
    batched, single = _pair(env_kwargs, 16, tmp_path)
    np.testing.assert_array_equal(batched.reset(), single.reset())
    assert batched.reset_infos == single.reset_infos
    seen = {"terminated": 0, "truncated": 0, "flag": 0}
    for actions in _actions(300, 16):
        obs, rewards, dones, infos = batched.step(actions)
        obs_s, rewards_s, dones_s, infos_s = single.step(actions)
        np.testing.assert_array_equal(obs, obs_s)
        assert obs.dtype == obs_s.dtype and rewards.dtype == rewards_s.dtype
        np.testing.assert_array_equal(rewards, rewards_s)
        np.testing.assert_array_equal(dones, dones_s)
        for info, info_s in zip(infos, infos_s):
            assert set(info) == set(info_s)
            assert info["state"] == info_s["state"] and info["TimeLimit.truncated"] == info_s["TimeLimit.truncated"]
            if "episode" in info:
                np.testing.assert_array_equal(info["terminal_observation"], info_s["terminal_observation"])
                assert (info["episode"]["r"], info["episode"]["l"]) == (info_s["episode"]["r"], info_s["episode"]["l"])
                seen["truncated" if info["TimeLimit.truncated"] else "terminated"] += 1
        seen["flag"] += int(obs[:, 104:].sum())
    assert seen["truncated"] > 0 and seen["flag"] > 0
    if env_kwargs is BUSY:
        assert seen["terminated"] > 0
    batched.close()
    single.close()
    rows = load_results(str(tmp_path / "b"))
    rows_s = load_results(str(tmp_path / "s"))
    assert len(rows) == sum(seen[k] for k in ("terminated", "truncated")) > 0
    assert sorted(zip(rows["r"], rows["l"])) == sorted(zip(rows_s["r"], rows_s["l"]))


@pytest.mark.parametrize("env_kwargs", [BUSY, DEFAULT], ids=["busy", "default"])
def test_make_vec_entry_point_matches_sync_vector_env(env_kwargs: dict) -> None:
    fast = gym.make_vec("FourRooms-v0", num_envs=8, vectorization_mode="vector_entry_point", **env_kwargs)
    sync = gym.make_vec("FourRooms-v0", num_envs=8, vectorization_mode="sync", **env_kwargs)
    assert isinstance(fast, FourRoomsVectorEnv)
    assert fast.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"]
    assert fast.observation_space == sync.observation_space and fast.action_space == sync.action_space
    for got, want in zip(fast.reset(seed=1), sync.reset(seed=1)):
        _assert_same(got, want)
    ends = 0
    for actions in _actions(200, 8, seed=1):
        step, step_s = fast.step(actions), sync.step(actions)
        for got, want in zip(step, step_s):
            _assert_same(got, want)
        ends += int(np.sum(step[2] | step[3]))
    assert ends > 0


def _assert_same(got: object, want: object) -> None:
    if isinstance(want, dict):
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    else:
        np.testing.assert_array_equal(got, want)
        assert np.asarray(got).dtype == np.asarray(want).dtype


def test_make_vec_uses_the_batched_env_by_default() -> None:
    env = gym.make_vec("FourRooms-v0", num_envs=4, subgoals=[])
    assert isinstance(env, FourRoomsVectorEnv) and env.single_observation_space.shape == (104,)
    obs, info = env.reset(seed=[5, 6, 7, 8])
    assert obs.shape == (4, 104) and (info["state"] == FourRoomsEnv(subgoals=[]).reset()[1]["state"]).all()


def test_slip_follows_the_transition_model() -> None:
    """Pooled chi-square of observed next states against ``transition_model().P`` over every visited (s, a)."""
    batch = FourRoomsBatch(4096, slip=0.4)
    batch.seed(list(range(4096)))
    P = batch.env.transition_model().P
    counts = np.zeros_like(P)
    for actions in _actions(20, 4096, seed=2):
        states = batch.states.copy()
        _, terminated, _ = batch.step(actions)
        assert (P[states, actions, batch.states] > 0).all()
        np.add.at(counts, (states, actions, batch.states), 1)
        batch.reset(terminated)
    expected = counts.sum(axis=2, keepdims=True) * P
    cells = expected >= 5
    chi2 = float((((counts - expected) ** 2)[cells] / expected[cells]).sum())
    dof = int(cells.sum() - (cells.any(axis=2)).sum())
    assert dof > 100 and chi2 < dof + 5 * np.sqrt(2 * dof)


def test_seeds_fix_the_slips() -> None:
    def rollout(seed: int) -> np.ndarray:
        env = FourRoomsVecEnv(32, seed, max_episode_steps=50, slip=0.3)
        observations = [env.reset()] + [env.step(actions)[0] for actions in _actions(60, 32)]
        return np.stack(observations)

    np.testing.assert_array_equal(rollout(4), rollout(4))
    assert not np.array_equal(rollout(4), rollout(5))


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "dummy"])
def test_runs_with_different_seeds_slip_differently_in_every_copy(batched: bool) -> None:
    """Every copy takes the same actions, so a copy's path depends on its slips alone: with ``seed + i`` copy ``i`` of
    seed 1 would slip as copy ``i + 1`` of seed 0."""

    def paths(seed: int) -> np.ndarray:
        env = make_vec_env("FourRooms-v0", 8, seed, env_kwargs={"slip": 0.3}, batched=batched)
        states = [env.reset().argmax(axis=1)] + [env.step(np.full(8, a))[0].argmax(axis=1) for a in _actions(60, 1)[:, 0]]
        return np.stack(states, axis=1)  # (copies, steps)

    seed_0, seed_1 = paths(0), paths(1)
    np.testing.assert_array_equal(paths(0), seed_0)
    assert len({path.tobytes() for path in seed_0}) == 8
    assert not {path.tobytes() for path in seed_0} & {path.tobytes() for path in seed_1}


def test_batched_copies_get_the_derived_seeds_also_from_an_algorithm() -> None:
    env = make_vec_env("FourRooms-v0", 4, 7, env_kwargs=BUSY)
    assert isinstance(env, FourRoomsVecEnv) and env._seeds == env_seeds(7, 4)
    fresh = gym.spaces.Discrete(4, seed=env_seeds(7, 4)[0])  # the action space is copy 0's, as in DummyVecEnv
    assert [env.action_space.sample() for _ in range(16)] == [fresh.sample() for _ in range(16)]
    PPO("MlpPolicy", env, n_steps=16, batch_size=64, seed=7, device="cpu")
    assert env._seeds == env_seeds(7, 4)
    env.reset()
    np.testing.assert_array_equal(env.batch.np_random.random(8), np.random.default_rng(env_seeds(7, 4)).random(8))


def test_vector_env_derives_the_copies_seeds_from_an_int() -> None:
    def slips(seed: int | list[int]) -> np.ndarray:
        env = FourRoomsVectorEnv(8, slip=0.3)
        env.reset(seed=seed)
        return np.stack([env.step(np.zeros(8, dtype=np.int64))[4]["state"] for _ in range(30)])

    np.testing.assert_array_equal(slips(2), slips(2))
    np.testing.assert_array_equal(slips(2), slips(env_seeds(2, 8)))
    assert not np.array_equal(slips(2), slips(3))
    assert not np.array_equal(slips(2), slips(list(range(2, 10))))


@pytest.mark.parametrize("flags", [[], ["--no-batched-env"]], ids=["batched", "dummy"])
def test_training_and_evaluation_envs_of_runs_share_no_seed(flags: list[str]) -> None:
    seen: list[int] = []
    for seed in (0, 1):
        [config] = parse_configs(["--env", "FourRooms-v0", "--n-envs", "8", "--seed", str(seed), *flags])
        train_env, eval_env = make_envs(config, {"n_envs": 8}, None)
        assert train_env._seeds == env_seeds(seed, 8) and eval_env._seeds == env_seeds(seed, 1, EVAL_STREAM)
        seen += train_env._seeds + eval_env._seeds
    assert len(set(seen)) == len(seen) == 18


def test_a_negative_run_seed_is_a_usage_error() -> None:
    [config] = parse_configs(["--env", "FourRooms-v0", "--seed", "-1"])
    with pytest.raises(UsageError, match="--seed must be >= 0"):
        make_envs(config, {"n_envs": 2}, None)


def test_ppo_trains_identically_on_batched_and_single_envs(tmp_path: Path) -> None:
    results = []
    for batched in (True, False):
        env = make_vec_env("FourRooms-v0", 4, 0, env_kwargs=BUSY, batched=batched)
        model = PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=2, seed=0, device="cpu")
        model.learn(512)
        episodes = [(e["r"], e["l"]) for e in model.ep_info_buffer]
        results.append((th.nn.utils.parameters_to_vector(model.policy.parameters()).detach(), episodes))
    (params, episodes), (params_s, episodes_s) = results
    assert len(episodes) > 10 and episodes == episodes_s
    assert th.equal(params, params_s)


def test_train_uses_the_batched_env_unless_told_not_to() -> None:
    [config] = parse_configs(["--env", "FourRooms-v0", "--n-envs", "4"])
    train_env, eval_env = make_envs(config, {"n_envs": 4}, None)
    assert isinstance(train_env, FourRoomsVecEnv) and train_env.num_envs == 4
    assert isinstance(eval_env, FourRoomsVecEnv) and eval_env.num_envs == 1
    [config] = parse_configs(["--env", "FourRooms-v0", "--n-envs", "4", "--no-batched-env"])
    train_env, eval_env = make_envs(config, {"n_envs": 4}, None)
    assert isinstance(train_env, DummyVecEnv) and train_env.num_envs == 4 and isinstance(eval_env, DummyVecEnv)


def test_attributes_methods_and_images_read_each_copy() -> None:
    kwargs = {**BUSY, "render_mode": "rgb_array"}
    batched, single = (make_vec_env("FourRooms-v0", 3, 0, env_kwargs=kwargs, batched=b) for b in (True, False))
    batched.reset()
    single.reset()
    for actions in [[3, 1, 0], [1, 3, 3]]:
        _, _, _, infos = batched.step(np.array(actions))
        single.step(np.array(actions))
    assert batched.get_attr("state") == [info["state"] for info in infos] == single.get_attr("state")
    assert batched.env_method("collected_subgoals") == single.env_method("collected_subgoals")
    assert batched.env_method("collected_subgoals", indices=[1]) == [[1]]
    for image, image_s in zip(batched.get_images(), single.get_images()):
        np.testing.assert_array_equal(image, image_s)
    assert batched.env_is_wrapped(Monitor) == [True] * 3 and batched.env_is_wrapped(gym.Wrapper) == [True] * 3
    with pytest.raises(AttributeError, match="share"):
        batched.set_attr("slip", 0.5)


@pytest.mark.parametrize(
    "actions, match",
    [([0, 4], r"in \[0, 4\)"), ([-1, 0], r"in \[0, 4\)"), ([0, 1, 2], "expected 2 actions")],
)
def test_bad_actions_are_refused(actions: list[int], match: str) -> None:
    env = FourRoomsVecEnv(2, 0)
    env.reset()
    with pytest.raises(ValueError, match=match):
        env.step(np.array(actions))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="num_envs"):
        FourRoomsBatch(0)
    with pytest.raises(ValueError, match="max_episode_steps"):
        FourRoomsBatch(2, max_episode_steps=0)
    with pytest.raises(ValueError, match="slip"):
        FourRoomsVecEnv(2, slip=1.5)
    with pytest.raises(ValueError, match="3 seeds"):
        FourRoomsVectorEnv(3).reset(seed=[1, 2])


def test_uniform_start_in_the_batched_envs_follows_the_model_and_the_seed(tmp_path: Path) -> None:
    kwargs = {"start_distribution": "uniform", "max_episode_steps": 5}
    first = make_vec_env("FourRooms-v0", 64, 3, env_kwargs=kwargs)
    again = make_vec_env("FourRooms-v0", 64, 3, env_kwargs=kwargs)
    other = make_vec_env("FourRooms-v0", 64, 4, env_kwargs=kwargs)
    assert isinstance(first, FourRoomsVecEnv)
    model = first.batch.env.transition_model()
    obs, obs_again, obs_other = first.reset(), again.reset(), other.reset()
    np.testing.assert_array_equal(obs, obs_again)
    assert not np.array_equal(obs, obs_other)
    dones = np.ones(64, dtype=bool)
    starts = []
    for actions in _actions(30, 64):
        restarted = np.flatnonzero(dones)
        states = [first.reset_infos[i]["state"] for i in restarted]
        np.testing.assert_array_equal(obs[restarted], first.batch.observations[states])
        starts.extend(states)
        obs, _, dones, _ = first.step(actions)
        obs_again, _, _, _ = again.step(actions)
        np.testing.assert_array_equal(obs, obs_again)
    assert not model.terminal[starts].any() and len(set(starts)) > 200  # about 270 of 412 states in ~450 draws
    vector = gym.make_vec("FourRooms-v0", num_envs=64, vectorization_mode="vector_entry_point", **kwargs)
    _, infos = vector.reset(seed=0)
    assert not model.terminal[infos["state"]].any() and len(set(infos["state"].tolist())) > 40
