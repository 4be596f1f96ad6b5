"""The study report: each run's own normalised score, envs without a reference left out of the aggregates, rliable
aggregates and their intervals, probability of improvement, learning curves, greedy/stochastic labels, and report.md
written deterministically from a results table."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import trim_mean

from experiments.cli import main
from experiments.config import RunConfig
from experiments.reference import model_reference, table_reference
from experiments.report import (
    aggregate_estimates,
    curves,
    final_scores,
    improvement_estimates,
    load_table,
    ordered_labels,
    profile_estimates,
    score_matrices,
    write_report,
)
from experiments.results import CONFIG_FILE, SUMMARY_FILE, write_json, write_metrics, write_yaml
from experiments.run import run
from experiments.study import FAILED_DIR, RESULT_COLUMNS, RESULTS_FILE, RUNS_DIR, STUDY_FILE

REPS = 200


def _rows(env, algo, policy, seed, metrics, p=2.0, env_kwargs=""):
    return [["s", env, env_kwargs, algo, policy, p, seed, t, m, v] for t, m, v in metrics]


def _study(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    write_yaml(folder / STUDY_FILE, {"name": "s", "settings": {"n_timesteps": 100}, "runs": []})
    pd.DataFrame(rows, columns=list(RESULT_COLUMNS)).to_csv(folder / RESULTS_FILE, index=False)
    return folder


def _synthetic(folder, seeds=5, envs=("FourRooms-v0", "CartPole-v1"), referenced=True):
    rng = np.random.default_rng(0)
    cartpole = table_reference("CartPole-v1", {})
    rows = []
    for env in envs:
        for policy, shift in (("softmax", 0.0), ("escort", 0.3)):
            for seed in range(seeds):
                curve = [(t, "eval_return", shift + t / 1000 + rng.normal(0, 0.01)) for t in (250, 500, 750, 1000)]
                value = min(1.0, 0.5 + shift + rng.uniform(0, 0.1))
                final = [("greedy_value", value), ("normalized_score", value), ("reference_random", 0.0)]
                if env != "FourRooms-v0":
                    final_return = 100 + 300 * shift + rng.uniform(0, 50)
                    final = [("final_return", final_return), ("normalized_score", cartpole.normalize(final_return)),
                             ("reference_random", cartpole.random), ("reference_target", cartpole.target)]  # fmt: skip
                final = final if referenced and env != "Taxi-v3" else final[:1]
                rows += _rows(env, "ppo", policy, seed, [*curve, *[(1000, *f) for f in final], (1000, "wall_time", 2.0)])
    return _study(folder, rows)


def test_final_scores_are_each_runs_own_normalized_score_and_envs_without_one_are_left_out(tmp_path):
    rows = []
    for seed, (value, cart, taxi) in enumerate([(0.5, 10.0, -200.0), (1.0, 30.0, -50.0), (0.75, 20.0, 8.0)]):
        rows += _rows("FourRooms-v0", "ppo", "escort", seed, [(10, "greedy_value", value), (10, "final_return", 9.0),
                      (10, "normalized_score", value / 2), (10, "eval_deterministic", 1.0)])  # fmt: skip
        rows += _rows("CartPole-v1", "ppo", "escort", seed, [(5, "final_return", 1.0), (10, "final_return", cart),
                      (10, "normalized_score", cart / 100), (10, "eval_deterministic", 0.0)])  # fmt: skip
        rows += _rows("Taxi-v3", "ppo", "escort", seed, [(10, "final_return", taxi), (10, "eval_deterministic", 1.0)])
    scores = final_scores(load_table(_study(tmp_path, rows)))
    by_env = {env: group.sort_values("seed") for env, group in scores.groupby("env")}
    np.testing.assert_allclose(by_env["FourRooms-v0"]["score"], [0.25, 0.5, 0.375])  # the run's row, as written
    np.testing.assert_allclose(by_env["CartPole-v1"]["raw"], [10.0, 30.0, 20.0])  # the last value of each run
    assert set(by_env["FourRooms-v0"]["metric"]) == {"greedy_value"} and set(by_env["CartPole-v1"]["metric"]) == {
        "final_return"
    }
    assert set(by_env["CartPole-v1"]["policy"]) == {"stochastic"} and set(by_env["Taxi-v3"]["policy"]) == {"greedy"}
    assert by_env["Taxi-v3"]["score"].isna().all()
    referenced = scores[scores["score"].notna()]
    matrices, envs, _ = score_matrices(referenced, ["escort-p2"])
    assert envs == ["CartPole-v1", "FourRooms-v0"] and matrices["escort-p2"].shape == (3, 2)


def test_aggregates_are_rliable_iqm_mean_and_gap_with_intervals_around_them():
    rng = np.random.default_rng(1)
    matrices = {"softmax": rng.uniform(0, 1, (8, 3)), "escort-p2": rng.uniform(0.5, 1.2, (8, 3))}
    points, intervals = aggregate_estimates(matrices, REPS, seed=0)
    for label, scores in matrices.items():
        iqm, mean, gap = points[label]
        assert iqm == pytest.approx(trim_mean(scores.ravel(), 0.25))
        assert mean == pytest.approx(scores.mean())
        assert gap == pytest.approx(np.maximum(1 - scores, 0).mean())
        assert np.all(intervals[label][0] <= points[label] + 1e-12) and np.all(points[label] <= intervals[label][1] + 1e-12)
    again, again_intervals = aggregate_estimates(matrices, REPS, seed=0)
    assert all(np.array_equal(points[k], again[k]) and np.array_equal(intervals[k], again_intervals[k]) for k in points)


def test_probability_of_improvement_compares_each_policy_with_softmax_of_its_algorithm():
    low, high = np.full((5, 2), 0.2), np.full((5, 2), 0.9)
    points, intervals = improvement_estimates({"ppo/softmax": low, "ppo/escort-p2": high, "a2c/softmax": high,
                                               "a2c/escort-p2": high}, REPS, seed=0)  # fmt: skip
    assert set(points) == {"ppo/escort-p2,ppo/softmax", "a2c/escort-p2,a2c/softmax"}
    assert points["ppo/escort-p2,ppo/softmax"] == pytest.approx(1.0)
    assert points["a2c/escort-p2,a2c/softmax"] == pytest.approx(0.5)
    assert improvement_estimates({"escort-p2": high}, REPS, seed=0) == ({}, {})


def test_performance_profiles_fall_from_one_to_zero():
    scores = np.linspace(0.05, 0.95, 12).reshape(6, 2)
    taus = np.linspace(0, 1, 11)
    profiles, cis = profile_estimates({"softmax": scores}, taus, REPS, seed=0)
    profile = profiles["softmax"]
    assert profile[0] == 1.0 and profile[-1] == 0.0 and np.all(np.diff(profile) <= 0)
    assert cis["softmax"].shape == (2, len(taus))


def test_learning_curves_are_iqm_over_seeds_on_a_common_grid(tmp_path):
    rows = []
    for seed, (times, offset) in enumerate([((100, 200, 300), 0.0), ((150, 250, 350), 1.0), ((100, 200, 300), 5.0)]):
        rows += _rows("FourRooms-v0", "ppo", "softmax", seed, [(t, "eval_return", offset + t / 100) for t in times])
    table = load_table(_study(tmp_path, rows))
    (grid, iqm, low, high) = curves(table, "FourRooms-v0", "eval_return", ["softmax"], REPS, seed=0)["softmax"]
    assert grid.min() >= 150 and grid.max() <= 300
    values = np.stack([offset + grid / 100 for offset in (0.0, 1.0, 5.0)])
    np.testing.assert_allclose(iqm, trim_mean(values, 0.25, axis=0))
    assert np.all(low <= iqm + 1e-12) and np.all(iqm <= high + 1e-12)


def test_uneven_seeds_are_aggregated_on_the_lowest_seeds_with_a_note(tmp_path):
    rows = []
    for env, seeds in (("FourRooms-v0", 4), ("Bandit-v0", 2)):
        for seed in range(seeds):
            rows += _rows(
                env, "ppo", "softmax", seed, [(10, "greedy_value", 0.1 * seed), (10, "normalized_score", 0.1 * seed)]
            )
    rows += _rows("FourRooms-v0", "ppo", "escort", 0, [(10, "greedy_value", 1.0), (10, "normalized_score", 1.0)])
    table = load_table(_study(tmp_path, rows))
    assert ordered_labels(table) == ["softmax", "escort-p2"]
    matrices, envs, notes = score_matrices(final_scores(table), ordered_labels(table))
    assert envs == ["Bandit-v0", "FourRooms-v0"] and matrices["softmax"].shape == (2, 2)
    assert "escort-p2" not in matrices
    assert any("escort-p2 is left out" in n for n in notes) and any("softmax: 2 runs" in n for n in notes)


def test_report_is_written_with_plots_and_is_deterministic(tmp_path):
    folder = _synthetic(tmp_path / "study", envs=("FourRooms-v0", "CartPole-v1", "Taxi-v3"))
    (folder / FAILED_DIR).mkdir()
    (folder / FAILED_DIR / "ppo_CartPole-v1_escort-p2_s9.txt").write_text(
        "--- attempt 1 (now) ---\nTraceback (most recent call last):\n  File x\nRuntimeError: boom\n\n"
    )
    first = write_report(folder, reps=REPS).read_text()
    for png in ("curves.png", "aggregates.png", "improvement.png", "profiles.png"):
        assert (folder / png).stat().st_size > 1000
    assert first == write_report(folder, reps=REPS).read_text()
    for needle in ("## Aggregate scores across envs", "| escort-p2 | softmax |", "V*", "## Learning curves",
                   "| ppo_CartPole-v1_escort-p2_s9 | 1 | RuntimeError: boom |", "| softmax | 5 x 2 |",
                   "with a reference (CartPole-v1, FourRooms-v0)", "Left out (no reference): Taxi-v3",
                   "| Taxi-v3 | final return (greedy policy, 10 episodes) | - | - | no reference (no entry in",
                   "| CartPole-v1 | final return (greedy policy, 10 episodes) | 2", "| 500 | random: uniform-random policy",
                   "| Taxi-v3 | escort-p2 | 5 | final return (greedy policy, 10 episodes) |",
                   "- FourRooms-v0: evaluation return (greedy policy, 10 episodes)"):  # fmt: skip
        assert needle in first, needle
    assert "min-max" not in first
    taxi = [line for line in first.splitlines() if line.startswith("| Taxi-v3 | ") and "episodes) |" in line]
    assert len(taxi) == 3 and all(line.endswith("| no reference |") for line in taxi[1:])
    iqm_row = next(line for line in first.splitlines() if line.startswith("| escort-p2 | 5 x 2 |"))
    assert float(iqm_row.split("|")[3].split()[0]) > float(
        next(line for line in first.splitlines() if line.startswith("| softmax | 5 x 2 |")).split("|")[3].split()[0]
    )


def _run_folder(folder, policy, seed, final):
    run_dir = folder / RUNS_DIR / f"ppo_FourRooms-v0_{policy}_s{seed}"
    run_dir.mkdir(parents=True)
    write_yaml(run_dir / CONFIG_FILE, {"algo": "ppo", "env": "FourRooms-v0", "policy": policy, "p": 2.0, "seed": seed})
    summary = {"timesteps": 100, "fraction_of_optimal": final, "escape_time": 7, "interrupted": False}
    write_json(run_dir / SUMMARY_FILE, summary)
    write_metrics(run_dir, [(50, "eval_return", final / 2), (100, "eval_return", final), (100, "greedy_value", final)])


def test_report_command_rebuilds_the_table_from_the_run_folders(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a study folder" in capsys.readouterr().err
    folder = _study(tmp_path / "study", [])
    for seed in range(3):
        _run_folder(folder, "softmax", seed, 0.2 + 0.1 * seed)
        _run_folder(folder, "escort", seed, 0.6 + 0.1 * seed)
    (folder / RUNS_DIR / "ppo_FourRooms-v0_escort_s9.tmp").mkdir()  # a partial run: not in the table
    assert main(["report", str(folder), "--reps", "5"]) == 2
    assert main(["report", str(folder), "--reps", "50"]) == 0
    assert str(folder / "report.md") in capsys.readouterr().out
    table = pd.read_csv(folder / RESULTS_FILE)
    # per run: 2 eval_return, greedy_value, fraction_of_optimal and escape_time (summary), 4 reference metrics
    assert len(table) == 6 * 9 and set(table["seed"]) == {0, 1, 2}
    escape = table[table["metric"] == "escape_time"]
    assert len(escape) == 6 and set(escape["value"]) == {7.0} and set(escape["timesteps"]) == {100}
    reference = model_reference("FourRooms-v0", {})
    normalized = table[table["metric"] == "normalized_score"].set_index(["policy", "seed"])["value"]
    assert normalized[("escort", 1)] == pytest.approx(reference.normalize(0.7))
    assert "| escort-p2 | softmax | 1.000 [1.000, 1.000] |" in (folder / "report.md").read_text()


def test_a_study_without_any_reference_reports_per_env_and_says_why_there_are_no_aggregates(tmp_path):
    folder = _synthetic(tmp_path / "study", seeds=3, envs=("CartPole-v1", "Taxi-v3"), referenced=False)
    report = write_report(folder, reps=REPS).read_text()
    assert "None: no env of this study has a reference score (CartPole-v1, Taxi-v3)" in report
    assert (
        "| optimality gap |" not in report
        and "## Probability of improvement" not in report
        and "## Performance profiles" not in report
    )
    assert "| CartPole-v1 | softmax | 3 | final return (greedy policy, 10 episodes) |" in report
    assert "no reference (its runs carry no normalized_score: `python train.py report FOLDER` rebuilds" in report
    assert (folder / "curves.png").stat().st_size > 1000 and not (folder / "aggregates.png").exists()


def test_scores_say_whether_they_are_the_greedy_or_the_stochastic_policys(tmp_path):
    folder = _study(tmp_path / "study", [])
    write_yaml(folder / STUDY_FILE, {"name": "s", "settings": {"eval_episodes": 2}, "runs": []})
    common = {"n_timesteps": 256, "eval_freq": 128, "eval_episodes": 2, "verbose": 0, "log_folder": str(tmp_path)}
    ppo = RunConfig(algo="ppo", env="CartPole-v1", policy="softmax", n_envs=2, **common,
                    hyperparams={"n_steps": 64, "batch_size": 64, "n_epochs": 1})  # fmt: skip
    exact = RunConfig(algo="exact", env="Bandit-v0", policy="escort", **common)
    for config in (ppo, exact):
        run(config, folder / RUNS_DIR / f"{config.algo}_{config.run_name}")
    assert main(["report", str(folder), "--reps", "50"]) == 0
    lines = (folder / "report.md").read_text().splitlines()
    scores = [line for line in lines if line.startswith(("| CartPole-v1 |", "| Bandit-v0 |"))]
    assert any(
        line.startswith("| Bandit-v0 | V(rho) (stochastic policy) | 0.6667 | 1 | random: V of the uniform") for line in scores
    )
    assert any(line.startswith("| CartPole-v1 | final return (greedy policy, 2 episodes) | 22") for line in scores)
    assert any(line.startswith("| Bandit-v0 | exact/escort-p2 | 1 | V(rho) (stochastic policy) |") for line in scores)
    assert any(
        line.startswith("| CartPole-v1 | ppo/softmax | 1 | final return (greedy policy, 2 episodes) |") for line in scores
    )
    assert not any("greedy" in line for line in scores if "Bandit" in line)
    assert not any("stochastic" in line for line in scores if "CartPole" in line)
    assert "- CartPole-v1: evaluation return (greedy policy, 2 episodes)" in lines
    assert "- Bandit-v0: V(rho) (stochastic policy)" in lines


def test_a_tuned_studys_report_shows_the_selection_and_the_sensitivity_and_compares_final_runs_only(tmp_path):
    from experiments.tuning import POINT_COLUMN, make_spec, select, write_selected

    folder = _synthetic(tmp_path / "s", seeds=3)
    spec = make_spec(["learning_rate=1e-4,1e-3,1e-2", "optimizer=sgd,adam"], 2, "auc", False)
    rng = np.random.default_rng(1)
    tuning_rows = []
    for env in ("FourRooms-v0", "CartPole-v1"):
        for policy in ("softmax", "escort"):
            for point in spec.points():
                height = 100 * np.log10(point["learning_rate"]) ** 2 + (50 if point["optimizer"] == "adam" else 0)
                for seed in spec.seeds:
                    text = f"learning_rate={point['learning_rate']:g} optimizer={point['optimizer']}"
                    tuning_rows += [
                        [*r, text] for r in _rows(env, "ppo", policy, seed, [(100, "eval_return", height + rng.normal())])
                    ]
    tuning = pd.DataFrame(tuning_rows, columns=[*RESULT_COLUMNS, POINT_COLUMN])
    selections = select(tuning, spec, {}, reps=REPS)
    assert {(s.group["env"], s.group["policy"]): s.selected["learning_rate"] for s in selections} == {
        (env, policy): 1e-4 for env in ("FourRooms-v0", "CartPole-v1") for policy in ("softmax", "escort")
    }
    assert all(s.selected["optimizer"] == "adam" for s in selections)
    write_selected(folder, spec, selections)
    report = write_report(folder, reps=REPS).read_text()
    tuning_section = report.split("## Tuning", 1)[1].split("\n## ", 1)[0]
    assert tuning_section.count("learning_rate=0.0001 optimizer=adam") == 4
    assert "| FourRooms-v0 | softmax |" in tuning_section and "(raw)" in tuning_section  # FourRooms: no return reference
    assert (folder / "sensitivity.png").stat().st_size > 1000
    assert "runs x envs" in report and "| escort-p2 | 3 x 2 |" in report  # the comparison: the study's own (final) runs


def test_a_tuning_grids_labels_carry_the_grid_point(tmp_path):
    from experiments.tuning import POINT_COLUMN

    folder = tmp_path / "g"
    folder.mkdir()
    write_yaml(folder / STUDY_FILE, {"name": "g", "settings": {}, "runs": []})
    rows = [
        [*r, f"learning_rate={lr}"]
        for lr in ("0.001", "0.01")
        for r in _rows("CartPole-v1", "ppo", "softmax", 0, [(1, "final_return", 1.0)])
    ]
    pd.DataFrame(rows, columns=[*RESULT_COLUMNS, POINT_COLUMN]).to_csv(folder / RESULTS_FILE, index=False)
    assert set(load_table(folder)["label"]) == {"softmax learning_rate=0.001", "softmax learning_rate=0.01"}


def test_curve_colours_of_up_to_ten_labels_are_far_apart():
    from experiments.report.figures import _colors

    labels = ["a2c/softmax", "a2c/escort-p2", "ppo/softmax", "ppo/escort-p2", "qac/softmax", "qac/escort-p2", "qac/neurd"]
    rgb = np.array(list(_colors(labels).values()))
    distances = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)[np.triu_indices(len(labels), 1)]
    assert distances.min() > 0.25  # seaborn's colorblind orange and vermillion (0.13 apart) are never both among them


def test_variants_of_an_env_are_tasks_of_their_own_named_with_their_kwargs(tmp_path):
    rows = []
    variants = {"": (0.2, 0.4), '{"slip":0.1}': (0.6, 0.8), '{"subgoals":[]}': (0.9, 1.0)}
    for kwargs, (softmax, escort) in variants.items():
        for seed in range(3):
            for policy, value in (("softmax", softmax), ("escort", escort)):
                metrics = [(100, "eval_return", value), (100, "greedy_value", value), (100, "normalized_score", value)]
                rows += _rows("FourRooms-v0", "ppo", policy, seed, metrics, env_kwargs=kwargs)
    folder = _study(tmp_path / "study", rows)
    table = load_table(folder)
    labels = {"FourRooms-v0", "FourRooms-v0 (slip=0.1)", "FourRooms-v0 (subgoals=[])"}
    assert set(table["env"]) == labels and set(table["env_id"]) == {"FourRooms-v0"}
    matrices, envs, _ = score_matrices(final_scores(table), ordered_labels(table))
    assert set(envs) == labels and matrices["softmax"].shape == (3, 3)  # three tasks, not one env with 9 runs
    by_env = dict(zip(envs, matrices["softmax"][0]))
    assert by_env["FourRooms-v0 (slip=0.1)"] == pytest.approx(0.6) and by_env["FourRooms-v0"] == pytest.approx(0.2)
    report = write_report(folder, reps=REPS).read_text()
    for label in labels:
        assert f"| {label} | softmax | 3 |" in report and f"- {label}: evaluation return" in report
