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
from experiments.errors import UsageError
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
    expand_seeds,
    kwargs_tag,
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
    return make_study(configs, options.study, options.tune).folder


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


def test_env_kwargs_give_runs_distinct_stable_file_system_safe_names():
    kwargs = [{}, {"slip": 0.1}, {"slip": 0.2}, {"subgoals": []}, {"subgoals": [[1, 2]]}, {"slip": 0.1, "subgoals": []},
              {"render_mode": "rgb array"}, {f"key{i}": 0.5 for i in range(10)}]  # fmt: skip
    names = [run_key(RunConfig(env_kwargs=kw)) for kw in kwargs]
    assert len(set(names)) == len(names) and names[0] == "ppo_FourRooms-v0_escort-p2_s0"
    assert names[1] == "ppo_FourRooms-v0_escort-p2_s0_slip-0.1" and names[3] == "ppo_FourRooms-v0_escort-p2_s0_subgoals-[]"
    assert all(re.fullmatch(r"[A-Za-z0-9_.+\-\[\]]+", n) and len(n) < 80 for n in names)
    assert kwargs_tag({"subgoals": [], "slip": 0.1}) == kwargs_tag({"slip": 0.1, "subgoals": []}) == "slip-0.1_subgoals-[]"
    assert re.fullmatch(r"kwargs-[0-9a-f]{6}", kwargs_tag(kwargs[-1]))
    grid = expand_seeds([RunConfig(env_kwargs=kw) for kw in kwargs[:3]], [2])
    assert len(grid) == 6 and len({run_key(c) for c in grid}) == 6  # variants of an env are never one run


def test_runs_of_one_study_may_have_their_own_budgets_and_a_changed_budget_is_refused(tmp_path):
    configs = [
        RunConfig(env_kwargs=kw, n_timesteps=n, log_folder=str(tmp_path)) for kw, n in (({}, 100), ({"slip": 0.1}, 200))
    ]
    study = make_study(configs, "mixed")
    save_spec(study)
    runs = yaml.safe_load((study.folder / STUDY_FILE).read_text())["runs"]
    assert [(r["env_kwargs"], r["n_timesteps"]) for r in runs] == [({}, 100), ({"slip": 0.1}, 200)]
    with pytest.raises(UsageError, match="n_timesteps=200 for ppo_FourRooms-v0_escort-p2_s0_slip-0.1"):
        save_spec(
            make_study([configs[0], RunConfig(env_kwargs={"slip": 0.1}, n_timesteps=300, log_folder=str(tmp_path))], "mixed")
        )


@pytest.mark.parametrize(
    "argv",
    [
        ["--seeds", "0"],
        ["--seeds", "2", "-1"],
        ["--seeds", "2", "--workers", "0"],
        ["--cluster", "no-port"],
        ["--seeds", "100001"],
        ["--seeds", "1000000000000"],
    ],
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


def test_a_study_stored_with_a_shared_budget_and_env_kwargs_resumes_or_refuses_in_one_line(tmp_path):
    study = make_study(parse_configs(["-f", str(tmp_path), "--seeds", "2", "-n", "100"]), "old")
    save_spec(study)
    spec = yaml.safe_load((study.folder / STUDY_FILE).read_text())  # as written when these were shared settings
    spec["settings"].update(n_timesteps=100, env_kwargs={})
    spec["runs"] = [{k: v for k, v in r.items() if k not in ("n_timesteps", "env_kwargs")} for r in spec["runs"]]
    write_yaml(study.folder / STUDY_FILE, spec)
    save_spec(study)
    runs = yaml.safe_load((study.folder / STUDY_FILE).read_text())["runs"]
    assert len(runs) == 2 and all(r["n_timesteps"] == 100 and r["env_kwargs"] == {} for r in runs)
    write_yaml(study.folder / STUDY_FILE, spec)
    with pytest.raises(UsageError, match="n_timesteps=100"):
        save_spec(make_study(parse_configs(["-f", str(tmp_path), "--seeds", "2", "-n", "200"]), "old"))
    spec["settings"]["env_kwargs"] = {"slip": 0.1}
    write_yaml(study.folder / STUDY_FILE, spec)
    with pytest.raises(UsageError, match="without their env kwargs"):
        save_spec(study)


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
    assert list(table.columns) == ["study", "env", "env_kwargs", "algo", "policy", "p", "seed", "timesteps", "metric", "value"]
    assert table["env_kwargs"].isna().all()  # no env kwargs: an empty cell
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
def test_a_study_with_a_bad_hyperparameter_exits_2_before_any_run(tmp_path, capfd, hyperparams, needle):
    argv = ["-f", str(tmp_path), *TINY, *hyperparams, "--policy", "softmax", "escort", "--seeds", "2", "--workers", "1"]
    assert main([*argv, "--verbose", "1"]) == 2  # the study's header line waits until its runs are checked
    out, err = capfd.readouterr()
    assert out == ""
    err = err.strip()
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


TUNE_TINY = [
    "--algo", "ppo", "--env", "CartPole-v1", "-n", "256", "--n-envs", "2", "--eval-freq", "128", "--eval-episodes", "2",
    "--verbose", "0", "--hyperparams", "n_steps=64", "batch_size=64", "n_epochs=1",
]  # fmt: skip


def _configs(folder: Path) -> dict[str, dict]:
    return {p.name: yaml.safe_load((p / "config.yml").read_text()) for p in (folder / RUNS_DIR).iterdir()}


def test_tune_then_test_selects_on_tuning_seeds_runs_final_seeds_with_the_selection_and_reruns_nothing(tmp_path, capsys):
    from experiments.tuning import SELECTED_FILE, TUNING_DIR, make_spec, select

    common = ["-f", str(tmp_path), *TUNE_TINY, "--policy", "softmax", "escort", "--seeds", "2", "--tune-seeds", "2",
              "--workers", "2", "--reps", "100"]  # fmt: skip
    argv = [*common, "--tune", "learning_rate=3e-4,3e-3"]
    assert main([*argv, "--verbose", "1"]) == 0
    folder = _study_folder(argv)
    out = capsys.readouterr().out
    assert out.startswith(f"study {folder.name}: 4 runs in {folder}, on a local Dask cluster")  # then the runs
    assert "tuning 8/8 runs complete" in out and "final 4/4 runs complete" in out
    selected = yaml.safe_load((folder / SELECTED_FILE).read_text())
    groups = {g["policy"]: g for g in selected["groups"]}
    assert set(groups) == {"softmax", "escort"} and selected["metric"] == "auc"
    for group in groups.values():
        assert [s["point"]["learning_rate"] for s in group["scores"]] == [3e-4, 3e-3]
        assert group["selected"] == max(group["scores"], key=lambda s: s["iqm"])["point"]
        assert group["normalised"] and all(s["ci"][0] <= s["iqm"] <= s["ci"][1] and s["runs"] == 2 for s in group["scores"])
    tuning_runs, final_runs = _configs(folder / TUNING_DIR), _configs(folder)
    assert len(tuning_runs) == 8 and len(final_runs) == 4
    tuning_seeds = {c["seed"] for c in tuning_runs.values()}
    assert tuning_seeds == set(selected["tuning_seeds"]) and not tuning_seeds & {c["seed"] for c in final_runs.values()}
    assert {(c["policy"], c["hyperparams"]["learning_rate"]) for c in tuning_runs.values()} == {
        (p, lr) for p in ("softmax", "escort") for lr in (3e-4, 3e-3)
    }
    for config in final_runs.values():  # the final runs use their group's selection, on the --seeds seeds
        assert config["seed"] in (0, 1)
        assert config["resolved_hyperparams"]["learning_rate"] == groups[config["policy"]]["selected"]["learning_rate"]
    spec = make_spec(["learning_rate=3e-4,3e-3"], 2, "auc", False)  # the selection follows from the tuning table alone
    again = select(pd.read_csv(folder / TUNING_DIR / RESULTS_FILE), spec, {}, reps=100)
    assert {s.group["policy"]: s.selected for s in again} == {p: g["selected"] for p, g in groups.items()}
    assert set(pd.read_csv(folder / RESULTS_FILE)["seed"]) == {0, 1}  # the report compares the final runs alone
    report = (folder / "report.md").read_text()
    assert "## Tuning" in report and "learning_rate=" in report and (folder / "sensitivity.png").stat().st_size > 1000
    assert (folder / TUNING_DIR / "report.md").exists()
    before = {**_inodes(folder), **_inodes(folder / TUNING_DIR)}
    text = (folder / SELECTED_FILE).read_text()
    assert main([*argv, "--no-report"]) == 0
    out = capsys.readouterr().out
    assert (
        "tuning 8/8 runs complete (0 new, 8 already done)" in out and "final 4/4 runs complete (0 new, 4 already done)" in out
    )
    assert {**_inodes(folder), **_inodes(folder / TUNING_DIR)} == before and (folder / SELECTED_FILE).read_text() == text
    changed = [*common, "--tune", "learning_rate=3e-4,1e-2", "--study", folder.name]
    assert main(changed) == 2  # another grid in the same folder is refused before anything runs
    assert "choose another --study name" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("tune", "needle"),
    [
        (["unknown_key=1,2"], "unknown_key"),
        (["learning_rate=fast,1e-3"], "fast"),
        (["optimizer=sgd,adagrad"], "adagrad"),
        (["learning_rate=[1e-3"], "not valid YAML"),
        (["learning_rate=1e-3,1e-4", "--seeds", "5", "1000000"], "below 1000000"),
        (["n_steps=64,128"], "also given in --hyperparams"),
    ],
)
def test_a_bad_tuning_grid_exits_2_with_one_line_before_anything_runs(tmp_path, capfd, tune, needle):
    argv = ["-f", str(tmp_path), *TUNE_TINY, "--policy", "softmax", "escort", "--workers", "1", "--verbose", "1", "--tune"]
    assert main([*argv, *tune]) == 2
    out, err = capfd.readouterr()
    assert out == ""
    err = err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("train.py: error:") and needle in err
    assert not list(tmp_path.rglob("*"))


def test_an_interrupted_run_is_never_complete_and_a_worker_does_not_return_it(tmp_path):
    from experiments.study import run_remote

    study = make_study(parse_configs([*TINY, "--seeds", "2", "-f", str(tmp_path)]))
    finished, interrupted = (run_key(c) for c in study.configs)
    store_run(study.runs_dir, finished, {"summary.json": b'{"timesteps": 256}'})
    store_run(study.runs_dir, interrupted, {"summary.json": b'{"timesteps": 100, "interrupted": true}'})
    assert complete_runs(study.folder) == {finished}
    assert [run_key(c) for c in study.pending()] == [interrupted]
    # a run interrupted on a worker (its env raises KeyboardInterrupt) comes back as an error, never as files to store
    package = tmp_path / "interrupting_envs.py"
    package.write_text(
        "import gymnasium as gym\n"
        "from gymnasium.envs.classic_control import CartPoleEnv\n"
        "class Interrupting(CartPoleEnv):\n"
        "    def step(self, action):\n"
        "        raise KeyboardInterrupt\n"
        "gym.register('StudyInterrupting-v0', entry_point=Interrupting, max_episode_steps=50)\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        config = RunConfig(
            env="StudyInterrupting-v0", gym_packages=["interrupting_envs"], n_timesteps=64, n_envs=1, eval_freq=0
        )
        with pytest.raises(RuntimeError, match="interrupted"):
            run_remote(config.to_dict())
    finally:
        sys.path.remove(str(tmp_path))
