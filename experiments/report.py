"""The report of a study: learning curves, aggregate scores, probability of improvement and performance profiles (rliable).

Every number with an interval comes from rliable's stratified bootstrap (``rly.get_interval_estimates``) over runs, so
the conclusions carry 95% confidence intervals. Final scores are normalised per env before they are aggregated across
envs (``NORMALISATIONS``): by V* where the env has a transition model, by published random and human scores for the
Atari games of ``ATARI_SCORES``, otherwise min-max over the runs of the study; the report says which.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.config import RunConfig
from experiments.errors import UsageError
from experiments.study import FAILED_DIR, RESULTS_FILE, complete_runs, format_duration, load_spec, policy_label

REPORT_FILE = "report.md"
CURVES_PNG = "curves.png"
AGGREGATES_PNG = "aggregates.png"
IMPROVEMENT_PNG = "improvement.png"
PROFILES_PNG = "profiles.png"
#: Learning-curve metrics, by preference: evaluation return (SB3), exact V(rho) (exact PG), test accuracy (supervised).
CURVE_METRICS = ("eval_return", "value", "test_accuracy")
#: At most this many points per learning curve are bootstrapped and drawn.
CURVE_POINTS = 100
BASELINE = "softmax"
#: Columns that identify a run in a study's table (with its env).
RUN_KEYS = ("label", "algo", "seed")
AGGREGATES = ("IQM", "Mean", "Optimality gap")

#: Random and human scores (random, human) of Atari games, from DeepMind's DQN Zoo (``dqn_zoo/atari_data.py``), the
#: normalisation of the Atari-57 literature (human scores of Mnih et al. 2015 and van Hasselt et al. 2016) that
#: rliable's Atari results use. Only these games are normalised this way; other Atari games fall back to min-max.
ATARI_SCORES: dict[str, tuple[float, float]] = {
    "Asterix": (210.0, 8503.3),
    "BeamRider": (363.9, 16926.5),
    "Breakout": (1.7, 30.5),
    "Enduro": (0.0, 860.5),
    "Freeway": (0.0, 29.6),
    "MsPacman": (307.3, 6951.6),
    "Pong": (-20.7, 14.6),
    "Qbert": (163.9, 13455.0),
    "Seaquest": (68.4, 42054.7),
    "SpaceInvaders": (148.0, 1668.7),
}


@dataclass(frozen=True)
class Normalisation:
    """How the final score of an env's runs is read from the table and put on a common scale."""

    metric: str
    description: str
    scale: Callable[[np.ndarray, str], np.ndarray | None]


def _identity(values: np.ndarray, env: str) -> np.ndarray:
    return values


def _atari(values: np.ndarray, env: str) -> np.ndarray | None:
    game = atari_game(env)
    if game not in ATARI_SCORES:
        return None
    random, human = ATARI_SCORES[game]
    return (values - random) / (human - random)


def _min_max(values: np.ndarray, env: str) -> np.ndarray:
    low, high = float(np.min(values)), float(np.max(values))
    return np.zeros_like(values) if high == low else (values - low) / (high - low)


#: Tried in order for each env; the first whose metric every run has and whose ``scale`` applies is used.
NORMALISATIONS = (
    Normalisation("fraction_of_optimal", "V*: value of the final greedy policy over V* (transition model)", _identity),
    Normalisation("test_accuracy", "none: test accuracy is in [0, 1]", _identity),
    Normalisation("final_return", "random/human: (return - random) / (human - random), DQN Zoo's Atari scores", _atari),
    Normalisation("final_return", "min-max over the study's runs on this env", _min_max),
    Normalisation("eval_return", "min-max over the study's runs on this env (last evaluation return)", _min_max),
)


def atari_game(env: str) -> str:
    """:param env: an env id (``ALE/Pong-v5``, ``PongNoFrameskip-v4``)
    :return: the game's name (``Pong``)"""
    name = env.split(":")[-1].removeprefix("ALE/")
    name = re.sub(r"-v\d+$", "", name)
    return re.sub(r"(NoFrameskip|Deterministic)$", "", name)


def load_table(folder: Path) -> pd.DataFrame:
    """:param folder: a study folder
    :return: its results table with a ``label`` column (policy, with algo when the study has several)"""
    path = Path(folder) / RESULTS_FILE
    if not path.exists():
        raise UsageError(f"{folder} has no {RESULTS_FILE}: run the study first (python train.py ... with several runs)")
    table = pd.read_csv(path)
    if table.empty:
        raise UsageError(f"{folder} has no complete run yet: nothing to report")
    several_algos = table["algo"].nunique() > 1
    labels = {
        key: (f"{key[0]}/" if several_algos else "") + policy_label(key[1], float(key[2]))
        for key in table[["algo", "policy", "p"]].drop_duplicates().itertuples(index=False, name=None)
    }
    table["label"] = [labels[k] for k in zip(table["algo"], table["policy"], table["p"])]
    return table


def ordered_labels(table: pd.DataFrame) -> list[str]:
    """:param table: results with labels
    :return: labels, softmax ones first, then in order of appearance"""
    labels = list(dict.fromkeys(table["label"]))
    return sorted(labels, key=lambda label: (not label.endswith(BASELINE), labels.index(label)))


def final_scores(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Normalisation]]:
    """One final score per run, raw and normalised per env.

    :param table: results with labels
    :return: a frame (env, label, algo, seed, raw, score) and the normalisation used for each env
    """
    frames, used = [], {}
    for env, rows in table.groupby("env", sort=True):
        runs = pd.MultiIndex.from_frame(rows[list(RUN_KEYS)].drop_duplicates())
        for norm in NORMALISATIONS:
            raw = _last(rows, norm.metric).reindex(runs)
            if raw.isna().any():
                continue
            scaled = norm.scale(raw.to_numpy(dtype=float), str(env))
            if scaled is not None:
                used[str(env)] = norm
                frame = raw.rename("raw").reset_index()
                frame.insert(0, "env", env)
                frame["score"] = scaled
                frames.append(frame)
                break
    if not frames:
        raise UsageError("no run has a final score (fraction_of_optimal, test_accuracy, final_return or eval_return)")
    return pd.concat(frames, ignore_index=True), used


def _last(rows: pd.DataFrame, metric: str) -> pd.Series:
    """:return: the last value of ``metric`` of each run (label, algo, seed) that has it"""
    values = rows[rows["metric"] == metric].sort_values("timesteps", kind="stable")
    return values.groupby(list(RUN_KEYS), sort=False)["value"].last()


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
    lines = _header(folder, spec, table, reps) + _body(folder, table, reps, seed)
    path = folder / REPORT_FILE
    tmp = path.with_name(f"{REPORT_FILE}.tmp")
    tmp.write_text("\n".join(lines).rstrip() + "\n")
    tmp.replace(path)
    return path


def _body(folder: Path, table: pd.DataFrame, reps: int, seed: int) -> list[str]:
    labels = ordered_labels(table)
    scores, used = final_scores(table)
    matrices, envs, notes = score_matrices(scores, labels)
    lines = _normalisation_section(used)
    if matrices:
        points, intervals = aggregate_estimates(matrices, reps, seed)
        lines += _aggregate_section(points, intervals, matrices, envs, notes)
        _plot_aggregates(points, intervals, list(matrices), folder / AGGREGATES_PNG)
        lines += _improvement_section(*improvement_estimates(matrices, reps, seed), folder / IMPROVEMENT_PNG)
        taus = _taus(matrices)
        profiles, profile_cis = profile_estimates(matrices, taus, reps, seed)
        _plot_profiles(profiles, profile_cis, taus, folder / PROFILES_PNG)
        lines += [
            "## Performance profiles",
            "",
            "Fraction of runs whose normalised score exceeds tau, with 95% CIs.",
            "",
            f"![performance profiles]({PROFILES_PNG})",
            "",
        ]
    lines += _per_env_section(scores, labels, used, reps, seed)
    lines += _curves_section(table, labels, reps, seed, folder / CURVES_PNG)
    return lines + _failures_section(folder)


def _header(folder: Path, spec: dict[str, Any], table: pd.DataFrame, reps: int) -> list[str]:
    from importlib.metadata import version

    n_runs = len(complete_runs(folder))
    n_grid = len(spec.get("runs", []))
    settings = spec.get("settings", {})
    defaults = RunConfig().to_dict()
    setting_text = ", ".join(f"{k}={v}" for k, v in settings.items() if v != defaults.get(k)) or "defaults"
    wall = table[table["metric"] == "wall_time"].drop_duplicates(["env", "algo", "policy", "p", "seed"])["value"].sum()
    return [
        f"# Study {spec.get('name', folder.name)}",
        "",
        f"{n_runs} complete runs ({n_grid} in study.yml); envs: {', '.join(sorted(table['env'].unique()))}; "
        f"policies: {', '.join(ordered_labels(table))}; seeds: {table['seed'].nunique()}; "
        f"total training time {format_duration(float(wall))}.",
        f"Settings: {setting_text}.",
        "",
        f"Intervals are 95% stratified-bootstrap confidence intervals over runs (rliable {version('rliable')}, "
        f"{reps} replications). Regenerate with `python train.py report {folder}`; data: `{RESULTS_FILE}`.",
        "",
    ]


def _normalisation_section(used: dict[str, Normalisation]) -> list[str]:
    lines = ["## Scores", "", "| env | final score | normalised by |", "| --- | --- | --- |"]
    lines += [f"| {env} | {norm.metric} | {norm.description} |" for env, norm in sorted(used.items())]
    return [*lines, ""]


def _ci(point: Any, low: Any, high: Any) -> str:
    point, low, high = (float(np.ravel(v)[0]) for v in (point, low, high))
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def _aggregate_section(points: dict, intervals: dict, matrices: dict, envs: list[str], notes: list[str]) -> list[str]:
    lines = [
        "## Aggregate scores across envs",
        "",
        f"Normalised final scores over {len(envs)} env(s): interquartile mean, mean and optimality gap (mean of "
        "max(1 - score, 0); lower is better).",
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


def _improvement_section(points: dict, intervals: dict, png: Path) -> list[str]:
    lines = ["## Probability of improvement over softmax", ""]
    if not points:
        return [*lines, "The study has no softmax runs to compare with.", ""]
    lines += [
        "P(X > Y): probability that a run of X scores higher than a run of Y on a randomly chosen env "
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


def _per_env_section(scores: pd.DataFrame, labels: list[str], used: dict, reps: int, seed: int) -> list[str]:
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
            lines.append(f"| {env} | {label} | {len(mine)} | {used[env].metric} | {ci} | {mine['score'].mean():.3f} |")
    return [*lines, ""]


def _curves_section(table: pd.DataFrame, labels: list[str], reps: int, seed: int, png: Path) -> list[str]:
    envs = sorted(table["env"].unique())
    panels = []
    for env in envs:
        metric = curve_metric(table[table["env"] == env])
        if metric is not None:
            panels.append((env, metric, curves(table, env, metric, labels, reps, seed)))
    lines = ["## Learning curves", ""]
    if not panels:
        return [*lines, "No run recorded a learning curve (periodic evaluation was off: --eval-freq 0).", ""]
    _plot_curves(panels, labels, png)
    lines += ["IQM over seeds at each evaluation, with 95% bootstrap bands.", "", f"![learning curves]({png.name})", ""]
    return lines


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


def _taus(matrices: dict[str, np.ndarray]) -> np.ndarray:
    values = np.concatenate([m.ravel() for m in matrices.values()])
    return np.linspace(min(0.0, float(values.min())), max(1.0, float(values.max())), 81)


def _save(fig: Any, png: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(png, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _colors(labels: list[str]) -> dict[str, Any]:
    import seaborn as sns

    return dict(zip(labels, sns.color_palette("colorblind", n_colors=len(labels))))


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
    for ax, (env, metric, data) in zip(axes[0], panels):
        for label, (t, iqm, low, high) in data.items():
            ax.plot(t, iqm, color=colors[label], label=label, marker="o" if len(t) == 1 else None)
            ax.fill_between(t, low, high, color=colors[label], alpha=0.2)
        ax.set_title(env)
        ax.set_xlabel("timesteps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_ylabel(f"{metric} (IQM over seeds)")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    _save(fig, png)
