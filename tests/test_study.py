"""Studies on a real Dask cluster (127.0.0.1): results and report, SIGKILL then resume, an external scheduler, failures;
and checkpoints of single runs with --resume."""

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from experiments.cli import is_study, main, parse_command, parse_configs
from experiments.config import RunConfig
from experiments.reference import model_reference, table_reference
from experiments.results import write_yaml
from experiments.study import (
    FAILED_DIR,
    RESULT_COLUMNS,
    RESULTS_FILE,
    RUNS_DIR,
    STUDY_FILE,
    complete_runs,
    default_name,
    make_study,
    run_key,
    save_spec,
    store_run,
    write_results,
)

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--algo", "ppo", "--env", "FourRooms-v0", "-n", "256", "--n-envs", "2", "--eval-freq", "128", "--eval-episodes", "1",
    "--verbose", "0", "--hyperparams", "n_steps=64", "batch_size=64", "n_epochs=1",
]  # fmt: skip
RUN_COLUMNS = ["algo", "env", "policy", "p", "seed"]


def _study_folder(argv: list[str]) -> Path:
    configs, options = parse_command(argv)
    return make_study(configs, options.study).folder


def _inodes(folder: Path) -> dict[str, int]:
    return {name: (folder / RUNS_DIR / name).stat().st_ino for name in complete_runs(folder)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_seeds_expand_the_grid_and_identical_runs_appear_once():
    configs = parse_configs(["--policy", "softmax", "escort", "--p", "2", "3", "--seeds", "3"])
    names = [run_key(c) for c in configs]
    assert len(names) == len(set(names)) == 9  # softmax ignores p: 3 softmax + 3 escort-p2 + 3 escort-p3
    assert sorted({c.seed for c in configs}) == [0, 1, 2]
    assert [c.seed for c in parse_configs(["--seeds", "4", "7"])] == [4, 7]
    assert default_name(configs) == "ppo_FourRooms-v0_softmax+escort-p2+escort-p3_s0-2"
    name = default_name(parse_configs(["--seeds", "4", "7", "-n", "100"]))
    assert re.fullmatch(r"ppo_FourRooms-v0_escort-p2_2seeds-[0-9a-f]{6}_n100", name)
    assert not is_study(*parse_command(["--seeds", "1"])) and is_study(*parse_command(["--study", "one-run"]))


@pytest.mark.parametrize(
    "argv", [["--seeds", "0"], ["--seeds", "2", "-1"], ["--seeds", "2", "--workers", "0"], ["--cluster", "no-port"]]
)
def test_bad_study_input_is_one_line_exit_2(tmp_path, capsys, argv):
    assert main(["-f", str(tmp_path), *TINY, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("train.py: error:")
    assert not list(tmp_path.rglob("*.yml"))


def test_store_run_is_atomic_and_partial_folders_do_not_count(tmp_path):
    runs = tmp_path / RUNS_DIR
    (runs / "b.tmp").mkdir(parents=True)
    (runs / "b.tmp" / "summary.json").write_text("{}")
    (runs / "c").mkdir()
    store_run(runs, "a", {"summary.json": b"{}", "tb/events": b"x"})
    assert complete_runs(tmp_path) == {"a"}
    assert (runs / "a" / "tb" / "events").read_bytes() == b"x" and not (runs / "a.tmp").exists()
    with pytest.raises(ValueError, match="summary.json"):
        store_run(runs, "d", {"model.zip": b""})


def test_a_study_folder_refuses_other_settings(tmp_path):
    configs = parse_configs(["-f", str(tmp_path), "--seeds", "2", "-n", "100"])
    study = make_study(configs, "mine")
    save_spec(study)
    more = make_study(parse_configs(["-f", str(tmp_path), "--seeds", "3", "-n", "100"]), "mine")
    save_spec(more)
    assert len(yaml.safe_load((study.folder / STUDY_FILE).read_text())["runs"]) == 3
    with pytest.raises(Exception, match="n_timesteps=100"):
        save_spec(make_study(parse_configs(["-f", str(tmp_path), "--seeds", "2", "-n", "200"]), "mine"))


def test_two_policies_two_seeds_study_writes_runs_table_and_report(tmp_path, capsys):
    argv = ["-f", str(tmp_path), *TINY, "--policy", "softmax", "escort", "--seeds", "2", "--workers", "2", "--reps", "200"]
    assert main(argv) == 0
    folder = _study_folder(argv)
    out = capsys.readouterr().out
    assert "4/4 runs complete" in out and str(folder / "report.md") in out
    expected = {"ppo_FourRooms-v0_softmax_s0", "ppo_FourRooms-v0_softmax_s1", "ppo_FourRooms-v0_escort-p2_s0",
                "ppo_FourRooms-v0_escort-p2_s1"}  # fmt: skip
    assert {p.name for p in (folder / RUNS_DIR).iterdir()} == expected
    table = pd.read_csv(folder / RESULTS_FILE)
    assert list(table.columns) == ["study", "env", "algo", "policy", "p", "seed", "timesteps", "metric", "value"]
    assert set(table["study"]) == {folder.name}
    assert len(table.drop_duplicates(RUN_COLUMNS)) == 4
    assert not table.duplicated([*RUN_COLUMNS, "timesteps", "metric"]).any()
    for run_dir in (folder / RUNS_DIR).iterdir():
        config = yaml.safe_load((run_dir / "config.yml").read_text())
        rows = table[(table["policy"] == config["policy"]) & (table["seed"] == config["seed"])]
        assert {"eval_return", "final_return", "fraction_of_optimal", "wall_time", "fps"} <= set(rows["metric"])
        assert sorted(rows.loc[rows["metric"] == "eval_return", "timesteps"]) == [128, 256]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert rows.loc[rows["metric"] == "final_return", "value"].item() == pytest.approx(summary["final_return"])
        normalized = rows[rows["metric"] == "normalized_score"]  # the greedy policy's V(rho) between V^uniform and V*
        assert normalized["value"].item() == pytest.approx(
            model_reference("FourRooms-v0", {}).normalize(summary["greedy_value"])
        )
        assert normalized["timesteps"].item() == rows["timesteps"].max() == 256
        assert rows.loc[rows["metric"] == "eval_deterministic", "value"].item() == 1.0
    report = (folder / "report.md").read_text()
    assert "| escort-p2 | softmax |" in report and "V*" in report and "IQM" in report
    for png in ("curves.png", "aggregates.png", "improvement.png", "profiles.png"):
        assert (folder / png).stat().st_size > 1000
    before = _inodes(folder)
    assert main([*argv, "--no-report"]) == 0
    assert "0 new, 4 already done" in capsys.readouterr().out
    assert _inodes(folder) == before


def test_sigkilled_study_resumes_with_every_run_exactly_once(tmp_path):
    argv = ["-f", str(tmp_path), *TINY, "--policy", "softmax", "escort", "--seeds", "2", "--workers", "2", "--no-report"]
    folder = _study_folder(argv)
    proc = subprocess.Popen(
        [sys.executable, "train.py", *argv], cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait(lambda: len(complete_runs(folder)) >= 1 or proc.poll() is not None, 180, "a complete run")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = _inodes(folder)
    assert 1 <= len(done_before) < 4, proc.stderr.read().decode()[-2000:]
    assert main(argv) == 0
    runs = sorted(p.name for p in (folder / RUNS_DIR).iterdir())
    assert len(runs) == 4 and not [r for r in runs if r.endswith(".tmp")]
    assert {k: v for k, v in _inodes(folder).items() if k in done_before} == done_before  # complete runs were not redone
    table = pd.read_csv(folder / RESULTS_FILE)
    assert len(table.drop_duplicates(RUN_COLUMNS)) == 4
    assert not table.duplicated([*RUN_COLUMNS, "timesteps", "metric"]).any()
    assert (table["metric"] == "final_return").sum() == 4


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    workdir = tmp_path_factory.mktemp("worker")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = {"cwd": workdir, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen(["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **common)]
    procs.append(
        subprocess.Popen(
            [
                "dask",
                "worker",
                address,
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
                "--local-directory",
                str(workdir),
            ],
            **common,
        )  # fmt: skip
    )
    yield address
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_study_on_an_external_scheduler(tmp_path, scheduler):
    argv = ["-f", str(tmp_path), *TINY, "--policy", "softmax", "escort", "--cluster", scheduler, "--no-report"]
    assert main(argv) == 0
    folder = _study_folder(argv)
    assert complete_runs(folder) == {"ppo_FourRooms-v0_softmax_s0", "ppo_FourRooms-v0_escort-p2_s0"}
    config = yaml.safe_load((folder / RUNS_DIR / "ppo_FourRooms-v0_softmax_s0" / "config.yml").read_text())
    assert config["policy"] == "softmax" and config["resolved_hyperparams"]["n_steps"] == 64


def test_a_run_that_raises_is_recorded_and_retried_not_fatal(tmp_path, scheduler, capsys):
    # max_grad_norm is used only in the first update (a ValueError there, not a usage error caught before the study)
    argv = ["-f", str(tmp_path), *TINY, "max_grad_norm=x", "--policy", "softmax", "escort", "--cluster", scheduler,
            "--retries", "1", "--no-report"]  # fmt: skip
    assert main(argv) == 1
    folder = _study_folder(argv)
    assert complete_runs(folder) == set()
    for name in ("ppo_FourRooms-v0_softmax_s0", "ppo_FourRooms-v0_escort-p2_s0"):
        errors = (folder / FAILED_DIR / f"{name}.txt").read_text()
        assert errors.count("--- attempt ") == 2 and "could not convert string to float" in errors
    out = capsys.readouterr().out
    assert "0/2 runs complete" in out and "2 failed" in out


@pytest.mark.parametrize(
    ("hyperparams", "needle"),
    [(["unknown_key=1"], "unknown_key"), (["learning_rate=fast"], "fast"), (["batch_size=0"], "batch_size")],
)
def test_a_study_with_a_bad_hyperparameter_exits_2_before_any_run(tmp_path, capsys, hyperparams, needle):
    argv = ["-f", str(tmp_path), *TINY, *hyperparams, "--policy", "softmax", "escort", "--seeds", "2", "--workers", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("train.py: error: run ppo_FourRooms-v0_") and needle in err
    assert not list(tmp_path.rglob("*"))


def _checkpoint_args(logs: Path) -> list[str]:
    return ["--algo", "ppo", "--env", "FourRooms-v0", "--policy", "escort", "-n", "6144", "--n-envs", "2", "--eval-freq", "0",
            "--checkpoint-freq", "256", "-f", str(logs), "--verbose", "0", "--hyperparams", "n_steps=64", "batch_size=64",
            "n_epochs=1"]  # fmt: skip


def _steps(checkpoint) -> int:
    return -1 if checkpoint is None else checkpoint.steps


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    from experiments.checkpoints import checkpoint_dir, latest_checkpoint

    argv = _checkpoint_args(tmp_path)
    config = RunConfig(algo="ppo", env="FourRooms-v0", policy="escort", log_folder=str(tmp_path))
    assert main([*argv, "--resume"]) == 2  # nothing to resume yet
    proc = subprocess.Popen([sys.executable, "train.py", *argv], cwd=ROOT, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        ready = lambda: _steps(latest_checkpoint(checkpoint_dir(config))) >= 2048 or proc.poll() is not None  # noqa: E731
        _wait(ready, 180, "a checkpoint")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    start = latest_checkpoint(checkpoint_dir(config))
    assert start is not None and 2048 <= start.steps < 6144
    assert not (tmp_path / "ppo" / config.run_name).exists()
    assert main([*argv, "--resume"]) == 0
    run_dir = tmp_path / "ppo" / config.run_name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["timesteps"] == 6144
    monitor = pd.read_csv(next(run_dir.glob("*monitor.csv")), skiprows=1)
    assert monitor["l"].sum() <= 6144 - start.steps  # only the remaining steps were trained
    assert not checkpoint_dir(config).exists()


def test_exact_runs_give_escape_time_and_wall_time_rows(tmp_path):
    from experiments.run import run
    from experiments.study import run_rows

    config = RunConfig(algo="exact", env="Bandit-v0", policy="escort", n_timesteps=300, log_folder=str(tmp_path), verbose=0)
    summary = run(config, tmp_path / "run")
    rows = pd.DataFrame(run_rows("s", tmp_path / "run"), columns=list(RESULT_COLUMNS))
    escape = rows[rows["metric"] == "escape_time"]
    assert summary["escape_time"] is not None and escape["value"].tolist() == [summary["escape_time"]]
    assert rows.loc[rows["metric"] == "wall_time", "value"].item() == pytest.approx(summary["wall_time"])
    assert (rows["metric"] == "value").sum() > 10 and set(rows["algo"]) == {"exact"}
    normalized = rows.loc[rows["metric"] == "normalized_score", "value"].item()
    assert normalized == pytest.approx((summary["final_value"] - 2 / 3) / (1 - 2 / 3))  # uniform: V = 2/3; V* = 1
    assert "eval_deterministic" not in set(rows["metric"])  # exact runs evaluate the stochastic policy, always
    assert rows.loc[rows["metric"] == "reference_target", "value"].item() == pytest.approx(summary["optimal_value"])


def _copy_run(run_dir: Path, folder: Path) -> None:
    shutil.copytree(run_dir, folder / RUNS_DIR / run_dir.name)
    write_yaml(folder / STUDY_FILE, {"name": folder.name, "settings": {}, "runs": []})


def test_a_runs_normalized_score_does_not_depend_on_the_other_runs_of_its_study(tmp_path):
    from experiments.run import run

    runs = {}
    for policy in ("softmax", "escort"):
        config = RunConfig(algo="ppo", env="CartPole-v1", policy=policy, n_timesteps=256, n_envs=2, eval_freq=0,
                           eval_episodes=3, log_folder=str(tmp_path / "logs"), verbose=0,
                           hyperparams={"n_steps": 64, "batch_size": 64, "n_epochs": 1})  # fmt: skip
        runs[policy] = Path(run(config)["run_dir"])
    _copy_run(runs["softmax"], tmp_path / "alone")
    for run_dir in runs.values():
        _copy_run(run_dir, tmp_path / "both")
    tables = {name: pd.read_csv(write_results(tmp_path / name)) for name in ("alone", "both")}
    scores = {name: t[t["metric"] == "normalized_score"].set_index("policy")["value"] for name, t in tables.items()}
    assert scores["alone"]["softmax"] == scores["both"]["softmax"]
    for policy, run_dir in runs.items():  # CartPole's reference: the uniform-random policy's return and the maximum, 500
        final = json.loads((run_dir / "summary.json").read_text())["final_return"]
        random = table_reference("CartPole-v1", {}).random
        assert scores["both"][policy] == pytest.approx((final - random) / (500 - random))
    assert scores["both"].max() < 1  # a study's best run is not 1 by construction


@pytest.mark.parametrize("live", [False, True])
def test_progress_shows_done_running_failed_and_eta(live):
    from experiments.study import StudyProgress

    stream = io.StringIO()
    progress = StudyProgress(total=5, done=1, stream=stream, live=live)
    time.sleep(0.2)
    progress.update(done=2, running=2, failed=1)
    progress.close()
    eta = re.search(r"2 done, 2 running, 1 failed, ETA (\d+\.\d)s", stream.getvalue())
    assert eta is not None and 0.2 <= float(eta.group(1)) < 5  # two runs finished in ~0.2 s, two are left
    assert "3/5" in stream.getvalue()  # runs finished, failed included
