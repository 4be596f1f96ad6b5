"""QAC: policy heads, critic targets, actor updates, save/load, learning on FourRooms, MiniGrid, Atari, Dict obs."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.atari_wrappers import AtariWrapper
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecFrameStack

import envs
from agents.qac import QAC, neurd_loss
from agents.qac_policy import QACCnnPolicy, QACMultiInputPolicy, QACPolicy

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
    [({"actor_update": "exact"}, {}), ({"td_lambda": 1.5}, {}), ({"tau": 0.0}, {}), ({}, {"parameterization": "sparsemax"})],
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
        values = model.policy.predict_values(obs)
        _, forward_values, _ = model.policy(obs)
        target_q = model.policy.target_q_values(obs)
    assert q.shape == (len(obs), 4) and values.shape == (len(obs), 1)
    th.testing.assert_close(values, (probs * q).sum(-1, keepdim=True))
    th.testing.assert_close(forward_values, values)
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


def test_policy_evaluation_mode_freezes_the_actor_and_learns_q():
    env = make_vec_env("Bandit-v0", n_envs=4, seed=0, env_kwargs={"render_mode": None})
    model = QAC("MlpPolicy", env, actor_update="none", n_steps=8, learning_rate=3e-3, seed=0, device="cpu")
    actor = [param.detach().clone() for param in model.policy.action_net.parameters()]
    actor += [param.detach().clone() for param in model.policy.mlp_extractor.policy_net.parameters()]
    model.learn(3000)
    after = list(model.policy.action_net.parameters()) + list(model.policy.mlp_extractor.policy_net.parameters())
    assert all(th.equal(before, now) for before, now in zip(actor, after, strict=True))
    with th.no_grad():
        q = model.policy.q_values(th.zeros(1, 1))[0].numpy()
    np.testing.assert_allclose(q, [1.0, 0.9, 0.1], atol=0.05)


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


def check_trains(model: QAC, n_steps: int) -> None:
    model.learn(n_steps)
    assert model._n_updates > 0
    logged = model.logger.name_to_value
    assert np.isfinite(logged["train/critic_loss"]) and np.isfinite(logged["train/policy_loss"])
    obs = (
        th.as_tensor(model.rollout_buffer.observations[:4])
        if not isinstance(model.rollout_buffer.observations, dict)
        else None
    )
    if obs is not None:
        with th.no_grad():
            q = model.policy.q_values(obs)
        assert q.shape == (len(obs), model.action_space.n) and th.isfinite(q).all()


@pytest.mark.parametrize("parameterization", ["escort", "neurd"])
def test_minigrid_flat_observations(parameterization):
    import minigrid  # noqa: F401
    from minigrid.wrappers import FlatObsWrapper

    env = make_vec_env("MiniGrid-Empty-5x5-v0", n_envs=2, seed=0, wrapper_class=FlatObsWrapper)
    check_trains(model_for(parameterization, env=env, actor_update="sampled"), 128)


def test_minigrid_dict_observations_use_multi_input_policy():
    import minigrid  # noqa: F401
    from minigrid.wrappers import RGBImgPartialObsWrapper

    def wrapper(env: gym.Env) -> gym.Env:
        return gym.wrappers.FilterObservation(RGBImgPartialObsWrapper(env), ["image", "direction"])

    env = make_vec_env("MiniGrid-Empty-5x5-v0", n_envs=2, seed=0, wrapper_class=wrapper)
    model = QAC("MultiInputPolicy", env, n_steps=8, policy_kwargs={"parameterization": "escort"}, seed=0, device="cpu")
    assert isinstance(model.policy, QACMultiInputPolicy)
    check_trains(model, 64)
    obs = {key: th.as_tensor(value[:2]) for key, value in model.rollout_buffer.observations.items()}
    with th.no_grad():
        assert model.policy.q_values(obs).shape == (2, model.action_space.n)


def test_atari_cnn_policy():
    import ale_py  # noqa: F401

    env = VecFrameStack(
        make_vec_env("ALE/Pong-v5", n_envs=1, seed=0, env_kwargs={"frameskip": 1}, wrapper_class=AtariWrapper), 4
    )
    model = QAC("CnnPolicy", env, n_steps=16, policy_kwargs={"parameterization": "escort"}, seed=0, device="cpu")
    assert isinstance(model.policy, QACCnnPolicy)
    check_trains(model, 64)
    assert model.rollout_buffer.observations.shape[1:] == (4, 84, 84)
