"""train.py end to end: run folders, resolved config, summaries, determinism, and one-line errors for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from experiments.cli import main, parse_configs
from experiments.results import read_metrics

ROOT = Path(__file__).resolve().parent.parent
TINY = ["-n", "1024", "--n-envs", "4", "--eval-freq", "512", "--eval-episodes", "2", "--verbose", "0"]


def _files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--env", "FourRoom-v0"], "FourRooms-v0"),
        (["--env", "Pendulum-v1"], "Discrete"),
        (["--p", "0"], "--p"),
        (["--p", "-1.5"], "--p"),
        (["--p", "nan"], "--p"),
        (["--algo", "dqn"], "unknown algorithm"),
        (["--policy", "sparsemax"], "--policy sparsemax"),
        (["--algo", "ppo", "--policy", "neurd"], "--policy neurd"),
        (["--hyperparams", "learning_rate"], "key=value"),
        (["--hyperparams", "net_arch=[64,"], "not valid YAML"),
        (["--hyperparams", "not_an_argument=3"], "hyperparameters do not fit"),
        (["--env-kwargs", "slip=2.0"], "env-kwargs"),
        (["--n-timesteps", "-5"], "--n-timesteps"),
        (["--seed", "abc"], "invalid int"),
        (["--num-threads", "0"], "--num-threads"),
        (["--num-threads", "-3"], "--num-threads"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, needle):
    logs = tmp_path / "logs"
    status = main(["-f", str(logs), *TINY, *argv])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1 and err.startswith("train.py: error:")
    assert needle in err
    assert not [p for p in _files(logs) if p.is_file()]


def test_unwritable_log_folder(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["-f", str(blocker / "logs"), *TINY]) == 2
    assert "--log-folder" in capsys.readouterr().err
    assert blocker.read_text() == ""


def test_cli_has_no_traceback_and_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "train.py", "--policy", "escort", "--env", "FourRooms-v0", "--p", "0", "-f", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_grid_flags_expand_to_configs():
    configs = parse_configs(["--policy", "softmax", "escort", "--p", "2", "3", "--hyperparams", "learning_rate=1e-3"])
    assert [(c.policy, c.p) for c in configs] == [("softmax", 2.0), ("escort", 2.0), ("escort", 3.0)]  # p is escort's only
    assert configs[0].hyperparams == {"learning_rate": 1e-3}


@pytest.fixture(scope="module")
def fourrooms_run(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    assert main(["--policy", "escort", "--env", "FourRooms-v0", "--seed", "3", "-f", str(logs), *TINY]) == 0
    (run_dir,) = (logs / "ppo").iterdir()
    return run_dir


def test_run_folder_holds_model_config_evaluations_and_logs(fourrooms_run):
    assert fourrooms_run.name == "FourRooms-v0_escort-p2_s3"
    names = {p.name for p in fourrooms_run.iterdir()}
    assert {"model.zip", "config.yml", "summary.json", "metrics.csv", "evaluations.npz", "tb"} <= names
    assert any(n.endswith("monitor.csv") for n in names)
    config = yaml.safe_load((fourrooms_run / "config.yml").read_text())
    assert config["policy"] == "escort" and config["p"] == 2.0 and config["seed"] == 3
    resolved = config["resolved_hyperparams"]
    assert resolved["n_timesteps"] == 1024 and resolved["n_envs"] == 4 and "learning_rate" in resolved
    summary = json.loads((fourrooms_run / "summary.json").read_text())
    assert 0.0 <= summary["fraction_of_optimal"] <= 1.0 + 1e-9
    assert summary["timesteps"] >= 1024
    metrics = {m for _, m, _ in read_metrics(fourrooms_run)}
    assert {"eval_return", "final_return", "fraction_of_optimal", "fps"} <= metrics


def test_saved_model_loads_with_escort_class(fourrooms_run):
    from stable_baselines3 import PPO

    from policies import EscortActorCriticPolicy

    model = PPO.load(fourrooms_run / "model.zip", device="cpu")
    assert isinstance(model.policy, EscortActorCriticPolicy)
    assert model.policy.action_dist.p == 2.0


def test_same_seed_same_numbers(tmp_path):
    summaries = []
    for k in range(2):
        argv = ["--policy", "softmax", "--env", "FourRooms-v0", "--seed", "1", "-f", str(tmp_path / str(k)), *TINY]
        assert main(argv) == 0
        (run_dir,) = (tmp_path / str(k) / "ppo").iterdir()
        summaries.append((json.loads((run_dir / "summary.json").read_text()), np.load(run_dir / "evaluations.npz")["results"]))
    (a, ra), (b, rb) = summaries
    assert a["final_return"] == b["final_return"] and a["greedy_value"] == b["greedy_value"]
    np.testing.assert_array_equal(ra, rb)


def test_repeated_run_gets_a_new_folder(tmp_path):
    argv = ["--env", "CartPole-v1", "--algo", "a2c", "-f", str(tmp_path), *TINY]
    assert main(argv) == 0 and main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "a2c").iterdir()) == ["CartPole-v1_escort-p2_s0", "CartPole-v1_escort-p2_s0_2"]


def test_num_threads_sets_torch_threads_and_is_recorded(tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(["--env", "FourRooms-v0", "--num-threads", "1", "-f", str(tmp_path), *TINY]) == 0
        assert torch.get_num_threads() == 1
        (run_dir,) = (tmp_path / "ppo").iterdir()
        assert yaml.safe_load((run_dir / "config.yml").read_text())["num_threads"] == 1
        torch.set_num_threads(2)
        assert main(["--env", "FourRooms-v0", "-f", str(tmp_path), *TINY]) == 0  # -1: torch's setting is left alone
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
