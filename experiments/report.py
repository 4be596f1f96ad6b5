"""The report of a study: learning curves, aggregate scores, probability of improvement and performance profiles (rliable).

Every number with an interval comes from rliable's stratified bootstrap (``rly.get_interval_estimates``) over runs, so
the conclusions carry 95% confidence intervals. Cross-env aggregates use each run's ``normalized_score`` from
``results.csv``, which ``experiments.study.run_rows`` computes from the run alone (``experiments.reference``: V* and the
uniform policy's value on the transition model, or the random and target scores of ``reference_scores.yml``), so a
run's score is the same whatever else the study holds. An env whose runs have no reference is shown in the per-env
table and the curves, named as such, and left out of every aggregate. Every score is labelled with the policy it
evaluates: greedy or stochastic (``experiments.reference.score_policy``). An env is a task of its own per env kwargs,
named with them in every table and figure (``FourRooms-v0 (slip=0.1)``), so a suite's variants of an env stay apart.

A tuned study (``experiments.tuning``) adds a section on its tuning from ``selected.yml``: the selected values of each
group with their tuning scores, and a sensitivity plot per env; every other section compares the final runs alone (the
tuning runs stay in ``tuning/``, a study with its own report, whose policies are labelled with their grid point).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.config import RunConfig
from experiments.errors import UsageError
from experiments.reference import SCORE_METRICS, no_reference_reason, reference_sources, score_metric, score_policy
from experiments.study import FAILED_DIR, RESULTS_FILE, complete_runs, format_duration, load_spec, policy_label, read_results
from experiments.tuning import POINT_COLUMN, SELECTED_FILE, env_label, load_selected, point_text, value_text

REPORT_FILE = "report.md"
CURVES_PNG = "curves.png"
AGGREGATES_PNG = "aggregates.png"
IMPROVEMENT_PNG = "improvement.png"
PROFILES_PNG = "profiles.png"
SENSITIVITY_PNG = "sensitivity.png"
#: Learning-curve metrics, by preference: evaluation return (SB3), exact V(rho) (exact PG), test accuracy (supervised).
CURVE_METRICS = ("eval_return", "value", "test_accuracy")
#: At most this many points per learning curve are bootstrapped and drawn.
CURVE_POINTS = 100
BASELINE = "softmax"
#: Columns that identify a run in a study's table (with its env).
RUN_KEYS = ("label", "algo", "seed")
AGGREGATES = ("IQM", "Mean", "Optimality gap")
#: Columns of ``final_scores`` read from a run's reference metrics (``experiments.reference.reference_metrics``).
REFERENCE_COLUMNS = {"score": "normalized_score", "random": "reference_random", "target": "reference_target"}
#: How the report names a score metric.
METRIC_NAMES = {
    "final_value": "V(rho)",
    "greedy_value": "V(rho)",
    "value": "V(rho)",
    "fraction_of_optimal": "fraction of V*",
    "test_accuracy": "test accuracy",
    "final_return": "final return",
    "eval_return": "evaluation return",
}
#: Metrics that are mean returns over a study's evaluation episodes.
EPISODE_METRICS = ("final_return", "eval_return")


def load_table(folder: Path) -> pd.DataFrame:
    """:param folder: a study folder
    :return: its results table with a ``label`` column (policy, with algo when the study has several); ``env`` names
        each env with its kwargs (``FourRooms-v0 (slip=0.1)``: variants of an env are reported apart), ``env_id`` is the
        id alone and ``env_kwargs`` the kwargs as JSON text (``""``: none)"""
    path = Path(folder) / RESULTS_FILE
    if not path.exists():
        raise UsageError(f"{folder} has no {RESULTS_FILE}: run the study first (python train.py ... with several runs)")
    table = read_results(folder)
    table["env_id"] = table["env"]
    labels = {key: env_label(key[0], _kwargs(key[1])) for key in set(zip(table["env_id"], table["env_kwargs"]))}
    table["env"] = [labels[key] for key in zip(table["env_id"], table["env_kwargs"])]
    if table.empty:
        raise UsageError(f"{folder} has no complete run yet: nothing to report")
    several_algos = table["algo"].nunique() > 1
    labels = {
        key: (f"{key[0]}/" if several_algos else "") + policy_label(key[1], float(key[2]))
        for key in table[["algo", "policy", "p"]].drop_duplicates().itertuples(index=False, name=None)
    }
    table["label"] = [labels[k] for k in zip(table["algo"], table["policy"], table["p"])]
    if POINT_COLUMN in table.columns:  # a tuning grid: one label per policy and grid point
        table["label"] = table["label"] + " " + table[POINT_COLUMN].fillna("").astype(str)
    return table


def _kwargs(text: str) -> dict[str, Any]:
    """:param text: an ``env_kwargs`` cell of ``results.csv``
    :return: the env kwargs"""
    return json.loads(text) if text else {}


def ordered_labels(table: pd.DataFrame) -> list[str]:
    """:param table: results with labels
    :return: labels, softmax ones first, then in order of appearance"""
    labels = list(dict.fromkeys(table["label"]))
    return sorted(labels, key=lambda label: (not label.endswith(BASELINE), labels.index(label)))


def final_scores(table: pd.DataFrame) -> pd.DataFrame:
    """One final score per run, raw and normalised (``normalized_score``, written by the run's own reference).

    :param table: results with labels
    :return: a frame (env, env_id, env_kwargs, label, algo, seed, metric, policy, raw, score, random, target,
        eval_deterministic); ``score``, ``random`` and ``target`` are NaN for a run without a reference
    """
    last = _last_values(table)
    envs = dict(zip(table["env"], zip(table["env_id"], table["env_kwargs"])))
    rows = []
    for (env, label, algo, seed), values in last.iterrows():
        present = values.dropna()
        metric = score_metric(present.index)
        if metric is None:
            continue
        flag = present.get("eval_deterministic")
        hp = {} if flag is None else {"eval_deterministic": bool(flag)}
        env_id, env_kwargs = envs[env]
        rows.append(
            {
                "env": env,
                "env_id": env_id,
                "env_kwargs": env_kwargs,
                "label": label,
                "algo": algo,
                "seed": seed,
                "metric": metric,
                "policy": score_policy(str(algo), str(env_id), hp, metric),
                "raw": float(present[metric]),
                **{column: float(values.get(name, np.nan)) for column, name in REFERENCE_COLUMNS.items()},
                "eval_deterministic": np.nan if flag is None else float(flag),
            }
        )
    if not rows:
        raise UsageError(f"no run has a final score ({', '.join(SCORE_METRICS)})")
    return pd.DataFrame(rows)


def _last_values(table: pd.DataFrame) -> pd.DataFrame:
    """:return: the last value of every metric of every run: one row per (env, label, algo, seed), one column per metric"""
    keys = ["env", *RUN_KEYS]
    ordered = table.sort_values("timesteps", kind="stable")
    return ordered.groupby([*keys, "metric"], sort=True)["value"].last().unstack("metric")


def score_label(metric: str, policy: str, episodes: int) -> str:
    """:param metric: a score metric
    :param policy: ``greedy`` or ``stochastic``
    :param episodes: evaluation episodes of the study
    :return: e.g. ``final return (stochastic policy, 10 episodes)``, ``V(rho) (greedy policy)``"""
    detail = f", {episodes} episodes" if metric in EPISODE_METRICS else ""
    return f"{METRIC_NAMES.get(metric, metric)} ({policy} policy{detail})"


def run_policies(scores: pd.DataFrame, metric: str) -> str:
    """:param scores: final scores of some runs (``final_scores``)
    :param metric: one of their metrics
    :return: whose it is: ``greedy``, ``stochastic``, or both joined by ``/`` when the runs differ"""
    policies = {
        score_policy(
            str(r.algo),
            str(r.env_id),
            {} if np.isnan(r.eval_deterministic) else {"eval_deterministic": bool(r.eval_deterministic)},
            metric,
        )
        for r in scores.itertuples()
    }
    return "/".join(sorted(policies))


def score_matrices(scores: pd.DataFrame, labels: list[str]) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """(runs x tasks) normalised scores per label, as rliable wants them.

    :param scores: output of ``final_scores``
    :param labels: the labels, in order
    :return: the matrices, the envs (tasks, columns), and notes on labels or runs left out
    """
    envs = sorted(scores["env"].unique())
    matrices, notes = {}, []
    for label in labels:
        mine = scores[scores["label"] == label]
        columns = [mine[mine["env"] == env].sort_values("seed")["score"].to_numpy() for env in envs]
        if any(len(c) == 0 for c in columns):
            missing = [env for env, c in zip(envs, columns) if len(c) == 0]
            notes.append(f"{label} is left out of the aggregates: no complete run on {', '.join(missing)}")
            continue
        n = min(len(c) for c in columns)
        if any(len(c) > n for c in columns):
            notes.append(f"{label}: {n} runs per env are aggregated (the lowest seeds), as some envs have only {n}")
        matrices[label] = np.stack([c[:n] for c in columns], axis=1)
    return matrices, envs, notes


def interval_estimates(scores: dict[str, Any], func: Callable[..., np.ndarray], reps: int, seed: int) -> tuple[dict, dict]:
    """``rly.get_interval_estimates`` made reproducible: rliable draws its resamples from NumPy's global generator, which
    is seeded here and restored afterwards.

    :param scores: label -> (runs x tasks ...) array, or a tuple of arrays for a metric of several score sets
    :param func: the aggregate
    :param reps: bootstrap replications
    :param seed: bootstrap seed
    :return: point estimates and 95% intervals (lower, upper) per label
    """
    from rliable import library as rly

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return rly.get_interval_estimates(scores, func, reps=reps)
    finally:
        np.random.set_state(state)


def aggregate_estimates(matrices: dict[str, np.ndarray], reps: int, seed: int) -> tuple[dict, dict]:
    """:param matrices: (runs x tasks) scores per label
    :param reps: bootstrap replications
    :param seed: bootstrap seed
    :return: rliable's point and interval estimates of IQM, mean and optimality gap"""
    from rliable import metrics

    def aggregate(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x), metrics.aggregate_optimality_gap(x)])

    return interval_estimates(matrices, aggregate, reps, seed)


def improvement_estimates(matrices: dict[str, np.ndarray], reps: int, seed: int) -> tuple[dict, dict]:
    """Probability that each policy beats softmax (of the same algorithm) on a randomly drawn env and pair of runs.

    :param matrices: (runs x tasks) scores per label
    :param reps: bootstrap replications
    :param seed: bootstrap seed
    :return: rliable's estimates, keyed ``"X,Y"`` (P(X > Y)); empty when the study has no softmax runs
    """
    from rliable import metrics

    pairs = {}
    for label, scores in matrices.items():
        algo = label.rsplit("/", 1)[0] + "/" if "/" in label else ""
        base = f"{algo}{BASELINE}"
        if label != base and base in matrices:
            pairs[f"{label},{base}"] = (scores, matrices[base])
    if not pairs:
        return {}, {}
    return interval_estimates(pairs, metrics.probability_of_improvement, reps, seed)


def profile_estimates(matrices: dict[str, np.ndarray], taus: np.ndarray, reps: int, seed: int) -> tuple[dict, dict]:
    """:param matrices: (runs x tasks) scores per label
    :param taus: score thresholds
    :param reps: bootstrap replications
    :param seed: bootstrap seed
    :return: performance profiles (fraction of runs with score > tau) with 95% CIs"""
    from rliable import library as rly

    return interval_estimates(matrices, lambda x: rly.score_distributions(x, taus), reps, seed)


def curve_metric(rows: pd.DataFrame) -> str | None:
    """:param rows: an env's results
    :return: the learning-curve metric its runs have, or None"""
    present = set(rows["metric"])
    return next((m for m in CURVE_METRICS if m in present), None)


def curves(table: pd.DataFrame, env: str, metric: str, labels: list[str], reps: int, seed: int) -> dict[str, tuple]:
    """IQM over seeds of an env's learning curves, with 95% bootstrap bands.

    :param table: results with labels
    :param env: the env
    :param metric: the curve's metric
    :param labels: the labels
    :param reps: bootstrap replications
    :param seed: bootstrap seed
    :return: label -> (timesteps, IQM, lower, upper)
    """
    from scipy.stats import trim_mean

    rows = table[(table["env"] == env) & (table["metric"] == metric)]
    out = {}
    for label in labels:
        mine = rows[rows["label"] == label]
        runs = [r.sort_values("timesteps") for _, r in mine.groupby("seed")]
        if not runs:
            continue
        grid = _common_grid([r["timesteps"].to_numpy(dtype=float) for r in runs])
        values = np.stack([np.interp(grid, r["timesteps"], r["value"]) for r in runs])[:, None, :]
        points, intervals = interval_estimates({label: values}, lambda x: trim_mean(x[:, 0, :], 0.25, axis=0), reps, seed)
        out[label] = (grid, points[label], intervals[label][0], intervals[label][1])
    return out


def _common_grid(timesteps: list[np.ndarray]) -> np.ndarray:
    low = max(t.min() for t in timesteps)
    high = min(t.max() for t in timesteps)
    grid = min(timesteps, key=len)
    grid = grid[(grid >= low) & (grid <= high)]
    if len(grid) > CURVE_POINTS:
        grid = grid[np.unique(np.linspace(0, len(grid) - 1, CURVE_POINTS).round().astype(int))]
    return grid if len(grid) else np.array([high])


def write_report(folder: Path, reps: int = 2000, seed: int = 0) -> Path:
    """Write ``report.md`` and its PNG plots into a study folder, from its ``results.csv``.

    :param folder: the study folder
    :param reps: bootstrap replications of every confidence interval
    :param seed: seed of the bootstrap (the same table and seed give the same report)
    :return: the report's path
    """
    import matplotlib

    matplotlib.use("Agg")
    folder = Path(folder)
    spec = load_spec(folder)
    table = load_table(folder)
    selected = load_selected(folder)
    lines = _header(folder, spec, table, reps) + (_tuning_section(selected, folder / SENSITIVITY_PNG) if selected else [])
    lines += _body(folder, table, spec.get("settings") or {}, reps, seed)
    path = folder / REPORT_FILE
    tmp = path.with_name(f"{REPORT_FILE}.tmp")
    tmp.write_text("\n".join(lines).rstrip() + "\n")
    tmp.replace(path)
    return path


def _body(folder: Path, table: pd.DataFrame, settings: dict[str, Any], reps: int, seed: int) -> list[str]:
    labels = ordered_labels(table)
    scores = final_scores(table)
    episodes = int(settings.get("eval_episodes", RunConfig().eval_episodes))
    referenced = scores[scores["score"].notna()]
    matrices, envs, notes = score_matrices(referenced, labels) if not referenced.empty else ({}, [], [])
    left_out = sorted(set(scores["env"]) - set(referenced["env"]))
    lines = _scores_section(scores, episodes)
    if matrices:
        notes = [*notes, *([f"Left out (no reference): {', '.join(left_out)}."] if left_out else [])]
        points, intervals = aggregate_estimates(matrices, reps, seed)
        lines += _aggregate_section(points, intervals, matrices, envs, notes)
        _plot_aggregates(points, intervals, list(matrices), folder / AGGREGATES_PNG)
        lines += _improvement_section(*improvement_estimates(matrices, reps, seed), folder / IMPROVEMENT_PNG)
        lines += _profiles_section(matrices, reps, seed, folder / PROFILES_PNG)
    else:
        lines += _no_aggregates_section(left_out, notes)
    lines += _per_env_section(scores, labels, episodes, reps, seed)
    lines += _curves_section(table, scores, labels, episodes, reps, seed, folder / CURVES_PNG, settings)
    return lines + _failures_section(folder)


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


def _figure_caption(folder: Path) -> str:
    """:param folder: a study folder
    :return: what a figure of it aggregates: the number of runs and seeds and the budget of each run"""
    table = load_table(folder)
    runs = table.groupby(["env", "algo", "policy", "p", "seed"])["timesteps"].max()
    low, high = int(runs.min()), int(runs.max())
    budget = f"{low:,}" if low == high else f"{low:,} to {high:,}"
    return f"{len(runs)} runs, {table['seed'].nunique()} seeds; budget {budget} steps (iterations, epochs) per run"


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


def _tuning_section(selected: dict[str, Any], png: Path) -> list[str]:
    groups = sorted(selected.get("groups") or [], key=lambda g: (_env_name(g), g["policy"] != BASELINE))
    grid = selected.get("grid") or {}
    seeds = selected.get("tuning_seeds") or []
    n_points = int(np.prod([len(v) for v in grid.values()])) if grid else 0
    values = "; ".join(f"{k} in {{{', '.join(value_text(v) for v in vs)}}}" for k, vs in grid.items())
    per = (
        "one setting per (algo, policy, p) for all envs was selected by the IQM over tuning seeds and envs of"
        if selected.get("across_envs")
        else "one setting per (algo, env, policy, p) was selected by the IQM over the tuning seeds of"
    )
    lines = [
        "## Tuning",
        "",
        f"Tune then test: every grid point ({values}: {n_points} points) ran on {len(seeds)} tuning seed(s) "
        f"({_seed_range(seeds)}), disjoint from the final seeds; {per} each run's "
        f"{selected.get('metric_description', selected.get('metric'))}, with a 95% CI; rule: {selected.get('rule')}. "
        f"Every other section compares the final runs alone, with the selected values. Every grid point's score: "
        f"`{SELECTED_FILE}`; the tuning runs and their own report: `tuning/`.",
        "",
        "| env | policy | selected | tuning score | other points whose CI overlaps |",
        "| --- | --- | --- | --- | --- |",
    ]
    several = len({g["algo"] for g in groups}) > 1
    for group in groups:
        best = next(s for s in group["scores"] if s["point"] == group["selected"])
        overlap = sum(s["ci"][1] >= best["ci"][0] and s["ci"][0] <= best["ci"][1] for s in group["scores"]) - 1
        score = _ci(best["iqm"], *best["ci"]) + ("" if group["normalised"] else " (raw)")
        lines.append(
            f"| {_env_name(group)} | {_group_label(group, several)} | {point_text(group['selected'])} | {score} | "
            f"{overlap} of {len(group['scores']) - 1} |"
        )
    if not all(g["normalised"] for g in groups):
        lines += ["", "(raw): the env has no reference for this metric, so its tuning scores are not normalised; the "
                  "ranking within a group is the same as with normalised ones."]  # fmt: skip
    if groups and grid:
        _plot_sensitivity(groups, grid, png)
        lines += [
            "",
            "Sensitivity: the tuning score (IQM over the tuning runs, 95% CI) against each tuned value, one line per "
            "policy; with several tuned keys, each value's score is that of its best grid point; a star marks the "
            "selected value.",
            "",
            f"![sensitivity]({png.name})",
        ]
    return [*lines, ""]


def _seed_range(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _env_name(group: dict[str, Any]) -> str:
    env = group["env"]
    return f"all envs ({', '.join(env)})" if isinstance(env, list) else str(env)


def _group_label(group: dict[str, Any], several_algos: bool) -> str:
    return (f"{group['algo']}/" if several_algos else "") + policy_label(group["policy"], float(group["p"]))


def _value_scores(scores: list[dict[str, Any]], key: str, value: Any) -> tuple[float, float, float]:
    """:return: IQM and CI of the best grid point with ``key = value``"""
    best = max((s for s in scores if s["point"].get(key) == value), key=lambda s: s["iqm"])
    return best["iqm"], best["ci"][0], best["ci"][1]


def _positions(values: list[Any]) -> tuple[list[float], str]:
    """:return: x positions of tuned values and the axis scale: the values (log when positive and spanning 10x or
    more), or 0, 1, ... for values that are not numbers"""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        numbers = [float(v) for v in values]
        wide = min(numbers) > 0 and max(numbers) >= 10 * min(numbers)
        return numbers, "log" if wide else "linear"
    return [float(i) for i in range(len(values))], "linear"


def _plot_sensitivity(groups: list[dict[str, Any]], grid: dict[str, list[Any]], png: Path) -> None:
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(_env_name(g) for g in groups))
    several = len({g["algo"] for g in groups}) > 1
    colors = _colors(list(dict.fromkeys(_group_label(g, several) for g in groups)))
    fig, axes = plt.subplots(len(envs), len(grid), figsize=(4.5 * len(grid), 3.3 * len(envs)), squeeze=False)
    for row, env in enumerate(envs):
        for col, (key, values) in enumerate(grid.items()):
            ax = axes[row][col]
            xs, scale = _positions(values)
            for group in (g for g in groups if _env_name(g) == env):
                label = _group_label(group, several)
                iqm, low, high = np.array([_value_scores(group["scores"], key, v) for v in values]).T
                ax.errorbar(xs, iqm, yerr=[iqm - low, high - iqm], color=colors[label], label=label, marker="o", capsize=3)
                chosen = values.index(group["selected"][key])
                ax.plot(xs[chosen], iqm[chosen], marker="*", markersize=14, color=colors[label], linestyle="none")
            ax.set_xscale(scale)
            ax.set_xticks(xs, [value_text(v) for v in values])
            ax.minorticks_off()
            ax.set_title(env, fontsize="medium")
            ax.set_xlabel(key)
            ax.set_ylabel("tuning score (IQM)", fontsize="small")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    _save(fig, png)


def _taus(matrices: dict[str, np.ndarray]) -> np.ndarray:
    values = np.concatenate([m.ravel() for m in matrices.values()])
    return np.linspace(min(0.0, float(values.min())), max(1.0, float(values.max())), 81)


def _save(fig: Any, png: Path) -> None:
    import matplotlib.pyplot as plt

    fig.text(0.5, 0.0, _figure_caption(png.parent), ha="center", va="top", fontsize="small", color="0.3")
    fig.savefig(png, dpi=120, bbox_inches="tight")
    plt.close(fig)


#: Seaborn's colorblind palette in an order where neighbours differ most (its orange and vermillion, 1 and 3, far apart).
PALETTE_ORDER = (0, 1, 2, 4, 9, 7, 5, 3, 8, 6)


def _colors(labels: list[str]) -> dict[str, Any]:
    import seaborn as sns

    if len(labels) > len(PALETTE_ORDER):
        return dict(zip(labels, sns.color_palette("husl", len(labels))))
    palette = sns.color_palette("colorblind", n_colors=10)
    colors = [palette[i] for i in PALETTE_ORDER]
    return dict(zip(labels, colors))


def _plot_aggregates(points: dict, intervals: dict, labels: list[str], png: Path) -> None:
    from rliable import plot_utils

    fig, _ = plot_utils.plot_interval_estimates(
        points,
        intervals,
        metric_names=list(AGGREGATES),
        algorithms=labels,
        colors=_colors(labels),
        xlabel="Normalised score",
        row_height=0.7,
        subfigure_width=3.6,
        xlabel_y_coordinate=-0.2 - 0.4 / len(labels),
    )
    _save(fig, png)


def _plot_improvement(points: dict, intervals: dict, png: Path) -> None:
    from rliable import plot_utils

    ax = plot_utils.plot_probability_of_improvement(points, intervals, figsize=(4.5, 0.6 + 0.5 * len(points)))
    _save(ax.figure, png)


def _plot_profiles(profiles: dict, cis: dict, taus: np.ndarray, png: Path) -> None:
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    fig, ax = plt.subplots(figsize=(6, 4))
    plot_utils.plot_performance_profiles(
        profiles,
        taus,
        performance_profile_cis=cis,
        colors=_colors(list(profiles)),
        xlabel=r"Normalised score ($\tau$)",
        ax=ax,
        labelsize="medium",
        ticklabelsize="medium",
    )
    ax.legend(loc="upper right")
    _save(fig, png)


def _plot_curves(panels: list[tuple[str, str, dict]], labels: list[str], png: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    colors = _colors(labels)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (env, name, data) in zip(axes[0], panels):
        for label, (t, iqm, low, high) in data.items():
            ax.plot(t, iqm, color=colors[label], label=label, marker="o" if len(t) == 1 else None)
            ax.fill_between(t, low, high, color=colors[label], alpha=0.2)
        ax.set_title(env)
        ax.set_xlabel("timesteps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_ylabel(f"{name}, IQM over seeds", fontsize="small")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    _save(fig, png)
