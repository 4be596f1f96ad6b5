"""Classification as a one-step contextual bandit: see an example, name its label, get 1 if right."""

from __future__ import annotations

import functools
import gzip
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

SPLITS = ("train", "test")

SPLIT_SEED = 0
"""Seed of the stratified train/test split of data that comes without a test set: fixed, so every run, every
environment instance and the supervised trainer see the same held-out examples."""

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | Path) -> np.ndarray:
    """
    Read an array from an IDX file (the format of MNIST, Fashion-MNIST, EMNIST), gzipped or not.

    The header is two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int, 0x0D float, 0x0E double),
    the number of dimensions, then each dimension as a big-endian uint32; the data follow, big-endian, row-major.

    :param path: The file (``.gz`` or raw; gzip is recognised by its magic number, not by the name).
    :return: The array, in native byte order, with the shape of the header.
    """
    raw = Path(path).read_bytes()
    data = gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or data[3] == 0:
        raise ValueError(f"{path} is not an IDX file: its first four bytes are not 0, 0, a type code and a dimension count")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise ValueError(f"{path} is not an IDX file: the header is cut short")
    shape = struct.unpack(f">{ndim}I", data[4:offset])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - offset != expected:
        held = len(data) - offset
        raise ValueError(f"{path}: the header promises shape {shape} ({expected} bytes of data), the file holds {held}")
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


@dataclass(frozen=True)
class ClassificationData:
    """A labelled data set split in two: features scaled to [0, 1] as float32 rows, labels as int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """:param name: ``"train"`` or ``"test"``
        :return: features ``(n, d)`` and labels ``(n,)`` of that split (read-only)"""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return (self.x_train, self.y_train) if name == "train" else (self.x_test, self.y_test)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """
    Indices of a stratified split: ``round(test_fraction * n_c)`` examples of each class ``c`` go to the test side.

    :param labels: ``(n,)`` class labels
    :param test_fraction: Share of each class held out, in (0, 1)
    :param seed: Seed of the shuffle
    :return: Sorted train indices and sorted test indices
    """
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    test_idx = np.sort(np.concatenate([rng.permutation(m)[: round(test_fraction * len(m))] for m in members]))
    return np.setdiff1d(np.arange(len(labels)), test_idx), test_idx


@functools.lru_cache(maxsize=8)
def load_classification_data(
    test_fraction: float = 0.25,
    train_images: str | None = None,
    train_labels: str | None = None,
    test_images: str | None = None,
    test_labels: str | None = None,
) -> ClassificationData:
    """
    Load, scale and split a data set (cached: environments built with the same arguments share one copy).

    Without paths: scikit-learn's bundled 8x8 digits (1797 examples, 64 pixels in 0..16, scaled by 1/16). With
    ``train_images``/``train_labels``: those IDX files, images flattened to rows; ``uint8`` pixels are scaled by
    1/255, other types min-max scaled with the training range (test values clipped to [0, 1]). The test split is
    ``test_images``/``test_labels`` when given, otherwise a stratified ``test_fraction`` of the training data held out
    with the fixed seed :data:`SPLIT_SEED`.

    :param test_fraction: Share held out when the data come without a test set, in (0, 1)
    :param train_images: IDX file of training images (any shape per example)
    :param train_labels: IDX file of training labels (non-negative integers)
    :param test_images: IDX file of test images
    :param test_labels: IDX file of test labels
    :return: The split data
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    if (train_images is None) != (train_labels is None) or (test_images is None) != (test_labels is None):
        raise ValueError("give IDX images and labels together: train_images with train_labels, test_images with test_labels")
    if test_images is not None and train_images is None:
        raise ValueError("test_images/test_labels need train_images/train_labels as well")
    if train_images is None:
        x, y = _bundled_digits()
    else:
        x, y = _read_idx_pair(train_images, train_labels)
    if test_images is None:
        train_idx, test_idx = stratified_split(y, test_fraction)
        x, y, x_test, y_test = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
    else:
        x_test, y_test = _read_idx_pair(test_images, test_labels)
        if x_test.shape[1:] != x.shape[1:]:
            raise ValueError(f"test images have shape {x_test.shape[1:]} per example, training images {x.shape[1:]}")
    scale = _scaler(x)
    arrays = [scale(x), y, scale(x_test), y_test]
    for array in arrays:
        array.flags.writeable = False
    return ClassificationData(*arrays, n_classes=int(max(y.max(), y_test.max())) + 1)


def _bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)


def _read_idx_pair(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.size == 0 or labels.min() < 0:
        raise ValueError(f"{labels_path}: labels must be a non-empty 1-d IDX array of non-negative integers")
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images, {labels_path} {len(labels)} labels")
    return images.reshape(len(images), -1), labels.astype(np.int64)


def _scaler(x_train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    if x_train.dtype == np.uint8:
        return lambda x: x.astype(np.float32) / np.float32(255.0)
    low, high = float(x_train.min()), float(x_train.max())
    if 0.0 <= low and high <= 1.0:
        return lambda x: np.clip(x, 0.0, 1.0).astype(np.float32)
    width = high - low if high > low else 1.0
    return lambda x: np.clip((x.astype(np.float64) - low) / width, 0.0, 1.0).astype(np.float32)


class DigitsEnv(gym.Env[np.ndarray, np.int64]):
    """
    Classification as a contextual bandit: each episode shows one example, the agent names a label, and the episode
    ends with reward 1 if the label is right, 0 otherwise.

    ## Description
    A supervised data set turned into a one-step decision problem, so that policy-gradient methods and supervised
    learning can be compared on the same network and data. By default the data are scikit-learn's bundled 8x8
    handwritten digits (no download): 1797 examples, of which a stratified 25% is held out as the test split with
    the fixed seed `SPLIT_SEED = 0`. Any data in IDX files (MNIST, Fashion-MNIST, ...) can replace them.

    ## Action Space
    `Discrete(n_classes)`: the predicted label (0-9 for digits).

    ## Observation Space
    `Box(0, 1, (d,), float32)`: the example's pixels, flattened and scaled to [0, 1] (d = 64 for the bundled
    digits, 784 for MNIST).

    ## Rewards
    1 if the action equals the example's label, else 0.

    ## Starting State
    An example drawn uniformly from the chosen split with `self.np_random`.

    ## Episode End
    After one step (`terminated=True`). The step's info carries `label` and `index` (the example's row in the split).

    ## Arguments
    ```python
    gym.make("Digits-v0")                                   # bundled digits, episodes from the train split
    gym.make("Digits-v0", split="test")                     # episodes from the held-out split
    gym.make("Digits-v0", train_images="train-images-idx3-ubyte.gz", train_labels="train-labels-idx1-ubyte.gz",
             test_images="t10k-images-idx3-ubyte.gz", test_labels="t10k-labels-idx1-ubyte.gz")   # MNIST
    ```
    - `split`: `"train"` or `"test"`, where episodes draw their examples from.
    - `test_fraction`: share held out when the data have no test files (default 0.25).
    - `train_images`, `train_labels`, `test_images`, `test_labels`: IDX file paths, gzipped or not (see
      `load_classification_data`).
    - `render_mode`: `None` or `"rgb_array"` (the current example as an upscaled grey image, ink bright).

    `evaluate_accuracy(predict_fn, split)` scores a classifier on a whole split; `n_train`, `n_test` and
    `n_classes` give the sizes, `dataset(split)` the arrays (after `gym.make`, reach them through `env.unwrapped`).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        split: str = "train",
        test_fraction: float = 0.25,
        train_images: str | None = None,
        train_labels: str | None = None,
        test_images: str | None = None,
        test_labels: str | None = None,
        render_mode: str | None = None,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        paths = (train_images, train_labels, test_images, test_labels)
        self.data = load_classification_data(float(test_fraction), *(None if q is None else str(q) for q in paths))
        self.split = split
        self._x, self._y = self.data.split(split)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self._x.shape[1],), dtype=np.float32)
        self.action_space = spaces.Discrete(self.data.n_classes)
        self.render_mode = render_mode
        self._index: int | None = None
        self._shown = 0

    @property
    def n_train(self) -> int:
        """Number of examples in the training split."""
        return len(self.data.y_train)

    @property
    def n_test(self) -> int:
        """Number of examples in the test split."""
        return len(self.data.y_test)

    @property
    def n_classes(self) -> int:
        """Number of labels (actions)."""
        return self.data.n_classes

    def dataset(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """:param split: ``"train"`` or ``"test"``
        :return: features ``(n, d)`` float32 in [0, 1] and labels ``(n,)`` int64 (read-only arrays)"""
        return self.data.split(split)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._index = self._shown = int(self.np_random.integers(len(self._y)))
        return self._x[self._index].copy(), {"index": self._index}

    def step(self, action: int | np.integer) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._index is None:
            raise RuntimeError("call reset() before step(): every episode is one example and one step")
        index, self._index = self._index, None
        label = int(self._y[index])
        reward = 1.0 if int(action) == label else 0.0
        return self._x[index].copy(), reward, True, False, {"label": label, "index": index}

    def render(self) -> np.ndarray | None:
        """:return: with ``render_mode="rgb_array"``, the example of the current (or last) episode as an RGB image:
        square inputs as a square (8x8 digits upscaled 8 times), others as one row; otherwise None"""
        if self.render_mode != "rgb_array":
            return None
        pixels = np.round(255.0 * self._x[self._shown]).astype(np.uint8)
        side = math.isqrt(pixels.size)
        image = pixels.reshape(side, side) if side * side == pixels.size else pixels.reshape(1, -1)
        scale = max(1, 64 // image.shape[0])
        return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)[..., None].repeat(3, axis=2)

    def evaluate_accuracy(self, predict_fn: Callable[[np.ndarray], Any], split: str = "test") -> float:
        """
        Accuracy of a classifier on every example of a split, in one call.

        :param predict_fn: Maps observations ``(n, d)`` float32 to labels ``(n,)`` (e.g.
            ``lambda x: model.predict(x, deterministic=True)[0]`` for an SB3 model).
        :param split: ``"train"`` or ``"test"``
        :return: The share of examples whose predicted label is right.
        """
        x, y = self.dataset(split)
        predicted = np.asarray(predict_fn(x)).reshape(-1)
        if predicted.shape != y.shape:
            raise ValueError(f"predict_fn returned {predicted.size} labels for {len(y)} examples")
        return float(np.mean(predicted == y))
