"""experiments.zoo and rl-zoo3's conventions end to end: literal policy_kwargs, policy:, normalize, env_wrapper,
-conf files, --gym-packages, and hyperparameter files that plain YAML reads as numbers."""

import hashlib
import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from experiments.cli import main
from experiments.errors import UsageError
from experiments.zoo import (
    NAMES,
    normalize_kwargs,
    parse_literal,
    policy_choice,
    policy_kwargs_data,
    policy_kwargs_objects,
    wrapper_specs,
)

ROOT = Path(__file__).resolve().parent.parent
TINY = ["-n", "256", "--n-envs", "2", "--eval-freq", "128", "--eval-episodes", "1", "--verbose", "0"]
TINY_PPO = ["n_steps=64", "batch_size=64", "n_epochs=1"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: A user package as rl-zoo3 users write one: a module whose import registers an env.
USER_PACKAGE = '''
import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    """Walk right along a corridor of n cells; the last cell pays 1. With interrupt_at, step k raises Ctrl-C."""

    def __init__(self, n=4, interrupt_at=None):
        self.n, self.interrupt_at, self.steps = n, interrupt_at, 0
        self.observation_space = gym.spaces.Box(0.0, 1.0, (n,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        return np.eye(self.n, dtype=np.float32)[self.pos]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return self._obs(), {}

    def step(self, action):
        self.steps += 1
        if self.interrupt_at is not None and self.steps >= self.interrupt_at:
            raise KeyboardInterrupt
        self.pos = max(0, min(self.n - 1, self.pos + (1 if action == 1 else -1)))
        done = self.pos == self.n - 1
        return self._obs(), float(done), done, False, {}


gym.register("ZooUserCorridor-v0", entry_point=Corridor, max_episode_steps=20)
'''


@pytest.fixture(scope="module")
def user_package(tmp_path_factory: pytest.TempPathFactory):
    import sys

    folder = tmp_path_factory.mktemp("userpkg")
    (folder / "zoo_user_envs.py").write_text(USER_PACKAGE)
    sys.path.insert(0, str(folder))
    yield "zoo_user_envs"
    sys.path.remove(str(folder))


def _only_run(logs: Path, algo: str = "ppo") -> Path:
    (run_dir,) = (logs / algo).iterdir()
    return run_dir


def _one_line_exit_2(capsys: pytest.CaptureFixture, argv: list[str], needle: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("train.py: error:"), err
    assert needle in err, err
    return err


# --- the literal parser ---------------------------------------------------------------------------------------------


def test_policy_kwargs_string_parses_to_data_with_names_kept():
    parsed = parse_literal(
        "dict(net_arch=dict(pi=[64, 64], vf=[32]), activation_fn=nn.ReLU, ortho_init=False, x=-1.5e-3)", "k"
    )
    assert parsed == {"net_arch": {"pi": [64, 64], "vf": [32]}, "activation_fn": "nn.ReLU", "ortho_init": False, "x": -1.5e-3}
    assert parse_literal("{'norm_obs': True, 'norm_reward': (1, 2)}", "k") == {"norm_obs": True, "norm_reward": [1, 2]}


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('echo pwned')",
        "dict(net_arch=open('/etc/passwd').read())",
        "dict(activation_fn=nn.Softmax2000)",
        "dict(activation_fn=os.system)",
        "dict(x=lambda: 1)",
        "dict(**other)",
        "dict([('a', 1)])",
        "dict(x=[i for i in range(3)])",
        "dict(x=1 + 2)",
        "dict(net_arch=[64, 64]",
    ],
)
def test_anything_but_literals_and_table_names_is_a_one_line_usage_error(text):
    with pytest.raises(UsageError) as err:
        parse_literal(text, "policy_kwargs")
    assert "policy_kwargs" in str(err.value) and "\n" not in str(err.value)


def test_every_table_name_is_a_class_and_policy_kwargs_objects_swaps_names_for_classes():
    for name in NAMES:
        assert isinstance(policy_kwargs_objects({"activation_fn": name})["activation_fn"], type)
    data = policy_kwargs_data("dict(net_arch=[8], activation_fn=nn.LeakyReLU)")
    built = policy_kwargs_objects(data)
    assert built["activation_fn"] is torch.nn.LeakyReLU and data["activation_fn"] == "nn.LeakyReLU"
    assert {n: policy_kwargs_objects({"activation_fn": f"nn.{n}"})["activation_fn"] for n in ("ReLU", "Tanh", "ELU")} == {
        "ReLU": torch.nn.ReLU,
        "Tanh": torch.nn.Tanh,
        "ELU": torch.nn.ELU,
    }


def test_normalize_takes_bools_mappings_and_dict_strings():
    assert normalize_kwargs(False) is None and normalize_kwargs(None) is None and normalize_kwargs(True) == {}
    assert normalize_kwargs("dict(norm_obs=True, norm_reward=False)") == {"norm_obs": True, "norm_reward": False}
    assert normalize_kwargs({"clip_obs": 5.0}) == {"clip_obs": 5.0}
    with pytest.raises(UsageError):
        normalize_kwargs("[1, 2]")


def test_env_wrapper_takes_a_path_or_a_list_with_kwargs_and_checks_the_import():
    assert wrapper_specs("gymnasium.wrappers.FlattenObservation") == [("gymnasium.wrappers.FlattenObservation", {})]
    specs = wrapper_specs(
        ["gymnasium.wrappers.FlattenObservation", {"gymnasium.wrappers.TimeLimit": {"max_episode_steps": 5}}]
    )
    assert specs[1] == ("gymnasium.wrappers.TimeLimit", {"max_episode_steps": 5})
    for bad in ("gymnasium.wrappers.NoSuchWrapper", "no_such_module_xyz.Wrapper", "NoDots", {"a.B": 1}):
        with pytest.raises(UsageError):
            wrapper_specs(bad)


def test_policy_aliases_choose_the_network_and_classes_must_agree_with_policy():
    assert [policy_choice(name, "escort") for name in ("MlpPolicy", "CnnPolicy", "MultiInputPolicy")] == [
        "mlp",
        "cnn",
        "multi",
    ]
    assert policy_choice("policies.EscortActorCriticCnnPolicy", "escort") == "cnn"
    assert policy_choice("ActorCriticPolicy", "softmax") == "mlp"
    with pytest.raises(UsageError, match="--policy is softmax"):
        policy_choice("policies.EscortActorCriticPolicy", "softmax")
    with pytest.raises(UsageError, match="MlpPolicy"):
        policy_choice("SACPolicy", "escort")


# --- our own files ---------------------------------------------------------------------------------------------------


def _leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, str(i)))
    else:
        yield path, value


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("path", sorted((ROOT / "hyperparams").glob("*.yml")), ids=lambda p: p.name)
def test_hyperparameter_files_hold_numbers_that_plain_yaml_reads_as_numbers(path):
    blocks = yaml.safe_load(path.read_text())  # what rl-zoo3 uses
    assert isinstance(blocks, dict) and blocks
    numeric = ("n_timesteps", "n_envs", "n_steps", "batch_size", "n_epochs", "gamma", "learning_rate", "ent_coef", "pi0")
    for block_name, block in blocks.items():
        for path_keys, value in _leaves(block):
            where = f"{path.name}:{block_name}.{'.'.join(path_keys)}"
            if isinstance(value, str):
                assert not _is_number_text(value), f"{where} = {value!r} is a string to yaml.safe_load"
                if value.startswith("lin_"):
                    assert _is_number_text(value[4:]), where
            if path_keys and path_keys[-1] in numeric and not isinstance(value, dict):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                assert ok or (isinstance(value, str) and value.startswith("lin_")), f"{where} = {value!r}"
        if "n_timesteps" in (block or {}):
            assert float(block["n_timesteps"]).is_integer()


# --- end to end through train.py -------------------------------------------------------------------------------------

ZOO_FILE = """\
CartPole-v1:
  policy: 'MlpPolicy'
  n_timesteps: !!float 256
  n_envs: 2
  n_steps: 64
  batch_size: 64
  n_epochs: 1
  learning_rate: lin_1e-3
  clip_range: lin_0.2
  ent_coef: !!float 1e-2
  policy_kwargs: "dict(net_arch=[32, 32], activation_fn=nn.ReLU)"
"""


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("zoo")
    conf = folder / "my_ppo.yml"
    conf.write_text(ZOO_FILE)
    logs = folder / "logs"
    argv = ["--env", "CartPole-v1", "-conf", str(conf), "--eval-freq", "128", "--eval-episodes", "1", "--verbose", "0"]
    assert main([*argv, "-f", str(logs)]) == 0
    return _only_run(logs)


def test_a_zoo_file_trains_through_conf_and_records_what_was_built(zoo_run):
    from stable_baselines3 import PPO

    config = yaml.safe_load((zoo_run / "config.yml").read_text())
    resolved = config["resolved_hyperparams"]
    assert resolved["policy_kwargs"] == {"net_arch": [32, 32], "activation_fn": "nn.ReLU"}
    assert resolved["policy"] == "policies.EscortActorCriticPolicy"  # MlpPolicy, under --policy escort (the default)
    assert resolved["learning_rate"] == "lin_1e-3" and resolved["ent_coef"] == 0.01 and resolved["n_timesteps"] == 256
    conf = Path(config["conf_file"])
    assert config["provenance"]["hyperparams_file"] == str(conf.absolute())
    assert config["provenance"]["hyperparams_sha256"] == hashlib.sha256(conf.read_bytes()).hexdigest()
    model = PPO.load(zoo_run / "model.zip", device="cpu")
    linears = [m for m in model.policy.mlp_extractor.policy_net if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [32, 32]
    assert any(isinstance(m, torch.nn.ReLU) for m in model.policy.mlp_extractor.policy_net)
    assert type(model.policy).__name__ == "EscortActorCriticPolicy"
    assert model.learning_rate(1.0) == pytest.approx(1e-3) and model.learning_rate(0.5) == pytest.approx(5e-4)


def test_softmax_with_a_zoo_alias_is_stock_sb3(tmp_path):
    from stable_baselines3.common.policies import ActorCriticPolicy

    conf = tmp_path / "z.yml"
    conf.write_text(ZOO_FILE)
    assert main(["--env", "CartPole-v1", "-conf", str(conf), "--policy", "softmax", "-f", str(tmp_path / "l"), *TINY]) == 0
    run_dir = _only_run(tmp_path / "l")
    assert yaml.safe_load((run_dir / "config.yml").read_text())["resolved_hyperparams"]["policy"] == "MlpPolicy"
    from stable_baselines3 import PPO

    assert type(PPO.load(run_dir / "model.zip", device="cpu").policy) is ActorCriticPolicy


@pytest.mark.parametrize(
    ("block", "extra", "needle"),
    [
        ({"callback": "rl_zoo3.callbacks.ParallelTrainCallback"}, [], "callback"),
        ({"not_a_zoo_key": 3}, [], "unknown key 'not_a_zoo_key'"),
        ({"policy": "policies.EscortActorCriticPolicy"}, ["--policy", "softmax"], "--policy is softmax"),
        ({"policy_kwargs": "dict(net_arch=[64, 64], activation_fn=nn.Bogus)"}, [], "nn.Bogus"),
        ({"env_wrapper": "no_such_module_xyz.Wrapper"}, [], "env_wrapper"),
        ({"n_timesteps": "fifty thousand"}, [], "!!float"),
    ],
)
def test_zoo_file_problems_are_one_line_exit_2(tmp_path, capsys, block, extra, needle):
    conf = tmp_path / "bad.yml"
    conf.write_text(yaml.safe_dump({"CartPole-v1": {"n_envs": 2, "n_steps": 64, "batch_size": 64, **block}}))
    argv = ["--env", "CartPole-v1", "-conf", str(conf), "-f", str(tmp_path / "logs"), *TINY, *extra]
    if "n_timesteps" in block:
        argv.remove("-n"), argv.remove("256")
    _one_line_exit_2(capsys, argv, needle)
    assert not (tmp_path / "logs").exists()


def test_conf_file_without_a_block_for_the_env_or_missing_is_one_line(tmp_path, capsys):
    conf = tmp_path / "other.yml"
    conf.write_text("Acrobot-v1:\n  n_envs: 2\n")
    _one_line_exit_2(capsys, ["--env", "CartPole-v1", "-conf", str(conf), *TINY], "no block for CartPole-v1")
    _one_line_exit_2(capsys, ["--env", "CartPole-v1", "--conf-file", str(tmp_path / "nope.yml"), *TINY], "no such file")


def test_env_wrapper_and_normalize_string_from_a_zoo_file_apply(tmp_path):
    from stable_baselines3 import PPO

    from experiments.evaluate import evaluate_run

    conf = tmp_path / "w.yml"
    conf.write_text(
        textwrap.dedent(
            """\
            CartPole-v1:
              policy: MlpPolicy
              normalize: "dict(norm_obs=True, norm_reward=False)"
              env_wrapper:
                - gymnasium.wrappers.TimeAwareObservation:
                    normalize_time: true
            """
        )
    )
    argv = ["--env", "CartPole-v1", "-conf", str(conf), "-f", str(tmp_path / "l"), *TINY, "--hyperparams", *TINY_PPO]
    assert main(argv) == 0
    run_dir = _only_run(tmp_path / "l")
    assert PPO.load(run_dir / "model.zip", device="cpu").observation_space.shape == (5,)  # CartPole's 4 and the time
    assert (run_dir / "vecnormalize.pkl").is_file()
    hp = yaml.safe_load((run_dir / "config.yml").read_text())["resolved_hyperparams"]
    assert hp["normalize"] == {"norm_obs": True, "norm_reward": False}
    episodes = pd.concat([pd.read_csv(p, skiprows=1) for p in run_dir.glob("*.monitor.csv")])
    assert len(episodes) > 0 and (episodes["r"] == episodes["l"]).all()  # the Monitor sits below the wrappers
    assert len(evaluate_run(run_dir, episodes=2).returns) == 2  # --eval rebuilds the wrapper (else: a shape error)


def test_a_user_package_registered_through_gym_packages_trains(tmp_path, capsys, user_package):
    logs = tmp_path / "logs"
    err = _one_line_exit_2(capsys, ["--env", "ZooUserCorridor-v0", "-f", str(logs), *TINY], "--gym-packages")
    assert "ZooUserCorridor-v0" in err and "MODULE:ZooUserCorridor-v0" in err
    argv = ["--env", "ZooUserCorridor-v0", "--gym-packages", user_package, "-f", str(logs), *TINY]
    assert main([*argv, "--hyperparams", *TINY_PPO]) == 0
    run_dir = _only_run(logs)
    assert yaml.safe_load((run_dir / "config.yml").read_text())["gym_packages"] == [user_package]
    assert json.loads((run_dir / "summary.json").read_text())["timesteps"] >= 256
    _one_line_exit_2(capsys, ["--gym-packages", "no_such_module_xyz", *TINY], "no_such_module_xyz")


def test_eval_env_kwargs_are_recorded_and_used_and_the_best_model_is_kept(tmp_path, capsys):
    from experiments.evaluate import load_run, make_eval_env

    logs = tmp_path / "logs"
    argv = ["--env", "FourRooms-v0", "--env-kwargs", "slip=0.3", "--eval-env-kwargs", "slip=0.0", "--n-eval-envs", "2"]
    assert main([*argv, "-f", str(logs), *TINY, "-n", "512"]) == 0
    run_dir = _only_run(logs)
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    assert config["env_kwargs"] == {"slip": 0.3} and config["eval_env_kwargs"] == {"slip": 0.0} and config["n_eval_envs"] == 2
    assert (run_dir / "best_model.zip").is_file()
    evaluations = np.load(run_dir / "evaluations.npz")
    assert list(evaluations["timesteps"]) == [128, 256, 384, 512]  # four periodic evaluations, the final one at 512
    env = make_eval_env(load_run(run_dir))
    assert env.unwrapped.envs[0].unwrapped.slip == 0.0
    env.close()
    assert main(["--eval", str(run_dir), "--best", "--eval-episodes", "2"]) == 0
    assert "best_model.zip" in capsys.readouterr().out


def test_without_periodic_evaluation_evaluations_npz_holds_the_final_one_and_best_is_refused(tmp_path, capsys):
    logs = tmp_path / "logs"
    assert main(["--env", "CartPole-v1", "-f", str(logs), *TINY, "--eval-freq", "1000", "--hyperparams", *TINY_PPO]) == 0
    run_dir = _only_run(logs)
    evaluations = np.load(run_dir / "evaluations.npz")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert list(evaluations["timesteps"]) == [summary["timesteps"]] and evaluations["results"].shape == (1, 1)
    assert float(evaluations["results"][0, 0]) == pytest.approx(summary["final_return"])
    assert not (run_dir / "best_model.zip").exists()
    _one_line_exit_2(capsys, ["--eval", str(run_dir), "--best"], "best_model.zip")


def test_an_interrupted_run_never_takes_a_finished_runs_name(tmp_path, user_package):
    logs = tmp_path / "logs"
    argv = ["--env", "ZooUserCorridor-v0", "--gym-packages", user_package, "--env-kwargs", "interrupt_at=100", *TINY]
    assert main([*argv, "-f", str(logs), "--hyperparams", *TINY_PPO]) == 130
    (run_dir,) = (logs / "ppo").iterdir()
    assert run_dir.name.endswith("_interrupted")
    assert json.loads((run_dir / "summary.json").read_text())["interrupted"] is True
    assert main([*argv[:4], *TINY, "-f", str(logs), "--hyperparams", *TINY_PPO]) == 0  # the same run, not interrupted
    names = sorted(p.name for p in (logs / "ppo").iterdir())
    assert names == ["ZooUserCorridor-v0_escort-p2_s0", "ZooUserCorridor-v0_escort-p2_s0_interrupted"]
