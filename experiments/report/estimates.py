"""The estimates of a report, each with a 95% stratified-bootstrap interval from a fixed seed (rliable): aggregate
scores, probability of improvement over softmax, performance profiles, and learning curves (IQM over seeds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from experiments.report.tables import BASELINE

#: Learning-curve metrics, by preference: evaluation return (SB3), exact V(rho) (exact PG), test accuracy (supervised).
CURVE_METRICS = ("eval_return", "value", "test_accuracy")
#: At most this many points per learning curve are bootstrapped and drawn.
CURVE_POINTS = 100
AGGREGATES = ("IQM", "Mean", "Optimality gap")


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
