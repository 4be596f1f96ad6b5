"""The selection of a tuned study: each tuning run's score, each grid point's IQM with its CI, the best point of each
group, and ``selected.yml``.

**Score of a run** (``TUNE_METRICS``): ``auc``, the area under its evaluation curve (``eval_return`` at each evaluation,
and ``final_return`` where it is later) divided by the span of timesteps it covers, i.e. the curve's average height,
normalised by the env's reference for returns (``experiments.reference.reference_for``: the table
``reference_scores.yml``); or ``final``, its final score (``normalized_score`` of ``results.csv``, whose reference may be
V* on a transition model). Where the env has no such reference the raw score is used, and ``selected.yml`` says
``normalised: false``: a positive affine map changes no ranking within a group, but scores of envs on other scales
cannot be pooled, so ``--tune-across-envs`` needs a reference on every env.

**Score of a grid point**: the IQM (rliable ``aggregate_iqm``) over its runs, with a 95% stratified-bootstrap CI
(bootstrap seed ``BOOTSTRAP_SEED``). **Selection**: the highest IQM; ties go to the point listed first in the grid
(values in the order given, the first key varying slowest). The same tuning runs always select the same values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from experiments.errors import UsageError
from experiments.reference import reference_for, score_metric
from experiments.study.layout import POINT_COLUMN, SELECTED_FILE
from experiments.study.naming import env_label, point_text
from experiments.study.tuning import SELECTION_RULE, TUNE_METRICS, PointScore, Selection, TuneSpec

BOOTSTRAP_SEED = 0


def run_scores(table: pd.DataFrame, metric: str, env_kwargs: Mapping[str, Any]) -> pd.DataFrame:
    """One tuning score per run of a tuning grid's ``results.csv``.

    :param table: the grid's results (with the ``point`` column)
    :param metric: a key of ``TUNE_METRICS``
    :param env_kwargs: the env kwargs of runs whose rows carry none (a table without an ``env_kwargs`` column, or an
        empty one); each run's own (JSON in that column) otherwise
    :return: a frame (algo, env, policy, p, point, seed, score, normalised); ``env`` names the env with its kwargs
        (``env_label``)
    """
    keys = ["algo", "env", "policy", "p", POINT_COLUMN, "seed"]
    kwargs_texts = table["env_kwargs"].fillna("").astype(str) if "env_kwargs" in table else pd.Series("", table.index)
    rows = []
    for (*ident, text), runs in table.assign(env_kwargs=kwargs_texts).groupby([*keys, "env_kwargs"], sort=True):
        kwargs = json.loads(text) if text else dict(env_kwargs)
        score, normalised = RUN_METRICS[metric](runs, str(ident[1]), kwargs)
        row = {**dict(zip(keys, ident)), "env": env_label(str(ident[1]), kwargs)}
        rows.append({**row, "score": score, "normalised": normalised})
    return pd.DataFrame(rows, columns=[*keys, "score", "normalised"])


def curve_area(runs: pd.DataFrame, env_id: str, env_kwargs: Mapping[str, Any]) -> tuple[float, bool]:
    """:param runs: one run's rows
    :param env_id: its env
    :param env_kwargs: its env kwargs
    :return: the average height of its evaluation curve (normalised where the env has a return reference), and
        whether it is normalised"""
    ordered = runs.sort_values("timesteps", kind="stable")
    curve = ordered[ordered["metric"] == "eval_return"][["timesteps", "value"]].to_numpy(dtype=float)
    final = ordered[ordered["metric"] == "final_return"][["timesteps", "value"]].to_numpy(dtype=float)
    if len(final) and (not len(curve) or final[-1, 0] > curve[-1, 0]):
        curve = np.concatenate([curve, final[-1:]])
    if not len(curve):
        raise UsageError(f"a tuning run on {env_id} has no evaluation return: --tune-metric auc needs SB3 runs")
    reference = reference_for("eval_return", env_id, env_kwargs, {})
    values = curve[:, 1] if reference is None else np.array([reference.normalize(v) for v in curve[:, 1]])
    span = curve[-1, 0] - curve[0, 0]
    area = float(np.trapezoid(values, curve[:, 0]) / span) if span > 0 else float(values.mean())
    return area, reference is not None


def final_score(runs: pd.DataFrame, env_id: str, env_kwargs: Mapping[str, Any]) -> tuple[float, bool]:
    """:param runs: one run's rows
    :param env_id: its env
    :param env_kwargs: its env kwargs
    :return: its normalised final score (its raw final score without a reference), and whether it is normalised"""
    last = runs.sort_values("timesteps", kind="stable").groupby("metric")["value"].last()
    if "normalized_score" in last:
        return float(last["normalized_score"]), True
    metric = score_metric(last.index)
    if metric is None:
        raise UsageError(f"a tuning run on {env_id} has no final score")
    return float(last[metric]), False


RUN_METRICS = {"auc": curve_area, "final": final_score}


def select(table: pd.DataFrame, spec: TuneSpec, env_kwargs: Mapping[str, Any], reps: int) -> list[Selection]:
    """Score every grid point of every group and select the best (``SELECTION_RULE``).

    :param table: the tuning grid's ``results.csv``, every run complete
    :param spec: the tuning
    :param env_kwargs: the study's env kwargs
    :param reps: bootstrap replications of the CIs
    :return: one selection per group, in the table's order
    """
    scores = run_scores(table, spec.metric, env_kwargs)
    points = {point_text(p): p for p in spec.points()}
    selections = []
    for key, mine in _groups(scores, spec.across_envs):
        if spec.across_envs and not mine["normalised"].all():
            raise UsageError(f"--tune-across-envs: the runs of {key} have no normalised score on every env")
        matrices = {text: _matrix(mine[mine[POINT_COLUMN] == text]) for text in points}
        missing = [text for text, m in matrices.items() if m.size == 0]
        if missing:
            raise ValueError(f"group {key}: no tuning run of {missing[0]}")
        estimates = iqm_estimates(matrices, reps)
        ranked = [PointScore(points[t], *estimates[t], runs=int(matrices[t].size)) for t in points]
        best = max(ranked, key=lambda s: s.iqm)  # max keeps the first of equal scores: the grid's order breaks ties
        selections.append(Selection(_group_dict(key, mine), best.point, bool(mine["normalised"].all()), ranked))
    return selections


def _groups(scores: pd.DataFrame, across_envs: bool) -> Iterable[tuple[tuple[Any, ...], pd.DataFrame]]:
    keys = ["algo", "policy", "p"] if across_envs else ["algo", "env", "policy", "p"]
    return scores.groupby(keys, sort=False)


def _group_dict(key: tuple[Any, ...], rows: pd.DataFrame) -> dict[str, Any]:
    algo, *rest = key
    env = sorted(rows["env"].unique()) if len(key) == 3 else rest.pop(0)
    policy, p = rest
    return {"algo": str(algo), "env": env, "policy": str(policy), "p": float(p)}


def _matrix(rows: pd.DataFrame) -> np.ndarray:
    """:return: (seeds x envs) scores of one grid point, the seeds sorted (an env with fewer seeds is cut)"""
    columns = [r.sort_values("seed")["score"].to_numpy(dtype=float) for _, r in rows.groupby("env", sort=True)]
    if not columns:
        return np.zeros((0, 0))
    n = min(len(c) for c in columns)
    return np.stack([c[:n] for c in columns], axis=1)


def iqm_estimates(matrices: Mapping[str, np.ndarray], reps: int) -> dict[str, tuple[float, float, float]]:
    """IQM and 95% stratified-bootstrap CI (rliable) of each (runs x envs) matrix, from a fixed bootstrap seed.

    :param matrices: name -> scores
    :param reps: bootstrap replications
    :return: name -> (IQM, low, high)
    """
    from rliable import library as rly
    from rliable import metrics

    state = np.random.get_state()
    np.random.seed(BOOTSTRAP_SEED)
    try:
        points, intervals = rly.get_interval_estimates(
            dict(matrices), lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps
        )
    finally:
        np.random.set_state(state)
    return {k: (float(points[k][0]), float(intervals[k][0][0]), float(intervals[k][1][0])) for k in matrices}


def write_selected(folder: Path, spec: TuneSpec, selections: Sequence[Selection]) -> Path:
    """Write ``selected.yml`` atomically; a selection that differs from the one recorded before is refused.

    :param folder: the tuned study's folder
    :param spec: the tuning
    :param selections: one per group
    :return: the file
    :raises UsageError: when a group's selection differs from the recorded one (the same tuning runs select the same
        values, so its tuning runs changed, and its final runs may have used the old values)
    """
    path = Path(folder) / SELECTED_FILE
    groups = [s.to_dict() for s in selections]
    if path.exists():
        _check_unchanged(load_selected(folder).get("groups") or [], groups, folder)
    data = {
        "metric": spec.metric,
        "metric_description": TUNE_METRICS[spec.metric],
        "rule": SELECTION_RULE,
        "across_envs": spec.across_envs,
        "tuning_seeds": list(spec.seeds),
        "grid": spec.grid,
        "groups": groups,
    }
    tmp = path.with_name(f"{SELECTED_FILE}.tmp")
    tmp.write_text(yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False, width=1000))
    os.replace(tmp, path)
    return path


def _identity(group: Mapping[str, Any]) -> str:
    return json.dumps({k: group[k] for k in ("algo", "env", "policy", "p")}, sort_keys=True)


def _check_unchanged(old: list[dict[str, Any]], new: list[dict[str, Any]], folder: Path) -> None:
    before = {_identity(g): g["selected"] for g in old}
    for group in new:
        previous = before.get(_identity(group))
        if previous is not None and json.dumps(previous, sort_keys=True) != json.dumps(group["selected"], sort_keys=True):
            raise UsageError(
                f"the selection of {group['policy']} on {group['env']} changed from {point_text(previous)} to "
                f"{point_text(group['selected'])} since {SELECTED_FILE} was written in {folder}: its tuning runs changed; "
                "delete that folder or choose another --study name"
            )


def load_selected(folder: Path) -> dict[str, Any]:
    """:param folder: a tuned study's folder
    :return: its ``selected.yml`` (empty when it has none)"""
    path = Path(folder) / SELECTED_FILE
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
