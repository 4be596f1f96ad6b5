from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy

from policies import (
    EscortActorCriticCnnPolicy,
    EscortActorCriticPolicy,
    EscortDistribution,
    EscortMultiInputActorCriticPolicy,
)

th.set_num_threads(1)


class RandomObservationEnv(gym.Env):
    """Random observations from any space, zero reward, episodes of five steps."""

    def __init__(self, observation_space: spaces.Space, n_actions: int = 4):
        self.observation_space = observation_space
        self.action_space = spaces.Discrete(n_actions)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self._t += 1
        return self.observation_space.sample(), 0.0, self._t >= 5, False, {}


class OneStepBanditEnv(gym.Env):
    """A constant observation, one step per episode, reward 1 for action 0 and 0 otherwise."""

    observation_space = spaces.Box(0.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(3)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return np.ones(2, np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return np.ones(2, np.float32), float(action == 0), True, False, {}


def vector_env() -> gym.Env:
    return gym.make("CartPole-v1")


def image_env() -> gym.Env:
    return RandomObservationEnv(spaces.Box(0, 255, (36, 36, 3), np.uint8))


def dict_env() -> gym.Env:
    image = spaces.Box(0, 255, (36, 36, 1), np.uint8)
    return RandomObservationEnv(spaces.Dict({"image": image, "vector": spaces.Box(-5.0, 5.0, (6,), np.float32)}), 5)


ESCORT_CASES = [
    (EscortActorCriticPolicy, ActorCriticPolicy, vector_env),
    (EscortActorCriticCnnPolicy, ActorCriticCnnPolicy, image_env),
    (EscortMultiInputActorCriticPolicy, MultiInputActorCriticPolicy, dict_env),
]


def action_probabilities(model: BaseAlgorithm, observations: Any) -> th.Tensor:
    obs_tensor, _ = model.policy.obs_to_tensor(observations)
    with th.no_grad():
        return model.policy.get_distribution(obs_tensor).distribution.probs


def random_observations(model: BaseAlgorithm, n: int = 256) -> Any:
    """A batch of n observations sampled from the model's (possibly transposed) observation space."""
    space = model.observation_space
    space.seed(0)
    samples = [space.sample() for _ in range(n)]
    if isinstance(space, spaces.Dict):
        return {key: np.stack([sample[key] for sample in samples]) for key in space.spaces}
    return np.stack(samples)


@pytest.mark.parametrize("policy_class, base_class, make_env", ESCORT_CASES)
@pytest.mark.parametrize("p", [0.5, 2.0, 4.0])
def test_initial_policy_is_near_uniform(policy_class: type, base_class: type, make_env: Any, p: float) -> None:
    model = PPO(policy_class, make_env(), policy_kwargs=dict(escort_p=p), n_steps=16, batch_size=16, seed=0)
    assert isinstance(model.policy, base_class) and isinstance(model.policy, EscortActorCriticPolicy)
    probs = action_probabilities(model, random_observations(model))
    n_actions = model.action_space.n
    assert (probs - 1 / n_actions).abs().max().item() <= 0.02
    assert probs.std(dim=0).max().item() > 0, "the head's weights must not be all zero"


@pytest.mark.parametrize("ortho_init", [True, False])
def test_initial_policy_is_near_uniform_whatever_sb3_init(ortho_init: bool) -> None:
    policy_kwargs = dict(escort_p=2.0, ortho_init=ortho_init, net_arch=[16])
    model = PPO(EscortActorCriticPolicy, vector_env(), policy_kwargs=policy_kwargs, n_steps=16, batch_size=16, seed=1)
    probs = action_probabilities(model, random_observations(model))
    assert (probs - 0.5).abs().max().item() <= 0.02


@pytest.mark.parametrize("policy_class, base_class, make_env", ESCORT_CASES)
def test_policy_kwargs_reach_the_distribution(policy_class: type, base_class: type, make_env: Any) -> None:
    model = A2C(policy_class, make_env(), policy_kwargs=dict(escort_p=3.0, escort_eps=1e-4), n_steps=4, seed=0)
    assert isinstance(model.policy.action_dist, EscortDistribution)
    assert (model.policy.action_dist.p, model.policy.action_dist.eps) == (3.0, 1e-4)
    assert model.policy.action_dist.action_dim == model.action_space.n


def test_head_parameters_are_the_ones_the_optimizer_updates() -> None:
    policy = EscortActorCriticPolicy(spaces.Box(-1.0, 1.0, (3,)), spaces.Discrete(4), lambda _: 1e-3)
    optimized = {id(param) for group in policy.optimizer.param_groups for param in group["params"]}
    assert id(policy.action_net.weight) in optimized and id(policy.action_net.bias) in optimized


@pytest.mark.parametrize(
    "action_space",
    [spaces.Box(-1.0, 1.0, (2,)), spaces.MultiDiscrete([2, 3]), spaces.MultiBinary(3)],
)
def test_non_discrete_action_space_raises(action_space: spaces.Space) -> None:
    with pytest.raises(ValueError, match=f"Discrete action space, got {type(action_space).__name__}"):
        EscortActorCriticPolicy(spaces.Box(-1.0, 1.0, (3,)), action_space, lambda _: 1e-3)


def test_continuous_env_raises_in_ppo() -> None:
    with pytest.raises(ValueError, match="Discrete action space, got Box"):
        PPO(EscortActorCriticPolicy, gym.make("Pendulum-v1"))


@pytest.mark.parametrize("bad", [0.0, -2.0, float("nan"), float("inf")])
def test_invalid_escort_power_raises(bad: float) -> None:
    with pytest.raises(ValueError, match="escort power p"):
        PPO(EscortActorCriticPolicy, vector_env(), policy_kwargs=dict(escort_p=bad))


@pytest.mark.parametrize("bad", [0.0, 1.0, 2.0, float("nan")])
def test_invalid_escort_eps_raises(bad: float) -> None:
    with pytest.raises(ValueError, match="escort eps"):
        PPO(EscortActorCriticPolicy, vector_env(), policy_kwargs=dict(escort_eps=bad))


@pytest.mark.parametrize("p", [0.5, 2.0, 8.0])
def test_initial_theta_is_far_from_the_floors(p: float) -> None:
    """theta = 1 + W h: every coordinate near 1, so the first policy is the escort transform itself, floors unused."""
    model = PPO(EscortActorCriticPolicy, vector_env(), policy_kwargs=dict(escort_p=p), n_steps=16, batch_size=16, seed=0)
    obs_tensor, _ = model.policy.obs_to_tensor(random_observations(model))
    with th.no_grad():
        theta = model.policy.action_net(model.policy.mlp_extractor.forward_actor(model.policy.extract_features(obs_tensor)))
        probs = model.policy.get_distribution(obs_tensor).distribution.probs
    assert ((theta - 1).abs() < 0.5).all()
    weights = theta.double().abs() ** p
    th.testing.assert_close(probs.double(), weights / weights.sum(dim=-1, keepdim=True), rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    "algo, policy_class, make_env",
    [
        (PPO, EscortActorCriticPolicy, vector_env),
        (A2C, EscortActorCriticPolicy, vector_env),
        (PPO, EscortActorCriticCnnPolicy, image_env),
        (A2C, EscortMultiInputActorCriticPolicy, dict_env),
    ],
)
def test_learn_then_save_load_round_trip(algo: type[BaseAlgorithm], policy_class: type, make_env: Any, tmp_path: Path) -> None:
    kwargs: dict[str, Any] = dict(n_steps=32, batch_size=32, n_epochs=2) if algo is PPO else dict(n_steps=8)
    model = algo(policy_class, make_env(), policy_kwargs=dict(escort_p=3.0), seed=0, **kwargs)
    observations = random_observations(model, 64)
    before = action_probabilities(model, observations)
    model.learn(256)
    after = action_probabilities(model, observations)
    assert th.isfinite(after).all() and not th.equal(before, after)

    model.save(tmp_path / "model")
    loaded = algo.load(tmp_path / "model", device="cpu")
    assert type(loaded.policy) is policy_class
    assert loaded.policy.escort_p == 3.0 and loaded.policy.action_dist.p == 3.0
    assert th.equal(action_probabilities(loaded, observations), after)
    np.testing.assert_array_equal(
        loaded.predict(observations, deterministic=True)[0], model.predict(observations, deterministic=True)[0]
    )


def test_policy_save_load_keeps_escort_parameters(tmp_path: Path) -> None:
    observation_space = spaces.Box(-1.0, 1.0, (3,))
    policy = EscortActorCriticPolicy(observation_space, spaces.Discrete(4), lambda _: 1e-3, escort_p=1.5, escort_eps=1e-5)
    policy.save(tmp_path / "policy.pt")
    loaded = EscortActorCriticPolicy.load(tmp_path / "policy.pt")
    assert (loaded.escort_p, loaded.escort_eps) == (1.5, 1e-5)
    observations = th.rand(8, 3) * 2 - 1
    with th.no_grad():
        th.testing.assert_close(
            loaded.get_distribution(observations).distribution.probs, policy.get_distribution(observations).distribution.probs
        )


@pytest.mark.parametrize("algo", [PPO, A2C])
def test_escort_policy_learns_a_bandit(algo: type[BaseAlgorithm]) -> None:
    kwargs: dict[str, Any] = dict(n_steps=32, batch_size=32, n_epochs=10) if algo is PPO else dict(n_steps=8)
    model = algo(EscortActorCriticPolicy, OneStepBanditEnv(), learning_rate=3e-3, gamma=0.0, seed=0, **kwargs)
    model.learn(640)
    probs = action_probabilities(model, np.ones((1, 2), np.float32))
    assert probs[0, 0].item() > 0.9
