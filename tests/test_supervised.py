from pathlib import Path

import numpy as np
import pytest
import torch as th
import torch.nn.functional as F
from stable_baselines3 import PPO
from stable_baselines3.common.policies import ActorCriticPolicy

import envs  # noqa: F401  (registers Digits-v0)
from agents.supervised import OPTIMIZERS, Supervised, make_optimizer
from envs.digits import DigitsEnv
from experiments.config import RunConfig
from experiments.errors import UsageError
from experiments.hyperparams import load_hyperparams
from experiments.results import read_metrics
from experiments.run import run
from policies import EscortActorCriticPolicy, escort_cross_entropy
from policies.actor_critic import ESCORT_HEAD_BIAS

th.set_num_threads(1)

METRICS = {"train_loss", "train_accuracy", "test_accuracy", "output_grad_norm"}


@pytest.fixture(scope="module")
def env() -> DigitsEnv:
    return DigitsEnv()


def classifier(env: DigitsEnv, policy: str, **kwargs) -> Supervised:
    return Supervised(policy, env.observation_space, env.action_space, **kwargs)


def small(env: DigitsEnv, n: int = 200) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    (x, y), (xt, yt) = env.dataset("train"), env.dataset("test")
    return (x[:n], y[:n]), (xt[:n], yt[:n])


def layer_shapes(module: th.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(type(m).__name__, tuple(p.shape)) for m in module.modules() for p in m.parameters(recurse=False)]


@pytest.mark.parametrize("policy", ["softmax", "escort"])
def test_network_is_the_actor_ppo_builds(env: DigitsEnv, policy: str) -> None:
    policy_class = EscortActorCriticPolicy if policy == "escort" else "MlpPolicy"
    ppo_policy = PPO(policy_class, env, n_steps=64, batch_size=64, device="cpu").policy
    clf = classifier(env, policy).policy
    assert type(clf) is type(ppo_policy)
    for name in ("mlp_extractor", "action_net"):
        assert layer_shapes(getattr(clf, name)) == layer_shapes(getattr(ppo_policy, name))
    layers = clf.mlp_extractor.policy_net.modules()
    activations = [type(m) for m in layers if not isinstance(m, th.nn.Linear | th.nn.Sequential)]
    assert activations == [th.nn.Tanh, th.nn.Tanh]
    if policy == "escort":
        assert th.equal(clf.action_net.bias, th.full((10,), ESCORT_HEAD_BIAS))


@pytest.mark.parametrize("policy", ["softmax", "escort"])
def test_loss_is_minus_log_prob_of_the_policy_distribution(env: DigitsEnv, policy: str) -> None:
    clf = classifier(env, policy, seed=3)
    (x, y), _ = small(env, 64)
    obs, labels = th.tensor(x), th.tensor(y)
    theta = clf.theta(obs)
    expected = escort_cross_entropy(theta, labels) if policy == "escort" else F.cross_entropy(theta, labels)
    log_prob = clf.policy.get_distribution(obs).log_prob(labels)
    assert th.allclose(clf.loss_fn(theta, labels), expected)
    assert th.allclose(clf.loss_fn(theta, labels), -log_prob.mean(), atol=1e-6)
    np.testing.assert_array_equal(clf.predict(x), clf.policy.predict(x, deterministic=True)[0])


def test_full_batch_measurements_match_a_direct_computation(env: DigitsEnv) -> None:
    clf = classifier(env, "escort", seed=1)
    (x, y), _ = small(env, 300)
    obs, labels = th.tensor(x), th.tensor(y)
    loss, accuracy, grad_norm = clf.full_batch(obs, labels)
    head = clf.policy.action_net
    direct = escort_cross_entropy(clf.theta(obs), labels)
    weight_grad, bias_grad = th.autograd.grad(direct, [head.weight, head.bias])
    assert loss == pytest.approx(direct.item(), rel=1e-5)
    assert grad_norm == pytest.approx(th.sqrt(weight_grad.pow(2).sum() + bias_grad.pow(2).sum()).item(), rel=1e-4)
    assert accuracy == pytest.approx(np.mean(clf.predict(x) == y))
    assert head.weight.grad is None or not head.weight.grad.any()


@pytest.mark.parametrize("policy", ["softmax", "escort"])
def test_training_lowers_the_loss_and_moves_only_the_actor(env: DigitsEnv, policy: str) -> None:
    clf = classifier(env, policy, optimizer="adam", learning_rate=3e-3, seed=0)
    value_net = [p.detach().clone() for p in clf.policy.value_net.parameters()]
    head = clf.policy.action_net.weight.detach().clone()
    train, test = small(env)
    history = clf.learn(train, test, epochs=5)
    assert [m.epoch for m in history] == list(range(6))
    assert history[-1].train_loss < 0.5 * history[0].train_loss
    assert history[-1].train_accuracy > 0.8
    assert history[0].train_loss == pytest.approx(np.log(10), abs=0.05)
    assert not th.equal(clf.policy.action_net.weight, head)
    assert all(th.equal(a, b) for a, b in zip(clf.policy.value_net.parameters(), value_net))


def test_same_seed_same_history(env: DigitsEnv) -> None:
    def history(seed: int) -> list:
        return classifier(env, "escort", optimizer="sgd", learning_rate=0.01, seed=seed).learn(*small(env), epochs=2)

    assert history(4) == history(4)
    assert history(4) != history(5)


def test_optimizers_are_the_named_torch_optimizers() -> None:
    params = [th.nn.Parameter(th.zeros(2))]
    built = {name: make_optimizer(name, params, 0.1, momentum=0.8) for name in OPTIMIZERS}
    assert isinstance(built["sgd"], th.optim.SGD) and built["sgd"].defaults["momentum"] == 0
    assert isinstance(built["momentum"], th.optim.SGD) and built["momentum"].defaults["momentum"] == 0.8
    assert isinstance(built["adam"], th.optim.Adam)
    with pytest.raises(ValueError):
        make_optimizer("rmsprop", params, 0.1)


def test_cli_run_writes_metrics_model_and_summary(tmp_path: Path) -> None:
    config = RunConfig(algo="supervised", env="Digits-v0", policy="escort", n_timesteps=2, log_folder=str(tmp_path), verbose=0)
    summary = run(config)
    run_dir = Path(summary["run_dir"])
    rows = read_metrics(run_dir)
    assert {(t, m) for t, m, _ in rows} == {(t, m) for t in range(3) for m in METRICS}
    assert summary["epochs"] == 2 and (summary["n_train"], summary["n_test"]) == (1347, 450)
    assert summary["test_accuracy"] == [v for t, m, v in rows if (t, m) == (2, "test_accuracy")][0]
    state = th.load(run_dir / "model.pt")
    env = DigitsEnv()
    restored = EscortActorCriticPolicy(env.observation_space, env.action_space, lambda _: 0.0)
    restored.load_state_dict(state)
    assert env.evaluate_accuracy(lambda x: restored.predict(x, deterministic=True)[0]) == summary["test_accuracy"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hyperparams": {"learning_rat": 0.1}}, "unknown supervised hyperparameters"),
        ({"hyperparams": {"optimizer": "rmsprop"}}, "optimizer"),
        ({"hyperparams": {"batch_size": 0}}, "must be numbers > 0"),
        ({"hyperparams": {"momentum": 1.5}}, "momentum must be < 1"),
        ({"hyperparams": {"optimizer": "sgd", "learning_rate": 1e38}}, "diverged"),
        ({"env": "FourRooms-v0"}, "classification env"),
        ({"policy": "neurd"}, "does not work with --algo supervised"),
    ],
)
def test_bad_input_is_a_usage_error(tmp_path: Path, changes: dict, message: str) -> None:
    fields = {"algo": "supervised", "env": "Digits-v0", "policy": "softmax", "n_timesteps": 1, "log_folder": str(tmp_path)}
    config = RunConfig(**{**fields, **changes})
    with pytest.raises(UsageError, match=message):
        run(config)
    assert not any(tmp_path.rglob("metrics.csv"))


@pytest.mark.parametrize("policy", ["softmax", "escort"])
def test_default_hyperparameters_reach_95_percent_test_accuracy(env: DigitsEnv, policy: str) -> None:
    hp = load_hyperparams("supervised", "Digits-v0", "other")
    settings = {key: hp[key] for key in ("optimizer", "learning_rate", "batch_size", "policy_kwargs")}
    clf = classifier(env, policy, **settings)
    history = clf.learn(env.dataset("train"), env.dataset("test"), epochs=hp["n_timesteps"])
    assert history[-1].test_accuracy >= 0.95
    assert issubclass(type(clf.policy), ActorCriticPolicy)
