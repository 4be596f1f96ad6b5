"""The tables of a report: a study's results with a label per policy (``load_table``), one final score per run, raw and
normalised (``final_scores``), and the (runs x envs) matrices that rliable aggregates (``score_matrices``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.errors import UsageError
from experiments.reference import SCORE_METRICS, score_metric, score_policy
from experiments.study.layout import POINT_COLUMN, RESULTS_FILE
from experiments.study.naming import env_label, policy_label
from experiments.study.storage import read_results

BASELINE = "softmax"
#: Columns that identify a run in a study's table (with its env).
RUN_KEYS = ("label", "algo", "seed")
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
