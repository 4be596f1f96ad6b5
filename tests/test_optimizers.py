"""Optimizers by name for PPO, A2C and QAC: the model's optimizer is the one named, config.yml records it, bad names exit 2."""

from pathlib import Path

import pytest
import torch as th
import yaml

from experiments.cli import main
from experiments.config import RunConfig
from experiments.errors import UsageError
from experiments.optimizers import OPTIMIZERS, optimizer_kwargs, optimizer_policy_kwargs
from experiments.run import resolve
from experiments.sb3_run import build_model, make_envs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--env", "FourRooms-v0", "-n", "128", "--n-envs", "2", "--eval-freq", "0", "--eval-episodes", "1", "--verbose", "0"]
ROLLOUT = {"ppo": ["n_steps=64", "batch_size=64", "n_epochs=1"], "a2c": ["n_steps=8"], "qac": ["n_steps=8"]}


def _model(algo: str, **hyperparams):
    config = RunConfig(algo=algo, env="FourRooms-v0", policy="escort", n_timesteps=128, n_envs=2, hyperparams=hyperparams)
    hp = resolve(config)
    train_env, eval_env = make_envs(config, hp, None)
    eval_env.close()
    return build_model(config, hp, train_env)


@pytest.mark.parametrize("algo", ["ppo", "a2c", "qac"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_the_named_optimizer_updates_every_trainable_parameter_with_its_defaults(algo, name):
    model = _model(algo, optimizer=name, learning_rate=0.01)
    optimizer = model.policy.optimizer
    spec = OPTIMIZERS[name]
    assert type(optimizer) is spec.cls
    group = optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(0.01)
    assert all(group[k] == v for k, v in spec.defaults.items())
    if name == "sgd":
        assert group["momentum"] == 0  # plain SGD: no momentum unless asked for
    optimized = {id(p) for g in optimizer.param_groups for p in g["params"]}
    target = {id(p) for p in getattr(model.policy, "critic_target", th.nn.Module()).parameters()}
    trainable = {id(p) for p in model.policy.parameters() if p.requires_grad} - target
    assert optimized == trainable


def test_optimizer_kwargs_override_the_defaults_key_by_key():
    model = _model("ppo", optimizer="momentum", optimizer_kwargs={"momentum": 0.5, "nesterov": True})
    group = model.policy.optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"]) == (0.5, True)
    assert optimizer_kwargs("rmsprop", {"eps": 1e-3}) == {"alpha": 0.99, "eps": 1e-3, "weight_decay": 0}


def test_without_an_optimizer_the_algorithms_keep_sb3s_choice():
    assert type(_model("ppo").policy.optimizer) is th.optim.Adam
    assert type(_model("a2c").policy.optimizer) is th.optim.RMSprop
    assert optimizer_policy_kwargs({}) == {}


@pytest.mark.parametrize("algo", ["ppo", "a2c", "qac"])
def test_config_yml_records_the_optimizer(tmp_path, algo):
    argv = ["-f", str(tmp_path), "--algo", algo, *TINY, "--hyperparams", *ROLLOUT[algo], "optimizer=sgd", "learning_rate=0.05"]
    assert main(argv) == 0
    (config_file,) = Path(tmp_path, algo).glob("*/config.yml")
    resolved = yaml.safe_load(config_file.read_text())["resolved_hyperparams"]
    assert resolved["optimizer"] == "sgd" and resolved["learning_rate"] == 0.05


@pytest.mark.parametrize(
    ("hyperparams", "needle"),
    [
        (["optimizer=adagrad"], "optimizer 'adagrad' is unknown"),
        (["optimizer_kwargs={momentum: 0.5}"], "needs optimizer"),
        (["optimizer=sgd", "optimizer_kwargs=0.5"], "must be a mapping"),
        (["optimizer=adam", "optimizer_kwargs={momentum: 0.5}"], "momentum"),
    ],
)
def test_bad_optimizers_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, hyperparams, needle):
    assert main(["-f", str(tmp_path), "--algo", "ppo", *TINY, "--hyperparams", *ROLLOUT["ppo"], *hyperparams]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("train.py: error:") and needle in err
    assert not list(tmp_path.iterdir())


def test_an_optimizer_class_given_twice_is_refused():
    with pytest.raises(UsageError, match="once"):
        optimizer_policy_kwargs({"optimizer": "sgd"}, {"optimizer_class": th.optim.Adam})
