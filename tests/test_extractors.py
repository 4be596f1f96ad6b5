"""policies.extractors: the small CNN for MiniGrid's symbolic view, the network of MinAtar's paper, and the names
hyperparameter files use."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.preprocessing import preprocess_obs

from envs.make import make_vec_env
from policies import EscortActorCriticCnnPolicy
from policies.extractors import FEATURES_EXTRACTORS, MIN_VIEW, MinAtarCNN, MiniGridCNN

th.set_num_threads(1)


@pytest.mark.parametrize(("size", "n_flat"), [(7, 64), (9, 256)])
def test_features_have_the_asked_size_whatever_the_view(size: int, n_flat: int) -> None:
    extractor = MiniGridCNN(spaces.Box(0, 255, (3, size, size), np.uint8))
    features = extractor(th.zeros(5, 3, size, size))
    assert features.shape == (5, 64)
    assert extractor.cnn(th.zeros(1, 3, size, size)).shape[1] == n_flat
    assert isinstance(extractor.linear, th.nn.Identity) == (n_flat == 64)


@pytest.mark.parametrize("shape", [(3, 3, 3), (3, 5, 5), (3, 6, 9), (3, 9, 6)])
def test_too_small_a_view_is_refused(shape: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_VIEW}x{MIN_VIEW} cells, got {shape[1]}x{shape[2]}"):
        MiniGridCNN(spaces.Box(0, 255, shape, np.uint8))


def test_the_smallest_view_gives_features() -> None:
    extractor = MiniGridCNN(spaces.Box(0, 255, (3, MIN_VIEW, MIN_VIEW), np.uint8))
    assert extractor(th.zeros(2, 3, MIN_VIEW, MIN_VIEW)).shape == (2, 64)


def test_names_map_to_extractor_classes() -> None:
    assert FEATURES_EXTRACTORS["MiniGridCNN"] is MiniGridCNN and FEATURES_EXTRACTORS["MinAtarCNN"] is MinAtarCNN
    assert all(isinstance(cls, type) for cls in FEATURES_EXTRACTORS.values())


def test_escort_cnn_policy_on_minigrid_is_near_uniform_and_sees_unscaled_cells() -> None:
    env = make_vec_env("MiniGrid-DoorKey-5x5-v0", 2, 0)
    model = PPO(
        EscortActorCriticCnnPolicy, env, n_steps=16, batch_size=32, seed=0,
        policy_kwargs={"features_extractor_class": MiniGridCNN, "normalize_images": False},
    )  # fmt: skip
    obs, _ = model.policy.obs_to_tensor(env.reset())
    probs = model.policy.get_distribution(obs).distribution.probs
    assert th.allclose(probs, th.full_like(probs, 1 / 7), atol=0.02)
    assert model.policy.extract_features(obs, model.policy.pi_features_extractor).abs().sum() > 0
    seen = preprocess_obs(obs, model.policy.observation_space, normalize_images=model.policy.normalize_images)
    assert seen.max() > 1 and th.equal(seen, obs.float())  # cell codes reach the network as integers, not divided by 255
    env.close()


@pytest.mark.parametrize("channels", [4, 7, 10])
def test_minatar_cnn_is_one_3x3_convolution_and_a_128_unit_layer(channels: int) -> None:
    extractor = MinAtarCNN(spaces.Box(0.0, 1.0, (channels, 10, 10), np.float32))
    conv = extractor.cnn[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (channels, 16, (3, 3), (1, 1))
    assert extractor.linear[0].in_features == 16 * 8 * 8 and extractor.features_dim == 128
    n_params = sum(p.numel() for p in extractor.parameters())
    assert n_params == channels * 16 * 9 + 16 + 1024 * 128 + 128
    grid = th.zeros(2, channels, 10, 10)
    grid[1, 0, 4, 4] = 1.0
    features = extractor(grid)
    assert features.shape == (2, 128) and bool((features >= 0).all()) and not th.equal(features[0], features[1])


def test_minatar_cnn_refuses_grids_smaller_than_its_kernel() -> None:
    with pytest.raises(ValueError, match="at least 3x3 cells, got 2x5"):
        MinAtarCNN(spaces.Box(0.0, 1.0, (4, 2, 5), np.float32))
