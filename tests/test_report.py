"""The study report: per-env normalisation, rliable aggregates and their intervals, probability of improvement,
learning curves, and report.md written deterministically from a results table."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import trim_mean

from experiments.cli import main
from experiments.report import (
    ATARI_SCORES,
    aggregate_estimates,
    atari_game,
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
from experiments.study import FAILED_DIR, RESULT_COLUMNS, RESULTS_FILE, RUNS_DIR, STUDY_FILE

REPS = 200


def _rows(env, algo, policy, seed, metrics, p=2.0):
    return [["s", env, algo, policy, p, seed, t, m, v] for t, m, v in metrics]


def _study(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    write_yaml(folder / STUDY_FILE, {"name": "s", "settings": {"n_timesteps": 100}, "runs": []})
    pd.DataFrame(rows, columns=list(RESULT_COLUMNS)).to_csv(folder / RESULTS_FILE, index=False)
    return folder


def _synthetic(folder, seeds=5, envs=("FourRooms-v0", "CartPole-v1")):
    rng = np.random.default_rng(0)
    rows = []
    for env in envs:
        for policy, shift in (("softmax", 0.0), ("escort", 0.3)):
            for seed in range(seeds):
                curve = [(t, "eval_return", shift + t / 1000 + rng.normal(0, 0.01)) for t in (250, 500, 750, 1000)]
                final = ("fraction_of_optimal", min(1.0, 0.5 + shift + rng.uniform(0, 0.1)))
                if env == "CartPole-v1":
                    final = ("final_return", 100 + 300 * shift + rng.uniform(0, 50))
                rows += _rows(env, "ppo", policy, seed, [*curve, (1000, *final), (1000, "wall_time", 2.0)])
    return _study(folder, rows)


def test_atari_game_names():
    assert atari_game("ALE/Pong-v5") == "Pong"
    assert atari_game("BreakoutNoFrameskip-v4") == "Breakout"
    assert atari_game("ale_py:ALE/SpaceInvaders-v5") == "SpaceInvaders"


def test_scores_are_normalised_by_v_star_random_human_or_min_max(tmp_path):
    rows = []
    for seed, (frac, pong, cart) in enumerate([(0.5, -20.7, 10.0), (1.0, 14.6, 30.0), (0.75, -3.05, 20.0)]):
        rows += _rows("FourRooms-v0", "ppo", "escort", seed, [(10, "fraction_of_optimal", frac), (10, "final_return", 9.0)])
        rows += _rows("ALE/Pong-v5", "ppo", "escort", seed, [(5, "final_return", -21.0), (10, "final_return", pong)])
        rows += _rows("CartPole-v1", "ppo", "escort", seed, [(10, "final_return", cart)])
    scores, used = final_scores(load_table(_study(tmp_path, rows)))
    by_env = {env: group.sort_values("seed")["score"].to_numpy() for env, group in scores.groupby("env")}
    np.testing.assert_allclose(by_env["FourRooms-v0"], [0.5, 1.0, 0.75])
    random, human = ATARI_SCORES["Pong"]
    np.testing.assert_allclose(by_env["ALE/Pong-v5"], (np.array([-20.7, 14.6, -3.05]) - random) / (human - random))
    np.testing.assert_allclose(by_env["ALE/Pong-v5"], [0.0, 1.0, 0.5])  # the last value of each run, not the first
    np.testing.assert_allclose(by_env["CartPole-v1"], [0.0, 1.0, 0.5])
    assert used["FourRooms-v0"].description.startswith("V*")
    assert used["ALE/Pong-v5"].description.startswith("random/human")
    assert used["CartPole-v1"].description.startswith("min-max")


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
            rows += _rows(env, "ppo", "softmax", seed, [(10, "fraction_of_optimal", 0.1 * seed)])
    rows += _rows("FourRooms-v0", "ppo", "escort", 0, [(10, "fraction_of_optimal", 1.0)])
    table = load_table(_study(tmp_path, rows))
    assert ordered_labels(table) == ["softmax", "escort-p2"]
    matrices, envs, notes = score_matrices(final_scores(table)[0], ordered_labels(table))
    assert envs == ["Bandit-v0", "FourRooms-v0"] and matrices["softmax"].shape == (2, 2)
    assert "escort-p2" not in matrices
    assert any("escort-p2 is left out" in n for n in notes) and any("softmax: 2 runs" in n for n in notes)


def test_report_is_written_with_plots_and_is_deterministic(tmp_path):
    folder = _synthetic(tmp_path / "study")
    (folder / FAILED_DIR).mkdir()
    (folder / FAILED_DIR / "ppo_CartPole-v1_escort-p2_s9.txt").write_text(
        "--- attempt 1 (now) ---\nTraceback (most recent call last):\n  File x\nRuntimeError: boom\n\n"
    )
    first = write_report(folder, reps=REPS).read_text()
    for png in ("curves.png", "aggregates.png", "improvement.png", "profiles.png"):
        assert (folder / png).stat().st_size > 1000
    assert first == write_report(folder, reps=REPS).read_text()
    for needle in ("## Aggregate scores across envs", "| escort-p2 | softmax |", "min-max", "V*", "## Learning curves",
                   "| ppo_CartPole-v1_escort-p2_s9 | 1 | RuntimeError: boom |", "| softmax | 5 x 2 |"):  # fmt: skip
        assert needle in first
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
    write_metrics(run_dir, [(50, "eval_return", final / 2), (100, "eval_return", final), (100, "fraction_of_optimal", final)])


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
    assert len(table) == 6 * 4 and set(table["seed"]) == {0, 1, 2}
    escape = table[table["metric"] == "escape_time"]
    assert len(escape) == 6 and set(escape["value"]) == {7.0} and set(escape["timesteps"]) == {100}
    assert "| escort-p2 | softmax | 1.000 [1.000, 1.000] |" in (folder / "report.md").read_text()
