"""QAC: policy heads (linear and dueling), TD(lambda) targets with truncation, Polyak targets, the critic replay, actor
updates, save/load, learning on FourRooms, Bandit, the wiring on MiniGrid (flat, Dict) and Atari observations, and the
advantage metrics of ``benchmarks/qac_critic.py``."""

import importlib.util
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.atari_wrappers import AtariWrapper
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecFrameStack
from torch.nn import functional as F

import envs
from agents.qac import QAC, neurd_loss
from agents.qac_policy import DuelingQHead, QACCnnPolicy, QACMultiInputPolicy, QACPolicy

th.set_num_threads(1)

NEAR_GOAL = {"subgoals": [], "start": (8, 10)}
"""FourRooms with the start next to the goal: episodes end within a few steps under a random policy."""

SAME_ROOM = {"subgoals": [], "start": (11, 7)}
"""FourRooms with the start in the goal's room, 7 steps away: learnable in a few thousand steps."""


def fourrooms(n_envs: int = 2, seed: int = 0, env_kwargs: dict | None = None):
    return make_vec_env("FourRooms-v0", n_envs=n_envs, seed=seed, env_kwargs=env_kwargs or {"subgoals": []})


def model_for(parameterization: str = "softmax", env=None, **kwargs) -> QAC:
    kwargs.setdefault("n_steps", 8)
    policy_kwargs = {"parameterization": parameterization, "escort_p": 2.0, **kwargs.pop("policy_kwargs", {})}
    return QAC(
        "MlpPolicy", env if env is not None else fourrooms(), policy_kwargs=policy_kwargs, seed=0, device="cpu", **kwargs
    )


def state_observations(env_kwargs: dict) -> tuple[envs.TabularMDP, th.Tensor]:
    base = envs.FourRoomsEnv(**env_kwargs)
    return base.transition_model(), th.as_tensor(base.observations())


def action_probs(model: QAC, obs: th.Tensor) -> np.ndarray:
    with th.no_grad():
        return model.policy.get_distribution(obs).distribution.probs.double().numpy()


def test_aliases_and_names():
    assert QAC.PARAMETERIZATIONS == ("softmax", "escort", "neurd")
    assert QAC.policy_aliases == {"MlpPolicy": QACPolicy, "CnnPolicy": QACCnnPolicy, "MultiInputPolicy": QACMultiInputPolicy}


@pytest.mark.parametrize(
    ("kwargs", "policy_kwargs"),
    [
        ({"actor_update": "exact"}, {}),
        ({"td_lambda": 1.5}, {}),
        ({"tau": 0.0}, {}),
        ({"replay_rollouts": 2}, {}),
        ({"replay_updates": 2}, {}),
        ({"replay_rollouts": -1, "replay_updates": 2}, {}),
        ({}, {"parameterization": "sparsemax"}),
    ],
)
def test_invalid_arguments_raise(kwargs, policy_kwargs):
    with pytest.raises(ValueError, match="must be"):
        model_for(policy_kwargs=policy_kwargs, **kwargs)


@pytest.mark.parametrize("parameterization", QAC.PARAMETERIZATIONS)
def test_heads_shapes_and_values(parameterization):
    model = model_for(parameterization)
    _, obs = state_observations({"subgoals": []})
    with th.no_grad():
        q = model.policy.q_values(obs)
        probs = model.policy.get_distribution(obs).distribution.probs
        bootstrap_values = model.policy.predict_values(obs)
        _, values, _ = model.policy(obs)
        target_q = model.policy.target_q_values(obs)
    assert q.shape == (len(obs), 4) and values.shape == (len(obs), 1)
    th.testing.assert_close(values, (probs * q).sum(-1, keepdim=True))
    th.testing.assert_close(bootstrap_values, (probs * target_q).sum(-1, keepdim=True))
    th.testing.assert_close(target_q, q)
    assert not any(param.requires_grad for param in model.policy.critic_target.parameters())
    optimized = {id(param) for group in model.policy.optimizer.param_groups for param in group["params"]}
    assert optimized.isdisjoint(id(param) for param in model.policy.critic_target.parameters())
    # a near-uniform first policy and a near-zero first critic, for every parameterization
    assert np.abs(probs.numpy() - 0.25).max() < 0.02
    assert q.abs().max() < 0.1


def test_neurd_logits_are_mean_centred():
    model = model_for("neurd")
    _, obs = state_observations({"subgoals": []})
    with th.no_grad():
        head, _, _ = model.policy.evaluate_all(obs)
    th.testing.assert_close(head.mean(-1), th.zeros(len(obs)), atol=1e-6, rtol=0)


def rollout_targets(td_lambda: float) -> tuple[QAC, np.ndarray]:
    model = model_for(env=fourrooms(4, env_kwargs=NEAR_GOAL), n_steps=32, td_lambda=td_lambda, gamma=0.9)
    _, callback = model._setup_learn(32, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
    assert model.rollout_buffer.episode_starts[1:].sum() >= 2, "the rollout should contain episode ends"
    return model, model._q_targets()


def test_one_step_targets_bootstrap_with_expected_target_q():
    model, targets = rollout_targets(0.0)
    buffer = model.rollout_buffer
    next_obs = np.concatenate([buffer.observations[1:], model._last_obs[None]])
    next_done = np.concatenate([buffer.episode_starts[1:], model._last_episode_starts[None]])
    with th.no_grad():
        obs = th.as_tensor(next_obs.reshape(-1, next_obs.shape[-1]))
        probs = model.policy.get_distribution(obs).distribution.probs
        v_target = (probs * model.policy.target_q_values(obs)).sum(-1).numpy().reshape(next_done.shape)
    np.testing.assert_allclose(targets, buffer.rewards + 0.9 * (1 - next_done) * v_target, rtol=1e-5, atol=1e-6)


def test_lambda_one_targets_are_discounted_returns():
    model, targets = rollout_targets(1.0)
    buffer = model.rollout_buffer
    not_done = 1.0 - buffer.episode_starts[1:]
    np.testing.assert_allclose(targets[:-1], buffer.rewards[:-1] + 0.9 * not_done * targets[1:], rtol=1e-5, atol=1e-6)
    ended = buffer.episode_starts[1:] == 1
    np.testing.assert_allclose(targets[:-1][ended], buffer.rewards[:-1][ended])
    assert buffer.rewards[:-1][ended].min() == 1.0


EPISODE_REWARDS = (1.0, 2.0, 4.0)
"""Rewards of the steps of a :class:`StepCountEnv` episode."""


class StepCountEnv(gym.Env[np.ndarray, np.int64]):
    """
    Observes the one-hot step count ``t`` (0 to 3), rewards ``EPISODE_REWARDS[t]`` whatever the action, and either
    terminates after three steps or runs on until a ``TimeLimit`` of three steps truncates it.

    :param terminates: Whether the third step terminates the episode (at the time limit, so not a truncation)
    """

    def __init__(self, terminates: bool) -> None:
        self.terminates = terminates
        self.observation_space = spaces.Box(0.0, 1.0, (len(EPISODE_REWARDS) + 1,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = EPISODE_REWARDS[self.t]
        self.t += 1
        return self._obs(), reward, self.terminates and self.t == len(EPISODE_REWARDS), False, {}

    def _obs(self) -> np.ndarray:
        return np.eye(len(EPISODE_REWARDS) + 1, dtype=np.float32)[self.t]


@pytest.mark.parametrize("terminates", [False, True])
def test_truncated_steps_bootstrap_with_the_target_value_of_the_terminal_observation(terminates):
    env = make_vec_env(lambda: TimeLimit(StepCountEnv(terminates), len(EPISODE_REWARDS)), n_envs=2, seed=0)
    gamma, td_lambda = 0.9, 0.5
    model = QAC("MlpPolicy", env, n_steps=7, gamma=gamma, td_lambda=td_lambda, seed=0, device="cpu")
    with th.no_grad():  # a far from uniform policy, and online and target critics far apart and far from 0
        model.policy.action_net.bias.copy_(th.tensor([2.0, -1.0]))
        model.policy.q_net.bias.copy_(th.tensor([-1.0, 2.0]))
        model.policy.critic_target.q_net.bias.copy_(th.tensor([3.0, 5.0]))
    _, callback = model._setup_learn(model.n_steps * model.n_envs, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
    np.testing.assert_array_equal(model.rollout_buffer.episode_starts[:, 0], [1, 0, 0, 1, 0, 0, 1])
    with th.no_grad():  # V_target(s_t) = sum_a pi(a|s_t) Q_target(s_t, a) of step count t, the terminal s_3 included
        obs = th.eye(len(EPISODE_REWARDS) + 1)
        probs = model.policy.get_distribution(obs).distribution.probs
        v_target = (probs * model.policy.target_q_values(obs)).sum(-1).double().numpy()
        v_online = (probs * model.policy.q_values(obs)).sum(-1).double().numpy()
    assert abs(v_target[3]) > 1.0 and abs(v_target[3] - v_online[3]) > 1.0
    r0, r1, r2 = EPISODE_REWARDS
    # TD(lambda) by hand: a terminated step ends the return, a truncated one bootstraps from V_target(s_3)
    g2 = r2 + (0.0 if terminates else gamma * v_target[3])
    g1 = r1 + gamma * ((1 - td_lambda) * v_target[2] + td_lambda * g2)
    g0 = r0 + gamma * ((1 - td_lambda) * v_target[1] + td_lambda * g1)
    after_rollout = r0 + gamma * v_target[1]
    expected = np.array([g0, g1, g2, g0, g1, g2, after_rollout])[:, None].repeat(2, 1)
    np.testing.assert_allclose(model._q_targets(), expected, rtol=1e-6, atol=1e-5)


def make_head(parameterization: str, generator: th.Generator) -> th.Tensor:
    head = th.randn(6, 4, generator=generator, dtype=th.float64)
    if parameterization == "escort":
        head = head.sign() * (head.abs() + 0.5)
    return head - head.mean(-1, keepdim=True) if parameterization == "neurd" else head


def exact_probs(parameterization: str, head: th.Tensor) -> th.Tensor:
    if parameterization == "escort":
        return head.abs() ** 2 / (head.abs() ** 2).sum(-1, keepdim=True)
    return th.softmax(head, -1)


def actor_gradient(model: QAC, head: th.Tensor, advantages: th.Tensor, actions: th.Tensor) -> th.Tensor:
    head = head.clone().requires_grad_(True)
    distribution = model.policy.action_dist.proba_distribution(action_logits=head)
    logits = distribution.distribution.logits
    model._actor_loss(head, logits.exp(), logits, advantages, actions).backward()
    return head.grad


@pytest.mark.parametrize("parameterization", ["softmax", "escort"])
def test_all_actions_update_is_the_gradient_of_expected_advantage(parameterization):
    model = model_for(parameterization, actor_update="all_actions")
    generator = th.Generator().manual_seed(0)
    head = make_head(parameterization, generator)
    q = th.randn(6, 4, generator=generator, dtype=th.float64)
    probs = exact_probs(parameterization, head)
    advantages = q - (probs * q).sum(-1, keepdim=True)
    grad = actor_gradient(model, head, advantages, th.zeros(6, dtype=th.long))
    leaf = head.clone().requires_grad_(True)
    (-(exact_probs(parameterization, leaf) * advantages).sum(-1).mean()).backward()
    th.testing.assert_close(grad, leaf.grad)


@pytest.mark.parametrize("parameterization", QAC.PARAMETERIZATIONS)
def test_sampled_update_is_unbiased_for_the_all_actions_update(parameterization):
    generator = th.Generator().manual_seed(1)
    head = make_head(parameterization, generator).repeat_interleave(4, 0)
    q = th.randn(6, 4, generator=generator, dtype=th.float64).repeat_interleave(4, 0)
    probs = exact_probs(parameterization, head)
    advantages = q - (probs * q).sum(-1, keepdim=True)
    actions = th.arange(4).repeat(6)
    unclipped = {"neurd_beta": 1e9, "neurd_adv_clip": 1e9, "neurd_is_clip": 1e9}
    sampled = actor_gradient(model_for(parameterization, actor_update="sampled", **unclipped), head, advantages, actions)
    weights = probs.gather(1, actions[:, None])
    expected_sampled = (weights * sampled).reshape(6, 4, 4).sum(1)
    full = actor_gradient(model_for(parameterization, actor_update="all_actions", **unclipped), head, advantages, actions)
    th.testing.assert_close(expected_sampled, full[::4])
    if parameterization == "neurd":
        th.testing.assert_close(full[::4], -advantages[::4] / len(head))


def test_escort_sampled_gradient_matches_the_score_formula():
    model = model_for("escort", actor_update="sampled")
    theta = th.tensor([[0.7, -1.2, 0.4, 2.0]], dtype=th.float64)
    advantage = th.tensor([[0.0, 0.0, 0.3, 0.0]], dtype=th.float64)
    grad = actor_gradient(model, theta, advantage, th.tensor([2]))
    pi = exact_probs("escort", theta)
    norm = (theta.abs() ** 2).sum().sqrt()
    score = 2.0 * th.eye(4, dtype=th.float64)[2] / theta - 2.0 * theta.sign() * pi.sqrt() / norm
    th.testing.assert_close(grad, -0.3 * score, rtol=1e-5, atol=1e-8)


def test_neurd_threshold_and_clips():
    logits = th.tensor([[2.5, -2.5, 0.0, 0.0]], requires_grad=True)
    neurd_loss(logits, th.tensor([[1.0, -1.0, -1.0, 1.0]]), beta=2.0).backward()
    th.testing.assert_close(logits.grad, th.tensor([[0.0, 0.0, 1.0, -1.0]]))
    model = model_for("neurd", actor_update="sampled", neurd_adv_clip=0.5, neurd_is_clip=3.0)
    # uniform pi: the importance weight 1/pi = 4 is clipped to 3, the advantage 5 to 0.5
    grad = actor_gradient(model, th.zeros(1, 4), th.tensor([[5.0, 0.0, 0.0, 0.0]]), th.tensor([0]))
    th.testing.assert_close(grad, th.tensor([[-1.5, 0.0, 0.0, 0.0]]))


@pytest.mark.parametrize("seed", [0, 1])
def test_policy_evaluation_mode_freezes_the_actor_and_learns_q(seed):
    """Q of the Bandit's arms [1.0, 0.9, 0.1] to a tenth of the 0.1 gap between the best two."""
    env = make_vec_env("Bandit-v0", n_envs=4, seed=seed, env_kwargs={"render_mode": None})
    model = QAC("MlpPolicy", env, actor_update="none", n_steps=8, learning_rate=3e-3, seed=seed, device="cpu")
    actor = [param.detach().clone() for param in model.policy.action_net.parameters()]
    actor += [param.detach().clone() for param in model.policy.mlp_extractor.policy_net.parameters()]
    model.learn(2000)
    after = list(model.policy.action_net.parameters()) + list(model.policy.mlp_extractor.policy_net.parameters())
    assert all(th.equal(before, now) for before, now in zip(actor, after, strict=True))
    with th.no_grad():
        q = model.policy.q_values(th.zeros(1, 1))[0].numpy()
    np.testing.assert_allclose(q, [1.0, 0.9, 0.1], rtol=0, atol=0.01)


def check_polyak_step(model: QAC, old_target: list[th.Tensor]) -> None:
    """After one gradient step: theta_target = (1 - tau) * old_target + tau * theta, for every critic parameter."""
    assert model._n_updates == 1
    target = list(model.policy.critic_target.parameters())
    online = model.policy.critic_parameters()
    assert [param.shape for param in target] == [param.shape for param in online]
    for old, new, param in zip(old_target, target, online, strict=True):
        th.testing.assert_close(new, (1 - model.tau) * old + model.tau * param, rtol=1e-5, atol=1e-6)
    lag = sum((new - param).abs().sum() for new, param in zip(target, online, strict=True))
    assert lag > 0, "the target critic should lag the online one"


def test_polyak_target_moves_a_fraction_tau_towards_the_critic():
    model = model_for(tau=0.3, n_epochs=1, batch_size=None)
    generator = th.Generator().manual_seed(0)
    with th.no_grad():  # a target apart from the critic, as after many updates
        for param in model.policy.critic_target.parameters():
            param.add_(0.1 * th.randn(param.shape, generator=generator))
    old_target = [param.clone() for param in model.policy.critic_target.parameters()]
    old_online = [param.detach().clone() for param in model.policy.critic_parameters()]
    model.learn(model.n_steps * model.n_envs)
    check_polyak_step(model, old_target)
    assert any(not th.equal(old, new) for old, new in zip(old_online, model.policy.critic_parameters(), strict=True))
    _, obs = state_observations({"subgoals": []})
    with th.no_grad():
        assert not th.allclose(model.policy.target_q_values(obs), model.policy.q_values(obs))


def test_tau_one_copies_the_critic_into_the_target():
    model = model_for(tau=1.0)
    model.learn(64)
    _, obs = state_observations({"subgoals": []})
    with th.no_grad():
        th.testing.assert_close(model.policy.target_q_values(obs), model.policy.q_values(obs))


def test_same_seed_same_parameters():
    first = model_for("escort").learn(256)
    second = model_for("escort").learn(256)
    for a, b in zip(first.policy.parameters(), second.policy.parameters(), strict=True):
        assert th.equal(a, b)


@pytest.mark.parametrize("parameterization", ["escort", "neurd"])
def test_save_load_round_trip(tmp_path, parameterization):
    model = model_for(parameterization, actor_update="sampled", policy_kwargs={"escort_p": 3.0})
    model.learn(256)
    model.save(tmp_path / "qac.zip")
    loaded = QAC.load(tmp_path / "qac.zip", env=fourrooms(), device="cpu")
    assert (loaded.policy.parameterization, loaded.policy.escort_p, loaded.actor_update) == (parameterization, 3.0, "sampled")
    _, obs = state_observations({"subgoals": []})
    with th.no_grad():
        th.testing.assert_close(loaded.policy.q_values(obs), model.policy.q_values(obs))
        th.testing.assert_close(loaded.policy.target_q_values(obs), model.policy.target_q_values(obs))
    np.testing.assert_array_equal(
        loaded.predict(obs.numpy(), deterministic=True)[0], model.predict(obs.numpy(), deterministic=True)[0]
    )
    np.testing.assert_allclose(action_probs(loaded, obs), action_probs(model, obs))
    loaded.learn(64)


@pytest.mark.parametrize("actor_update", ["sampled", "all_actions"])
@pytest.mark.parametrize("parameterization", QAC.PARAMETERIZATIONS)
def test_learns_on_fourrooms(parameterization, actor_update):
    """4000 steps from a start 7 steps from the goal: the learned stochastic policy's exact value, for 2 seeds."""
    mdp, obs = state_observations(SAME_ROOM)
    optimal = envs.value_iteration(mdp)[0] @ mdp.initial
    uniform = envs.policy_evaluation(mdp, np.full((mdp.n_states, 4), 0.25))[0] @ mdp.initial
    values = []
    for seed in (0, 1):
        policy_kwargs = {"parameterization": parameterization}
        model = QAC(
            "MlpPolicy",
            fourrooms(8, seed, SAME_ROOM),
            actor_update=actor_update,
            policy_kwargs=policy_kwargs,
            ent_coef=0.01,
            seed=seed,
            device="cpu",
        )
        model.learn(4000)
        values.append(envs.policy_evaluation(mdp, action_probs(model, obs))[0] @ mdp.initial)
    gap = optimal - uniform
    message = f"exact values {np.round(values, 3)}, uniform policy {uniform:.3f}, optimal {optimal:.3f}"
    assert min(values) > uniform + 0.5 * gap, message
    assert np.mean(values) > uniform + 0.75 * gap, message


def rollout_observations(model: QAC) -> th.Tensor | dict[str, th.Tensor]:
    """:return: the observations of the rollout buffer, (n_steps * n_envs, ...) tensors, or a dict of them"""

    def flat(values: np.ndarray) -> th.Tensor:
        return th.as_tensor(values.reshape(-1, *values.shape[2:]))

    observations = model.rollout_buffer.observations
    return {key: flat(value) for key, value in observations.items()} if isinstance(observations, dict) else flat(observations)


def critic_loss(model: QAC, obs: th.Tensor | dict[str, th.Tensor], actions: th.Tensor, targets: th.Tensor) -> float:
    with th.no_grad():
        return F.smooth_l1_loss(model.policy.q_values(obs).gather(1, actions[:, None]).squeeze(1), targets).item()


def policy_outputs(model: QAC, obs: th.Tensor | dict[str, th.Tensor]) -> tuple[np.ndarray, th.Tensor, th.Tensor]:
    with th.no_grad():
        return action_probs(model, obs), model.policy.q_values(obs), model.policy.target_q_values(obs)


def check_wiring(model: QAC, tmp_path: Path) -> None:
    """
    On one rollout of real observations of the model's env: a near-uniform first policy, one Q per action with
    ``V = E_pi[Q]``, one small gradient step that lowers the critic's loss on its TD targets and moves the target
    critic by Polyak averaging, a save/load that keeps every output, and a run of ``learn``. The model takes one
    gradient step per rollout.
    """
    _, callback = model._setup_learn(model.n_steps * model.n_envs, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
    obs = rollout_observations(model)
    actions = th.as_tensor(model.rollout_buffer.actions.reshape(-1)).long()
    targets = th.as_tensor(model._q_targets().reshape(-1))
    n_actions = int(model.action_space.n)
    with th.no_grad():
        _, values, _ = model.policy(obs)
    probs, q, target_q = policy_outputs(model, obs)
    assert np.abs(probs - 1 / n_actions).max() < 0.02
    assert q.shape == (len(actions), n_actions) and th.isfinite(q).all()
    th.testing.assert_close(values, (th.as_tensor(probs, dtype=q.dtype) * q).sum(-1, keepdim=True), rtol=1e-5, atol=1e-7)
    th.testing.assert_close(target_q, q)

    old_target = [param.clone() for param in model.policy.critic_target.parameters()]
    loss_before = critic_loss(model, obs, actions, targets)
    model.train()
    assert critic_loss(model, obs, actions, targets) < loss_before
    check_polyak_step(model, old_target)
    logged = model.logger.name_to_value
    assert np.isfinite(logged["train/critic_loss"]) and np.isfinite(logged["train/policy_loss"])

    model.save(tmp_path / "qac.zip")
    loaded = QAC.load(tmp_path / "qac.zip", device="cpu")
    assert type(loaded.policy) is type(model.policy)
    for mine, theirs in zip(policy_outputs(model, obs), policy_outputs(loaded, obs), strict=True):
        np.testing.assert_array_equal(np.asarray(theirs), np.asarray(mine))
    model.learn(model.n_steps * model.n_envs)
    assert model._n_updates == 2


ONE_SMALL_STEP = {"n_epochs": 1, "batch_size": None, "learning_rate": 1e-5, "tau": 0.5}
"""One gradient step per rollout, small enough that it must lower the loss it descends."""


@pytest.mark.parametrize("parameterization", ["escort", "neurd"])
def test_minigrid_flat_observations(tmp_path, parameterization):
    import minigrid  # noqa: F401
    from minigrid.wrappers import FlatObsWrapper

    env = make_vec_env("MiniGrid-Empty-5x5-v0", n_envs=2, seed=0, wrapper_class=FlatObsWrapper)
    model = model_for(parameterization, env=env, actor_update="sampled", n_steps=32, **ONE_SMALL_STEP)
    check_wiring(model, tmp_path)


def test_minigrid_dict_observations_use_multi_input_policy(tmp_path):
    import minigrid  # noqa: F401
    from minigrid.wrappers import RGBImgPartialObsWrapper

    def wrapper(env: gym.Env) -> gym.Env:
        return gym.wrappers.FilterObservation(RGBImgPartialObsWrapper(env), ["image", "direction"])

    env = make_vec_env("MiniGrid-Empty-5x5-v0", n_envs=2, seed=0, wrapper_class=wrapper)
    policy_kwargs = {"parameterization": "escort"}
    model = QAC("MultiInputPolicy", env, n_steps=16, policy_kwargs=policy_kwargs, seed=0, device="cpu", **ONE_SMALL_STEP)
    assert isinstance(model.policy, QACMultiInputPolicy)
    check_wiring(model, tmp_path)
    assert set(model.rollout_buffer.observations) == {"image", "direction"}


def test_atari_cnn_policy(tmp_path):
    import ale_py  # noqa: F401

    env = VecFrameStack(
        make_vec_env("ALE/Pong-v5", n_envs=1, seed=0, env_kwargs={"frameskip": 1}, wrapper_class=AtariWrapper), 4
    )
    policy_kwargs = {"parameterization": "escort"}
    model = QAC("CnnPolicy", env, n_steps=16, policy_kwargs=policy_kwargs, seed=0, device="cpu", **ONE_SMALL_STEP)
    assert isinstance(model.policy, QACCnnPolicy)
    check_wiring(model, tmp_path)
    assert model.rollout_buffer.observations.shape[-3:] == (4, 84, 84)


def critic_benchmark():
    """:return: ``benchmarks/qac_critic.py`` as a module"""
    spec = importlib.util.spec_from_file_location(
        "qac_critic", Path(__file__).resolve().parents[1] / "benchmarks" / "qac_critic.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_advantage_metrics_by_hand():
    """
    Two actions, uniform pi. State 0: exact Q (1, 0), learned (0.6, -0.4), both with advantages (0.5, -0.5). State 1:
    exact (0, 0.2), advantages (-0.1, 0.1); learned (0.2, 0), advantages reversed. State 2 is visited 99 times, its
    learned advantages wrong, and is left out. Then |A^pi| = (0.5, 0.5, 0.1, 0.1), median 0.3; MAE (0 + 0 + 0.2 + 0.2) / 4
    = 0.1; the correlation of (0.5, -0.5, 0.1, -0.1) with (0.5, -0.5, -0.1, 0.1) is (0.25 + 0.25 - 0.01 - 0.01) / 0.52;
    every pair is above a tenth of the median, half have the right sign; the argmax is right in state 0 only.
    """
    metrics = critic_benchmark().advantage_metrics(
        q_learned=np.array([[0.6, -0.4], [0.2, 0.0], [0.0, 5.0]]),
        q_true=np.array([[1.0, 0.0], [0.0, 0.2], [3.0, 0.0]]),
        pi=np.full((3, 2), 0.5),
        visits=np.array([100, 250, 99]),
    )
    expected = {
        "states": 2,
        "median_abs_advantage": 0.3,
        "mae_ratio": 0.1 / 0.3,
        "correlation": 0.48 / 0.52,
        "sign_pairs": 4,
        "sign_agreement": 0.5,
        "argmax_agreement": 0.5,
        "clear_states": 2,
        "argmax_clear_agreement": 0.5,
        "q_mae": (0.4 + 0.4 + 0.2 + 0.2) / 4,
    }
    assert metrics == pytest.approx(expected)


def test_advantage_metrics_ignore_state_offsets_and_see_reversals():
    """Advantages under pi are the same whatever is added to a state's Q; negated advantages get everything wrong."""
    bench = critic_benchmark()
    rng = np.random.default_rng(0)
    q_true = rng.normal(size=(20, 4))
    pi = rng.dirichlet(np.ones(4), size=20)
    visits = np.full(20, 100)
    shifted = bench.advantage_metrics(q_true + rng.normal(size=(20, 1)), q_true, pi, visits)
    assert shifted["mae_ratio"] == pytest.approx(0.0, abs=1e-12) and shifted["correlation"] == pytest.approx(1.0)
    assert shifted["sign_agreement"] == 1.0 and shifted["argmax_agreement"] == shifted["argmax_clear_agreement"] == 1.0
    exact = bench.advantages(q_true, pi)
    reversed_ = bench.advantage_metrics(q_true - 2 * exact, q_true, pi, visits)
    assert reversed_["correlation"] == pytest.approx(-1.0) and reversed_["sign_agreement"] == 0.0
    assert reversed_["argmax_agreement"] == reversed_["argmax_clear_agreement"] == 0.0 and reversed_[
        "mae_ratio"
    ] == pytest.approx(2 * np.abs(exact).mean() / np.median(np.abs(exact)))
    np.testing.assert_allclose((pi * exact).sum(1), 0.0, atol=1e-12)


def test_advantage_metrics_sign_threshold_and_ties():
    """
    Exact advantages (0, 0, -1, -1) and (-1.02, -1.02, -0.02, 0.02), median |A^pi| 0.51; learned (-0.5, 0.5, -1.5, -1.5) and
    (-0.95, -0.95, 0.05, -0.05): every pair above a tenth of the median has the right sign, the +-0.02 pair does not.
    State 0's learned argmax ties for the best action; state 1's is second best.
    """
    bench = critic_benchmark()
    q_true = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.04]])
    pi = np.array([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]])
    q_learned = np.array([[0.0, 1.0, -1.0, -1.0], [0.0, 0.0, 1.0, 0.9]])
    visits = np.array([100, 100])
    metrics = bench.advantage_metrics(q_learned, q_true, pi, visits)
    assert metrics["median_abs_advantage"] == pytest.approx(0.51)
    assert (metrics["sign_pairs"], metrics["sign_agreement"]) == (4, 1.0)
    assert metrics["argmax_agreement"] == 0.5
    # neither state's best action leads by more than a tenth of the median: state 0 ties, state 1 leads by 0.04
    assert metrics["clear_states"] == 0 and np.isnan(metrics["argmax_clear_agreement"])
    finer = bench.advantage_metrics(q_learned, q_true, pi, visits, sign_fraction=0.01)
    assert (finer["sign_pairs"], finer["sign_agreement"]) == (6, pytest.approx(4 / 6))
    assert (finer["clear_states"], finer["argmax_clear_agreement"]) == (1, 0.0)
    with pytest.raises(ValueError, match="visited 100 times"):
        bench.advantage_metrics(q_learned, q_true, pi, np.array([99, 0]))


def test_dueling_head_has_mean_zero_advantages_and_survives_save_load(tmp_path):
    model = model_for("escort", policy_kwargs={"dueling": True}, n_steps=8)
    assert isinstance(model.policy.q_net, DuelingQHead) and isinstance(model.policy.critic_target.q_net, DuelingQHead)
    model.learn(256)
    _, obs = state_observations({"subgoals": []})
    with th.no_grad():
        latent = model.policy.mlp_extractor.forward_critic(obs)
        value, advantage = model.policy.q_net.decompose(latent)
        q = model.policy.q_values(obs)
    assert value.shape == (len(obs), 1) and advantage.shape == (len(obs), 4)
    th.testing.assert_close(advantage.mean(-1), th.zeros(len(obs)), atol=1e-6, rtol=0)
    th.testing.assert_close(q, value + advantage)
    assert advantage.abs().max() > 0 and value.abs().max() > 0
    model.save(tmp_path / "qac.zip")
    loaded = QAC.load(tmp_path / "qac.zip", env=fourrooms(), device="cpu")
    assert loaded.policy.dueling and isinstance(loaded.policy.q_net, DuelingQHead)
    with th.no_grad():
        th.testing.assert_close(loaded.policy.q_values(obs), q)
        th.testing.assert_close(loaded.policy.target_q_values(obs), model.policy.target_q_values(obs))


def test_critic_replay_holds_the_last_rollouts_as_model_transitions():
    """Three rollouts into a replay of two: the last two remain, every stored (s, a, r, s', d) is a step of the transition
    model (or an episode's last step), and each rollout takes its on-policy steps plus ``replay_updates`` critic steps."""
    mdp, _ = state_observations(NEAR_GOAL)
    model = model_for(env=fourrooms(4, env_kwargs=NEAR_GOAL), replay_rollouts=2, replay_updates=3, n_epochs=1, batch_size=None)
    model.learn(3 * model.n_steps * model.n_envs)
    assert len(model.replay_buffer) == 2 and model._n_updates == 3 * (1 + 3)
    obs, actions, rewards, next_obs, next_done = (np.concatenate(column) for column in zip(*model.replay_buffer))
    assert len(actions) == 2 * model.n_steps * model.n_envs
    states, next_states = obs[:, : mdp.n_states].argmax(1), next_obs[:, : mdp.n_states].argmax(1)
    actions = actions.astype(int)
    np.testing.assert_allclose(rewards, mdp.R[states, actions])
    landing = mdp.P[states, actions].argmax(1)
    assert next_done.sum() >= 2
    np.testing.assert_array_equal(next_states[next_done == 0], landing[next_done == 0])
    assert mdp.terminal[landing[next_done == 1]].all()


def test_critic_replay_steps_move_the_critic_towards_one_step_expected_sarsa_targets():
    """
    Two models alike but for the replay, one rollout and ``train``: the same actor afterwards (replay steps are
    critic-only, after the on-policy steps), and the replaying critic nearer ``r + gamma * (1 - d) * V_target(s')`` on
    the rollout's transitions, with ``V_target`` and ``pi`` as they were before ``train``.
    """
    models, losses = {}, {}
    for replay in (False, True):  # one after the other: building a model seeds the global generators
        model = models[replay] = model_for(
            env=fourrooms(4, env_kwargs=NEAR_GOAL),
            actor_update="sampled",
            learning_rate=1e-4,
            replay_rollouts=int(replay),
            replay_updates=4 * int(replay),
        )
        _, callback = model._setup_learn(model.n_steps * model.n_envs, None)
        model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
        buffer = model.rollout_buffer
        obs = th.as_tensor(buffer.observations.reshape(-1, buffer.observations.shape[-1]))
        actions = th.as_tensor(buffer.actions.reshape(-1)).long()
        next_obs, next_done = model._next_steps()
        with th.no_grad():
            v_next = model.policy.target_values(th.as_tensor(next_obs)).flatten()
        targets = th.as_tensor(buffer.rewards.reshape(-1)) + model.gamma * (1 - th.as_tensor(next_done.reshape(-1))) * v_next
        model.train()
        losses[replay] = critic_loss(model, obs, actions, targets)
    assert models[True]._n_updates == models[False]._n_updates + 4
    plain, replaying = (dict(models[replay].policy.named_parameters()) for replay in (False, True))
    actor = [name for name in plain if name.startswith(("action_net.", "mlp_extractor.policy_net."))]
    critic = [name for name in plain if name.startswith(("q_net.", "mlp_extractor.value_net."))]
    assert actor and critic and all(th.equal(plain[name], replaying[name]) for name in actor)
    assert not any(th.equal(plain[name], replaying[name]) for name in critic)
    assert losses[True] < losses[False]
    assert np.isfinite(models[True].logger.name_to_value["train/replay_critic_loss"])


def test_policy_evaluation_with_replay_learns_q_and_save_load_starts_an_empty_replay(tmp_path):
    """Bandit Q of the arms [1.0, 0.9, 0.1] to a tenth of the gap between the best two, learned with the critic replay;
    the replay is not saved, and a loaded model fills its own."""
    env = make_vec_env("Bandit-v0", n_envs=4, seed=0, env_kwargs={"render_mode": None})
    model = QAC("MlpPolicy", env, actor_update="none", n_steps=8, replay_rollouts=8, replay_updates=4, seed=0, device="cpu")
    model.learn(2000)
    with th.no_grad():
        np.testing.assert_allclose(model.policy.q_values(th.zeros(1, 1))[0].numpy(), [1.0, 0.9, 0.1], rtol=0, atol=0.01)
    model.save(tmp_path / "qac.zip")
    loaded = QAC.load(tmp_path / "qac.zip", env=env, device="cpu")
    assert (loaded.replay_rollouts, loaded.replay_updates, len(loaded.replay_buffer)) == (8, 4, 0)
    loaded.learn(64)
    assert len(loaded.replay_buffer) == 2
