"""Feature extractors for observations SB3's own do not fit, and the names hyperparameter files call them by."""

import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, NatureCNN
from torch import nn

MIN_VIEW = 7
"""Smallest view :class:`MiniGridCNN` takes: a side of ``n`` cells leaves ``(n - 1) // 2 - 2`` after its layers."""


class MiniGridCNN(BaseFeaturesExtractor):
    """
    Three 2x2 convolutions (16, 32, 64 channels, a 2x2 max-pool after the first) for MiniGrid's 7x7x3 symbolic view:
    the extractor of MiniGrid's training documentation and of lcswillems/rl-starter-files. A 7x7 view is too small for
    ``NatureCNN`` (its first layer is an 8x8 convolution with stride 4). The view's cells hold small integers (object,
    colour, state), so the policy should see them unscaled (``normalize_images=False``).

    :param observation_space: channel-first image space (SB3 transposes channel-last images before the extractor)
    :param features_dim: number of features (the flattened output of the last convolution for a 7x7 view: 64)
    """

    def __init__(self, observation_space: spaces.Box, features_dim: int = 64) -> None:
        channels, height, width = observation_space.shape
        if min(height, width) < MIN_VIEW:
            raise ValueError(f"MiniGridCNN needs images of at least {MIN_VIEW}x{MIN_VIEW} cells, got {height}x{width}")
        convolutions = nn.Sequential(
            nn.Conv2d(channels, 16, kernel_size=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=2),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        with th.no_grad():
            n_flat = convolutions(th.zeros(1, channels, height, width)).shape[1]
        super().__init__(observation_space, features_dim)
        self.cnn = convolutions
        self.linear = nn.Identity() if n_flat == features_dim else nn.Sequential(nn.Linear(n_flat, features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        """:param observations: (batch, channels, height, width)
        :return: (batch, features_dim) features"""
        return self.linear(self.cnn(observations))


class MinAtarCNN(BaseFeaturesExtractor):
    """
    The network of MinAtar's paper (Young & Tian, 2019, "MinAtar: An Atari-Inspired Testbed for Thorough and
    Reproducible Reinforcement Learning Experiments"; ``examples/AC_lambda.py`` and ``examples/dqn.py`` of
    kenjyoung/MinAtar): one 3x3 convolution with 16 channels and stride 1, then a fully connected hidden layer of 128
    units, ReLU after each:

        features = relu(W_h flatten(relu(conv_3x3(x))) + b_h)

    Its actor-critic shares both layers between the policy and the value head, as SB3 does with ``net_arch=[]`` and
    a shared features extractor. The cells are 0 or 1 (``envs.minatar.MinAtarObservation``), so nothing is scaled.

    :param observation_space: channel-first grid, ``(C, 10, 10)``
    :param features_dim: units of the hidden layer (the paper's: 128)
    """

    def __init__(self, observation_space: spaces.Box, features_dim: int = 128) -> None:
        channels, height, width = observation_space.shape
        if min(height, width) < 3:
            raise ValueError(f"MinAtarCNN needs grids of at least 3x3 cells, got {height}x{width}")
        super().__init__(observation_space, features_dim)
        self.cnn = nn.Sequential(nn.Conv2d(channels, 16, kernel_size=3, stride=1), nn.ReLU(), nn.Flatten())
        self.linear = nn.Sequential(nn.Linear(16 * (height - 2) * (width - 2), features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        """:param observations: (batch, channels, height, width)
        :return: (batch, features_dim) features"""
        return self.linear(self.cnn(observations))


#: Names of feature extractors for ``policy_kwargs: {features_extractor_class: NAME}`` in hyperparameter files.
FEATURES_EXTRACTORS: dict[str, type[BaseFeaturesExtractor]] = {
    "MiniGridCNN": MiniGridCNN,
    "MinAtarCNN": MinAtarCNN,
    "NatureCNN": NatureCNN,
    "FlattenExtractor": FlattenExtractor,
}
