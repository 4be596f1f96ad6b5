"""The Markdown sections of a report: the header (runs, settings, budgets), the reference of each score, the
aggregates across envs, the probability of improvement, performance profiles, the scores per env, the learning curves
and the failed runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.config import RunConfig
from experiments.reference import no_reference_reason, reference_sources
from experiments.report.estimates import AGGREGATES, curve_metric, curves, interval_estimates, profile_estimates
from experiments.report.figures import AGGREGATES_PNG, _plot_curves, _plot_improvement, _plot_profiles, _taus
from experiments.report.tables import _kwargs, ordered_labels, run_policies, score_label
from experiments.study.layout import FAILED_DIR, RESULTS_FILE, complete_runs
from experiments.study.naming import env_label
from experiments.study.progress import format_duration


def _header(folder: Path, spec: dict[str, Any], table: pd.DataFrame, reps: int) -> list[str]:
    from importlib.metadata import version

    n_runs = len(complete_runs(folder))
    n_grid = len(spec.get("runs", []))
    settings = spec.get("settings", {})
    defaults = RunConfig().to_dict()
    setting_text = ", ".join(f"{k}={v}" for k, v in settings.items() if v != defaults.get(k) and k != "tune") or "defaults"
    wall = table[table["metric"] == "wall_time"].drop_duplicates(["env", "algo", "policy", "p", "seed"])["value"].sum()
    return [
        f"# Study {spec.get('name', folder.name)}",
        "",
        f"{n_runs} complete runs ({n_grid} in study.yml); envs: {', '.join(sorted(table['env'].unique()))}; "
        f"policies: {', '.join(ordered_labels(table))}; seeds: {table['seed'].nunique()}; "
        f"total training time {format_duration(float(wall))}.",
        f"Settings: {setting_text}.{_budgets(spec.get('runs') or [])}",
        "",
        f"Intervals are 95% stratified-bootstrap confidence intervals over runs (rliable {version('rliable')}, "
        f"{reps} replications). Regenerate with `python train.py report {folder}`; data: `{RESULTS_FILE}`.",
        "",
    ]


def _budgets(runs: list[dict[str, Any]]) -> str:
    """:param runs: the runs of ``study.yml``
    :return: `` Budget per run: ...`` (steps, iterations or epochs: one for all envs, or per env); ``""`` when no run
        records one (a study whose budget is a shared setting, or the hyperparameter files')"""
    budgets = {env_label(r["env"], r.get("env_kwargs") or {}): r["n_timesteps"] for r in runs if r.get("n_timesteps")}
    if not budgets:
        return ""
    if len(set(budgets.values())) == 1:
        return f" Budget per run: {next(iter(budgets.values())):,}."
    return " Budget per run: " + ", ".join(f"{env} {steps:,}" for env, steps in sorted(budgets.items())) + "."


def _scores_section(scores: pd.DataFrame, episodes: int) -> list[str]:
    lines = [
        "## Scores",
        "",
        "Each run's final score is normalised by its env's reference scores alone, (score - random) / (target - random), "
        "so it does not depend on the other runs of the study: from `experiments/reference_scores.yml`, or V* and the "
        "uniform policy's value computed from the transition model. An env without a reference is shown per env and "
        "left out of every cross-env aggregate.",
        "",
        "| env | final score | random | target | reference |",
        "| --- | --- | --- | --- | --- |",
    ]
    for (env, env_id, env_kwargs, metric, policy), runs in scores.groupby(
        ["env", "env_id", "env_kwargs", "metric", "policy"], sort=True
    ):
        name = score_label(str(metric), str(policy), episodes)
        sources = reference_sources(str(metric), str(env_id)) if runs["score"].notna().any() else None
        if sources is None:
            reason = no_reference_reason(str(env_id), _kwargs(str(env_kwargs)))
            lines.append(f"| {env} | {name} | - | - | no reference ({reason}): not in the aggregates |")
            continue
        cells = [_values(runs[column]) for column in ("random", "target")]
        lines.append(f"| {env} | {name} | {cells[0]} | {cells[1]} | random: {sources[0]}; target: {sources[1]} |")
    return [*lines, ""]


def _values(values: pd.Series) -> str:
    """:return: the distinct values of a column of runs, as ``0.062`` or ``0.025 - 0.062`` (``-``: none)"""
    distinct = sorted({float(f"{v:.4g}") for v in values.dropna()})
    if not distinct:
        return "-"
    return " - ".join(f"{v:g}" for v in (distinct[0], distinct[-1])) if len(distinct) > 1 else f"{distinct[0]:g}"


def _ci(point: Any, low: Any, high: Any) -> str:
    point, low, high = (float(np.ravel(v)[0]) for v in (point, low, high))
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def _aggregate_section(points: dict, intervals: dict, matrices: dict, envs: list[str], notes: list[str]) -> list[str]:
    lines = [
        "## Aggregate scores across envs",
        "",
        f"Normalised final scores over the {len(envs)} env(s) with a reference ({', '.join(envs)}): interquartile mean, "
        "mean and optimality gap (mean of max(1 - score, 0); lower is better).",
        "",
        "| policy | runs x envs | IQM | mean | optimality gap |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, point in points.items():
        cells = [_ci(point[i], intervals[label][0, i], intervals[label][1, i]) for i in range(len(AGGREGATES))]
        shape = matrices[label].shape
        lines.append(f"| {label} | {shape[0]} x {shape[1]} | {' | '.join(cells)} |")
    lines += ["", *[f"- {note}" for note in notes], "" if notes else "", f"![aggregate scores]({AGGREGATES_PNG})", ""]
    return lines


def _no_aggregates_section(left_out: list[str], notes: list[str]) -> list[str]:
    why = (
        f"no env of this study has a reference score ({', '.join(left_out)})"
        if left_out
        else "no policy has a complete run on every env with a reference"
    )
    return [
        "## Aggregate scores across envs",
        "",
        f"None: {why}, so there are no cross-env aggregates (IQM, mean, optimality gap, probability of improvement, "
        "performance profiles). See the final scores per env.",
        "",
        *[f"- {note}" for note in notes],
        *([""] if notes else []),
    ]


def _improvement_section(points: dict, intervals: dict, png: Path) -> list[str]:
    lines = ["## Probability of improvement over softmax", ""]
    if not points:
        return [*lines, "The study has no softmax runs to compare with.", ""]
    lines += [
        "P(X > Y): probability that a run of X scores higher than a run of Y on a randomly chosen env with a reference "
        "(0.5: no difference; a CI above 0.5 means X is better).",
        "",
        "| X | Y | P(X > Y) |",
        "| --- | --- | --- |",
    ]
    for pair, point in points.items():
        x, y = pair.split(",")
        lines.append(f"| {x} | {y} | {_ci(point, *intervals[pair])} |")
    _plot_improvement(points, intervals, png)
    return [*lines, "", f"![probability of improvement]({png.name})", ""]


def _profiles_section(matrices: dict[str, np.ndarray], reps: int, seed: int, png: Path) -> list[str]:
    taus = _taus(matrices)
    profiles, profile_cis = profile_estimates(matrices, taus, reps, seed)
    _plot_profiles(profiles, profile_cis, taus, png)
    return [
        "## Performance profiles",
        "",
        "Fraction of runs whose normalised score exceeds tau, with 95% CIs (envs with a reference).",
        "",
        f"![performance profiles]({png.name})",
        "",
    ]


def _per_env_section(scores: pd.DataFrame, labels: list[str], episodes: int, reps: int, seed: int) -> list[str]:
    from rliable import metrics

    lines = [
        "## Final scores per env",
        "",
        "IQM over seeds of the raw final score, with its 95% CI, and the mean normalised score.",
        "",
        "| env | policy | seeds | final score | IQM | normalised mean |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for env in sorted(scores["env"].unique()):
        for label in labels:
            mine = scores[(scores["env"] == env) & (scores["label"] == label)]
            if mine.empty:
                continue
            raw = mine["raw"].to_numpy(dtype=float)[:, None]
            points, intervals = interval_estimates({label: raw}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps, seed)
            ci = _ci(points[label][0], intervals[label][0, 0], intervals[label][1, 0])
            names = ", ".join(sorted({score_label(m, p, episodes) for m, p in zip(mine["metric"], mine["policy"])}))
            normalised = f"{mine['score'].mean():.3f}" if mine["score"].notna().all() else "no reference"
            lines.append(f"| {env} | {label} | {len(mine)} | {names} | {ci} | {normalised} |")
    return [*lines, ""]


def _curves_section(
    table: pd.DataFrame,
    scores: pd.DataFrame,
    labels: list[str],
    episodes: int,
    reps: int,
    seed: int,
    png: Path,
    settings: dict[str, Any] | None = None,
) -> list[str]:
    envs = sorted(table["env"].unique())
    panels = []
    for env in envs:
        metric = curve_metric(table[table["env"] == env])
        if metric is not None:
            name = score_label(metric, run_policies(scores[scores["env"] == env], metric), episodes)
            panels.append((env, name, curves(table, env, metric, labels, reps, seed)))
    lines = ["## Learning curves", ""]
    if not panels:
        return [*lines, f"No run recorded a learning curve ({_no_curve_reason(table, settings or {})}).", ""]
    _plot_curves(panels, labels, png)
    lines += ["IQM over seeds at each evaluation, with 95% bootstrap bands, of:", ""]
    lines += [f"- {env}: {name}" for env, name, _ in panels]
    return [*lines, "", f"![learning curves]({png.name})", ""]


def _no_curve_reason(table: pd.DataFrame, settings: dict[str, Any]) -> str:
    """:param table: the results
    :param settings: the study's shared settings
    :return: why no run has an evaluation curve, from the study's own ``--eval-freq`` and budget"""
    eval_freq = int(settings.get("eval_freq", RunConfig().eval_freq))
    if eval_freq <= 0:
        return f"periodic evaluation was off: --eval-freq {eval_freq}"
    steps = int(table["timesteps"].max())
    return f"no periodic evaluation ran: --eval-freq {eval_freq}, runs of at most {steps:,} steps"


def _failures_section(folder: Path) -> list[str]:
    failed = sorted((folder / FAILED_DIR).glob("*.txt")) if (folder / FAILED_DIR).is_dir() else []
    if not failed:
        return []
    lines = ["## Failed runs", "", "| run | attempts | last error |", "| --- | --- | --- |"]
    for path in failed:
        text = path.read_text()
        errors = [line for line in text.splitlines() if line and not line.startswith((" ", "---", "Traceback"))]
        last = errors[-1] if errors else "?"
        lines.append(f"| {path.stem} | {text.count('--- attempt ')} | {last.replace('|', '/')} |")
    return [*lines, "", f"Full tracebacks: `{FAILED_DIR}/`.", ""]
