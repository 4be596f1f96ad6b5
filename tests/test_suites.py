"""experiments.suites: the declared suites, their expansion on the command line (like --env, with budgets and env
kwargs), the studies they make, ``--suite list`` and one-line errors."""

import io
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from experiments.cli import main, parse_command
from experiments.errors import UsageError
from experiments.reference import model_reference, table_reference
from experiments.study import RESULTS_FILE, RUNS_DIR, STUDY_FILE, StudyOptions, make_study, run_study, save_spec
from experiments.suites import SUITES_FILE, apply_suites, format_suites, load_suites, study_groups

ROOT = Path(__file__).resolve().parent.parent
#: Suites the project promises, with at least these envs.
REQUIRED = {
    "classic": {"CartPole-v1", "Acrobot-v1"},
    "fourrooms": {"FourRooms-v0"},
    "minigrid": {"MiniGrid-DoorKey-5x5-v0", "MiniGrid-Unlock-v0", "MiniGrid-KeyCorridorS3R1-v0", "MiniGrid-Empty-8x8-v0"},
    "minatar": {f"MinAtar/{g}-v1" for g in ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")},
    "atari5": {f"{g}NoFrameskip-v4" for g in ("Pong", "Breakout", "Seaquest", "Qbert", "SpaceInvaders")},
}


def test_the_declared_suites_have_their_envs_budgets_and_measured_fps() -> None:
    suites, note = load_suites()
    for name, env_ids in REQUIRED.items():
        assert env_ids <= {e.env for e in suites[name].envs}, name
        assert all(e.n_timesteps >= 1 and e.fps and e.fps > 0 for e in suites[name].envs)
    assert len(suites["minigrid"].envs) >= 5 and suites["atari5"].hardware == "cluster"
    assert {e.n_timesteps for e in suites["atari5"].envs} == {10_000_000}
    fourrooms = [e.env_kwargs for e in suites["fourrooms"].envs]
    assert {} in fourrooms and {"subgoals": []} in fourrooms and {"slip": 0.1} in fourrooms
    assert "fps" in note


def test_every_env_of_every_suite_but_seaquest_has_a_reference() -> None:
    suites, _ = load_suites()
    missing = []
    for suite_env in (e for suite in suites.values() for e in suite.envs):
        reference = model_reference(suite_env.env, suite_env.env_kwargs) or table_reference(
            suite_env.env, suite_env.env_kwargs
        )
        if reference is None or not reference.target > reference.random:
            missing.append(suite_env.label)
    assert missing == ["MinAtar/Seaquest-v1"]  # no published target for MinAtar >= 1.0.11's Seaquest


def test_suite_minatar_expands_to_the_five_games_in_one_study() -> None:
    configs, options = parse_command(["--suite", "minatar", "--policy", "softmax", "escort", "--seeds", "2"])
    assert {c.env for c in configs} == REQUIRED["minatar"]
    assert len(configs) == 5 * 2 * 2 and {c.n_timesteps for c in configs} == {1_000_000}
    ((group, name),) = study_groups(configs, options.study)
    assert len(group) == len(configs) and name is None


def test_a_suite_combines_with_the_grid_and_n_overrides_every_budget() -> None:
    configs, _ = parse_command(
        ["--suite", "classic", "--algo", "ppo", "a2c", "--p", "1", "2", "--policy", "escort", "-n", "64"]
    )
    assert {(c.algo, c.env, c.p) for c in configs} == {
        (a, e, p) for a in ("ppo", "a2c") for e in REQUIRED["classic"] for p in (1.0, 2.0)
    }
    assert {c.n_timesteps for c in configs} == {64}


@pytest.mark.parametrize("suite", ["fourrooms", "classic", "minigrid"])
def test_envs_with_their_own_kwargs_and_budgets_make_one_study(suite: str, tmp_path: Path) -> None:
    argv = ["--suite", suite, "--env-kwargs", "max_episode_steps=150", "--seeds", "3", "-f", str(tmp_path)]
    configs, options = parse_command(argv)
    suites, _ = load_suites()
    declared = suites[suite].envs
    assert len(configs) == 3 * len(declared)
    assert sorted(str(c.env_kwargs) for c in configs[::3]) == sorted(
        str({**e.env_kwargs, "max_episode_steps": 150}) for e in declared
    )
    assert sorted(c.n_timesteps for c in configs[::3]) == sorted(e.n_timesteps for e in declared)
    ((group, name),) = study_groups(configs, options.study)
    assert len(group) == len(configs) and name is None
    study = make_study(group)
    assert len({study.key(c) for c in group}) == len(group)  # variants of an env never share a run folder
    save_spec(study)
    runs = yaml.safe_load((study.folder / STUDY_FILE).read_text())["runs"]
    assert sorted((r["env"], str(r["env_kwargs"]), r["n_timesteps"]) for r in runs[::3]) == sorted(
        (e.env, str({**e.env_kwargs, "max_episode_steps": 150}), e.n_timesteps) for e in declared
    )


def test_an_env_with_two_budgets_in_the_suites_given_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "suites.yml"
    path.write_text(
        "suites:\n"
        "  a: {envs: [{env: CartPole-v1, n_timesteps: 100}]}\n"
        "  b: {envs: [{env: CartPole-v1, n_timesteps: 200}, {env: Acrobot-v1, n_timesteps: 200}]}\n"
    )
    configs, _ = parse_command([])
    with pytest.raises(UsageError, match="CartPole-v1 has budgets 100 and 200"):
        apply_suites(configs, ["a", "b"], [], path)
    budgets = [(c.env, c.n_timesteps) for c in apply_suites(configs, ["b", "b"], [], path)]
    assert budgets == [("CartPole-v1", 200), ("Acrobot-v1", 200)]


def test_several_suites_add_up_and_a_suite_given_twice_counts_once() -> None:
    configs, _ = parse_command(["--suite", "classic", "minatar", "classic"])
    assert [c.env for c in configs[:2]] == ["CartPole-v1", "Acrobot-v1"]
    assert {c.env for c in configs} == REQUIRED["classic"] | REQUIRED["minatar"] and len(configs) == 7


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--suite", "nope"], "unknown suite 'nope'"),
        (["--suite", "classic", "--env", "CartPole-v1"], "give one of them"),
        (["--suite", "list", "classic"], "give it alone"),
    ],
)
def test_bad_suite_arguments_are_one_line_and_exit_2(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert main([*argv, "-f", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not any(tmp_path.iterdir())
    with pytest.raises(UsageError):
        parse_command(argv)


def test_suite_list_prints_every_suite_env_budget_and_cpu_time() -> None:
    out = subprocess.run(
        [sys.executable, "train.py", "--suite", "list"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    suites, note = load_suites()
    assert out.strip() == format_suites(suites.values(), note).strip()
    for suite in suites.values():
        assert f"{suite.name}: " in out
        assert all(e.env in out and f"{e.n_timesteps:,}" in out for e in suite.envs)
    assert "cluster or GPU" in out and "total per policy and seed" in out
    minatar = suites["minatar"]
    assert minatar.cpu_seconds == pytest.approx(sum(e.n_timesteps / e.fps for e in minatar.envs))


def test_a_malformed_suites_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "suites.yml"
    bad.write_text(SUITES_FILE.read_text().replace("n_timesteps: 100000", "n_timesteps: lots", 1))
    with pytest.raises(UsageError, match="n_timesteps"):
        load_suites(bad)


def test_a_suite_study_runs_and_reports_every_env(tmp_path: Path) -> None:
    argv = ["--suite", "classic", "--policy", "softmax", "-n", "64", "--n-envs", "2", "--seeds", "1", "--workers", "1"]
    argv += ["--hyperparams", "n_steps=32", "batch_size=64", "--eval-episodes", "1", "--no-report", "-f", str(tmp_path)]
    assert main([*argv, "--study", "cl", "--verbose", "0"]) == 0
    studies = sorted(p.name for p in (tmp_path / "studies").iterdir())
    assert studies == ["cl"]
    runs = sorted(p.name for p in (tmp_path / "studies" / "cl" / "runs").iterdir())
    assert runs == ["ppo_Acrobot-v1_softmax_s0", "ppo_CartPole-v1_softmax_s0"]


def test_a_suite_of_variants_with_their_own_budgets_runs_as_one_study_and_reports_each_variant(tmp_path: Path) -> None:
    path = tmp_path / "suites.yml"
    path.write_text(
        "suites:\n"
        "  tiny:\n"
        "    envs:\n"
        "      - {env: FourRooms-v0, n_timesteps: 64}\n"
        "      - {env: FourRooms-v0, n_timesteps: 128, env_kwargs: {slip: 0.1}}\n"
        "      - {env: CartPole-v1, n_timesteps: 64}\n"
    )
    argv = ["--policy", "softmax", "--n-envs", "2", "--hyperparams", "n_steps=32", "batch_size=64", "n_epochs=1"]
    configs, _ = parse_command([*argv, "--eval-freq", "0", "--eval-episodes", "1", "--verbose", "0", "-f", str(tmp_path)])
    study = make_study(apply_suites(configs, ["tiny"], [], path), "tiny")
    outcome = run_study(study, StudyOptions(workers=1, reps=50), stream=io.StringIO())
    assert outcome.n_complete == 3 and not outcome.failed
    runs = sorted(p.name for p in (study.folder / RUNS_DIR).iterdir())
    assert runs == ["ppo_CartPole-v1_softmax_s0", "ppo_FourRooms-v0_softmax_s0", "ppo_FourRooms-v0_softmax_s0_slip-0.1"]
    for name, budget, kwargs in zip(runs, (64, 64, 128), ({}, {}, {"slip": 0.1})):
        config = yaml.safe_load((study.folder / RUNS_DIR / name / "config.yml").read_text())
        summary = yaml.safe_load((study.folder / RUNS_DIR / name / "summary.json").read_text())
        assert config["env_kwargs"] == kwargs and summary["timesteps"] == budget
    table = pd.read_csv(study.folder / RESULTS_FILE, keep_default_na=False)
    assert set(zip(table["env"], table["env_kwargs"])) == {
        ("CartPole-v1", ""), ("FourRooms-v0", ""), ("FourRooms-v0", '{"slip":0.1}')
    }  # fmt: skip
    report = outcome.report.read_text()
    assert "| FourRooms-v0 (slip=0.1) | softmax | 1 |" in report and "| FourRooms-v0 | softmax | 1 |" in report
    assert "Budget per run: CartPole-v1 64, FourRooms-v0 64, FourRooms-v0 (slip=0.1) 128." in report
