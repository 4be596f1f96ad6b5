"""train.py end to end: run folders, provenance, summaries, learning, determinism, and one-line errors for bad input."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from experiments.cli import main, parse_configs
from experiments.config import RunConfig
from experiments.errors import UsageError
from experiments.results import read_metrics
from experiments.run import CODE_PATHS, run

ROOT = Path(__file__).resolve().parent.parent
TINY = ["-n", "1024", "--n-envs", "4", "--eval-freq", "512", "--eval-episodes", "2", "--verbose", "0"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--hyperparams", "batch_size=0"], "batch_size"),
        (["--hyperparams", "n_steps=0"], "n_steps"),
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
    assert not logs.exists()


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
    assert "fraction_of_optimal" in summary and summary["timesteps"] >= 1024
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


@pytest.mark.parametrize("policy", ["softmax", "escort"])
def test_quickstart_budget_reaches_v_star_without_subgoals(tmp_path, policy):
    # the Quickstart run (50k steps) on the sub-goal-free env: every seed of both policies reaches V*, 20k steps do not
    argv = ["--policy", policy, "--env", "FourRooms-v0", "--env-kwargs", "subgoals=[]", "--num-threads", "1"]
    assert main([*argv, "--eval-freq", "0", "--verbose", "0", "-f", str(tmp_path)]) == 0
    (run_dir,) = (tmp_path / "ppo").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["timesteps"] >= 50_000
    assert summary["fraction_of_optimal"] >= 0.95


def test_num_threads_sets_torch_threads_and_config_records_the_threads_in_effect(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    for threads in ("2", "1", "-1"):  # -1 leaves torch's setting, here 1 from the run before
        logs = tmp_path / threads
        assert (
            main(["--env", "FourRooms-v0", "--num-threads", threads, "-f", str(logs), *TINY, "-n", "512", "--eval-freq", "0"])
            == 0
        )
        (run_dir,) = (logs / "ppo").iterdir()
        config = yaml.safe_load((run_dir / "config.yml").read_text())
        record = config["provenance"]
        assert config["num_threads"] == int(threads)
        assert record["torch_num_threads"] == torch.get_num_threads() == max(int(threads), 1)
        assert record["torch_num_interop_threads"] == torch.get_num_interop_threads()
        assert record["OMP_NUM_THREADS"] == "1" and record["MKL_NUM_THREADS"] is None


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()


def test_config_records_the_commit_dirty_flag_and_hyperparams_hash(fourrooms_run):
    record = yaml.safe_load((fourrooms_run / "config.yml").read_text())["provenance"]
    assert record["hyperparams_file"] == "hyperparams/ppo.yml"
    assert record["hyperparams_sha256"] == hashlib.sha256((ROOT / "hyperparams" / "ppo.yml").read_bytes()).hexdigest()
    if not _git("rev-parse", "HEAD"):
        pytest.skip("not a git checkout")
    assert record["git_commit"] == _git("rev-parse", "HEAD")
    assert isinstance(record["git_dirty"], bool)
    assert record["git_dirty"] == bool(_git("status", "--porcelain", "--", *CODE_PATHS))


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["022", "077"])
def test_run_folders_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        assert main(["--env", "FourRooms-v0", "-f", str(tmp_path / "logs"), *TINY]) == 0
    finally:
        os.umask(previous)
    (run_dir,) = (tmp_path / "logs" / "ppo").iterdir()
    for folder in (tmp_path / "logs", run_dir.parent, run_dir):
        assert folder.stat().st_mode & 0o777 == 0o777 & ~umask


@pytest.mark.parametrize("existing", [(), ("logs",), ("logs", "logs/ppo")])
def test_failed_run_leaves_the_log_folder_as_it_was(tmp_path, existing):
    for name in existing:
        (tmp_path / name).mkdir()
    # n_steps=0 passes validate() and resolve(); the model's constructor rejects it
    hyperparams = {"n_steps": 0}
    config = RunConfig(env="CartPole-v1", n_timesteps=1024, hyperparams=hyperparams, log_folder=str(tmp_path / "logs"))
    with pytest.raises((AssertionError, UsageError)):
        run(config)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == sorted(existing)


def test_failed_run_in_the_runner_is_one_line_and_leaves_nothing(tmp_path, capsys):
    logs = tmp_path / "logs"
    assert main(["--env", "CartPole-v1", "-f", str(logs), *TINY, "--hyperparams", "not_an_argument=3"]) == 2
    assert "hyperparameters do not fit" in capsys.readouterr().err
    assert not logs.exists()


def test_single_run_summary_carries_its_normalized_score(tmp_path):
    summary = run(
        RunConfig(
            env="CartPole-v1", n_timesteps=512, n_envs=2, eval_freq=0, eval_episodes=2, verbose=0, log_folder=str(tmp_path)
        )
    )
    written = json.loads((Path(summary["run_dir"]) / "summary.json").read_text())
    random, target = written["reference_random"], written["reference_target"]
    assert target == 500.0 and 0 < random < 100
    assert written["normalized_score"] == pytest.approx((written["final_return"] - random) / (target - random))
    assert written["eval_deterministic"] == 1.0
