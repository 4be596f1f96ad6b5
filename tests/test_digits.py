import gzip
import struct
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs  # noqa: F401  (registers Digits-v0)
from envs.digits import DigitsEnv, load_classification_data, read_idx, stratified_split
from experiments.config import RunConfig
from experiments.run import run

th.set_num_threads(1)

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write an IDX file by hand: 0, 0, type code, ndim, big-endian uint32 dims, big-endian data."""
    header = bytes([0, 0, IDX_CODES[array.dtype.type], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.fixture
def mnist_like(tmp_path: Path) -> dict[str, str]:
    """Tiny MNIST-style files: 40 training and 12 test images of 4x3 uint8 pixels, labels 0..4."""
    rng = np.random.default_rng(0)
    files = {
        "train_images": write_idx(tmp_path / "train-images", rng.integers(0, 256, (40, 4, 3), dtype=np.uint8), compress=True),
        "train_labels": write_idx(tmp_path / "train-labels", np.arange(40, dtype=np.uint8) % 5),
        "test_images": write_idx(tmp_path / "test-images", rng.integers(0, 256, (12, 4, 3), dtype=np.uint8)),
        "test_labels": write_idx(tmp_path / "test-labels.gz", np.arange(12, dtype=np.uint8) % 5, compress=True),
    }
    return {key: str(path) for key, path in files.items()}


def test_gymnasium_and_sb3_env_checkers_pass() -> None:
    check_env(gym.make("Digits-v0").unwrapped)
    sb3_check_env(DigitsEnv(split="test"))


def test_spaces_and_split_sizes_of_the_bundled_digits() -> None:
    env = gym.make("Digits-v0").unwrapped
    assert env.observation_space == gym.spaces.Box(0.0, 1.0, (64,), np.float32)
    assert env.action_space == gym.spaces.Discrete(10)
    assert env.n_train + env.n_test == 1797
    assert env.n_test == pytest.approx(0.25 * 1797, abs=10)
    x, y = env.dataset("train")
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))


def test_reward_is_one_exactly_for_the_correct_label() -> None:
    env = DigitsEnv()
    x, y = env.dataset("train")
    for seed in range(5):
        for action in range(env.n_classes):
            obs, info = env.reset(seed=seed)
            label = int(y[info["index"]])
            np.testing.assert_array_equal(obs, x[info["index"]])
            _, reward, terminated, truncated, step_info = env.step(action)
            assert reward == (1.0 if action == label else 0.0)
            assert terminated and not truncated and step_info["label"] == label


def test_episodes_are_one_step_and_need_a_reset() -> None:
    env = DigitsEnv()
    with pytest.raises(RuntimeError):
        env.step(0)
    env.reset(seed=0)
    env.step(0)
    with pytest.raises(RuntimeError):
        env.step(0)


def test_same_seed_same_examples_and_examples_cover_the_split() -> None:
    def indices(seed: int) -> list[int]:
        env = DigitsEnv(split="test")
        first = env.reset(seed=seed)[1]["index"]
        return [first] + [env.reset()[1]["index"] for _ in range(6000)]

    assert indices(3) == indices(3)
    assert indices(3) != indices(4)
    assert set(indices(3)) == set(range(DigitsEnv().n_test))


def test_split_is_fixed_stratified_and_disjoint() -> None:
    labels = np.repeat(np.arange(4), [10, 20, 31, 9])
    train, test = stratified_split(labels, 0.2)
    assert np.intersect1d(train, test).size == 0 and np.union1d(train, test).tolist() == list(range(len(labels)))
    assert [int(np.sum(labels[test] == c)) for c in range(4)] == [2, 4, 6, 2]
    np.testing.assert_array_equal(stratified_split(labels, 0.2)[1], test)
    a, b = DigitsEnv(), DigitsEnv(split="test")
    np.testing.assert_array_equal(a.dataset("test")[0], b.dataset("test")[0])
    assert DigitsEnv(test_fraction=0.5).n_test == pytest.approx(1797 / 2, abs=10)


def test_evaluate_accuracy_over_a_whole_split() -> None:
    env = gym.make("Digits-v0").unwrapped
    x, y = env.dataset("test")
    assert env.evaluate_accuracy(lambda obs: y.copy()) == 1.0
    assert env.evaluate_accuracy(lambda obs: np.full(len(obs), 3)) == pytest.approx(np.mean(y == 3))
    train_labels = env.dataset("train")[1]
    assert env.evaluate_accuracy(lambda obs: train_labels, split="train") == 1.0
    assert env.evaluate_accuracy(lambda obs: train_labels[::-1], split="train") < 0.5
    with pytest.raises(ValueError):
        env.evaluate_accuracy(lambda obs: y[:-1])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trips_files_written_by_hand(tmp_path: Path, dtype: type, compress: bool) -> None:
    array = (np.arange(2 * 3 * 4) - (0 if np.dtype(dtype).kind == "u" else 7)).astype(dtype).reshape(2, 3, 4) * 3
    read = read_idx(write_idx(tmp_path / "a.idx", array, compress))
    assert read.dtype == np.dtype(dtype) and read.dtype.isnative
    np.testing.assert_array_equal(read, array)


def test_read_idx_rejects_broken_files(tmp_path: Path) -> None:
    good = write_idx(tmp_path / "good", np.arange(6, dtype=np.uint8)).read_bytes()
    broken = {"magic": b"\x01" + good[1:], "type": good[:2] + b"\x07" + good[3:], "short": good[:-1], "empty": b""}
    for name, data in broken.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError):
            read_idx(tmp_path / name)


def test_env_reads_idx_train_and_test_files(mnist_like: dict[str, str]) -> None:
    env = gym.make("Digits-v0", split="test", **mnist_like).unwrapped
    assert (env.n_train, env.n_test, env.n_classes) == (40, 12, 5)
    assert env.observation_space.shape == (12,)
    images = read_idx(mnist_like["test_images"]).reshape(12, -1)
    np.testing.assert_allclose(env.dataset("test")[0], images / 255.0, rtol=1e-6)
    obs, info = env.reset(seed=0)
    np.testing.assert_allclose(obs, images[info["index"]] / 255.0, rtol=1e-6)
    assert env.step(info["index"] % 5)[1] == 1.0
    check_env(env)


def test_idx_training_files_alone_are_split_with_test_fraction(mnist_like: dict[str, str]) -> None:
    env = DigitsEnv(train_images=mnist_like["train_images"], train_labels=mnist_like["train_labels"], test_fraction=0.25)
    assert (env.n_train, env.n_test) == (30, 10)


def test_non_byte_idx_data_are_scaled_into_the_unit_box(tmp_path: Path) -> None:
    images = write_idx(tmp_path / "x", np.linspace(-5.0, 20.0, 30, dtype=np.float32).reshape(10, 3))
    labels = write_idx(tmp_path / "y", np.arange(10, dtype=np.int32) % 2)
    env = DigitsEnv(train_images=str(images), train_labels=str(labels), test_fraction=0.2)
    for split in ("train", "test"):
        x = env.dataset(split)[0]
        assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"split": "valid"},
        {"test_fraction": 0.0},
        {"test_fraction": 1.0},
        {"train_images": "x"},
        {"test_images": "x", "test_labels": "y"},
    ],
)
def test_bad_arguments_raise_value_errors(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        DigitsEnv(**kwargs)


def test_mismatched_idx_files_raise(tmp_path: Path, mnist_like: dict[str, str]) -> None:
    short_labels = write_idx(tmp_path / "short", np.zeros(39, dtype=np.uint8))
    with pytest.raises(ValueError, match="39 labels"):
        load_classification_data(0.25, mnist_like["train_images"], str(short_labels))
    other_shape = write_idx(tmp_path / "shape", np.zeros((12, 5, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="shape"):
        load_classification_data(
            0.25, mnist_like["train_images"], mnist_like["train_labels"], str(other_shape), mnist_like["test_labels"]
        )


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_deep_rl_runs_on_digits_through_the_generic_path(tmp_path: Path, algo: str) -> None:
    config = RunConfig(
        algo=algo,
        env="Digits-v0",
        policy="escort",
        n_timesteps=256,
        n_envs=2,
        eval_freq=128,
        eval_episodes=5,
        log_folder=str(tmp_path),
        verbose=0,
        hyperparams={"n_steps": 64, "batch_size": 64} if algo == "ppo" else {},
    )
    summary = run(config)
    assert summary["timesteps"] >= 256
    assert 0.0 <= summary["final_return"] <= 1.0
    assert (Path(summary["run_dir"]) / "model.zip").exists()


def test_rgb_array_render_shows_the_current_example() -> None:
    env = gym.make("Digits-v0", render_mode="rgb_array")
    obs, _ = env.reset(seed=1)
    image = env.render()
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[::8, ::8, 0], np.round(255 * obs.reshape(8, 8)))
    check_env(env.unwrapped)
