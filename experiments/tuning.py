"""Tune-then-test: the grid of ``--tune``, the tuning seeds, the selection of each group's values and ``selected.yml``.

A tuned study (``experiments.study.run_tuned_study``) runs, for every group of the study, each grid point of ``--tune``
on the tuning seeds, selects the best point by ``--tune-metric``, and runs the group's final runs with the selected
values on the ``--seeds`` seeds. A group is an (algo, env, policy, p) of the study; with ``--tune-across-envs`` it is an
(algo, policy, p), and one point is selected for all envs by the IQM of its normalised scores over (tuning seed, env).

**Tuning seeds** are ``TUNING_SEED_BASE + k`` for ``k = 0 .. --tune-seeds - 1``, and a tuned study refuses final seeds
``>= TUNING_SEED_BASE``: the two sets are disjoint by construction. Every seed of a run (env copies, evaluation env) is a
``SeedSequence`` hash of the run's seed (``envs.seeding``), so no env seed is shared either. Every grid point and group
uses the same tuning seeds (common random numbers).

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

import itertools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from experiments.config import RunConfig, load_yaml
from experiments.errors import UsageError
from experiments.reference import model_reference, reference_for, score_metric, table_reference

SELECTED_FILE = "selected.yml"
TUNING_DIR = "tuning"
#: Tuning seeds are TUNING_SEED_BASE, TUNING_SEED_BASE + 1, ...; final seeds of a tuned study stay below it.
TUNING_SEED_BASE = 1_000_000
#: Column of a tuning grid's ``results.csv`` that names the run's grid point (``point_text``).
POINT_COLUMN = "point"
BOOTSTRAP_SEED = 0
#: Run fields the command line sets for every run, which a grid cannot vary.
RUN_FIELDS = ("algo", "env", "policy", "p", "seed")
#: Hyperparameters that a command-line flag overrides when it is given.
FLAG_KEYS = ("n_timesteps", "n_envs")
TUNE_METRICS = {
    "auc": "area under the evaluation curve (its average height over the timesteps it covers), normalised by the env's "
    "return reference",
    "final": "final score (normalized_score)",
}
SELECTION_RULE = "highest IQM over the tuning runs; ties: the grid point listed first"


@dataclass(frozen=True)
class TuneSpec:
    """What a tuned study tunes: the grid (key -> values, in the order given), the tuning seeds, the metric and
    whether one setting is selected per env or across envs."""

    grid: dict[str, list[Any]]
    seeds: tuple[int, ...]
    metric: str = "auc"
    across_envs: bool = False

    @property
    def keys(self) -> tuple[str, ...]:
        """:return: the tuned hyperparameters"""
        return tuple(self.grid)

    def points(self) -> list[dict[str, Any]]:
        """:return: every grid point, the first key varying slowest"""
        return [dict(zip(self.grid, values)) for values in itertools.product(*self.grid.values())]

    def settings(self) -> dict[str, Any]:
        """:return: the spec as plain data, for ``study.yml`` (a rerun with another spec is refused)"""
        return {"grid": self.grid, "seeds": list(self.seeds), "metric": self.metric, "across_envs": self.across_envs}


@dataclass
class PointScore:
    """A grid point's tuning score: IQM over its runs and the 95% CI."""

    point: dict[str, Any]
    iqm: float
    low: float
    high: float
    runs: int

    def to_dict(self) -> dict[str, Any]:
        """:return: plain data for ``selected.yml``"""
        return {"point": self.point, "iqm": self.iqm, "ci": [self.low, self.high], "runs": self.runs}


@dataclass
class Selection:
    """One group's selection: the group (algo, env or envs, policy, p), the chosen point and every point's score."""

    group: dict[str, Any]
    selected: dict[str, Any]
    normalised: bool
    scores: list[PointScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """:return: plain data for ``selected.yml``"""
        return {
            **self.group,
            "selected": self.selected,
            "normalised": self.normalised,
            "scores": [s.to_dict() for s in self.scores],
        }


def parse_grid(pairs: Sequence[str]) -> dict[str, list[Any]]:
    """Parse ``--tune KEY=V1,V2,...``: each value list is read as a YAML flow sequence, so ``1e-4,3e-4`` are numbers,
    ``sgd,adam`` strings and ``[64, 64],[32]`` lists.

    :param pairs: the arguments of ``--tune``
    :return: key -> distinct values, in the order given
    :raises UsageError: for a malformed argument, a repeated key or an empty list
    """
    grid: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise UsageError(f"--tune: '{pair}' is not of the form KEY=V1,V2,... (e.g. --tune learning_rate=1e-4,3e-4)")
        if key in grid:
            raise UsageError(f"--tune: {key} is given twice: list all its values once, KEY=V1,V2,...")
        try:
            values = load_yaml(f"[{text}]")
        except yaml.YAMLError as err:
            raise UsageError(f"--tune: the values of {key} are not valid YAML ({str(err).splitlines()[0]})") from None
        if not values or any(v is None for v in values) or text.strip().startswith(",") or text.strip().endswith(","):
            raise UsageError(f"--tune: {key} needs values, KEY=V1,V2,... (got '{pair}')")
        grid[key] = list({json.dumps(v, sort_keys=True): v for v in values}.values())
    return grid


def tuning_seeds(n: int) -> tuple[int, ...]:
    """:param n: ``--tune-seeds``
    :return: the tuning seeds ``TUNING_SEED_BASE .. TUNING_SEED_BASE + n - 1``"""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= TUNING_SEED_BASE:
        raise UsageError(f"--tune-seeds must be a whole number >= 1 (got {n!r})")
    return tuple(TUNING_SEED_BASE + k for k in range(n))


def make_spec(pairs: Sequence[str], n_seeds: int, metric: str, across_envs: bool) -> TuneSpec:
    """:param pairs: ``--tune``
    :param n_seeds: ``--tune-seeds``
    :param metric: ``--tune-metric``
    :param across_envs: ``--tune-across-envs``
    :return: the spec
    :raises UsageError: for a bad grid, seed count or metric"""
    if metric not in TUNE_METRICS:
        raise UsageError(f"--tune-metric {metric!r} is unknown: choose one of {', '.join(TUNE_METRICS)}")
    return TuneSpec(parse_grid(pairs), tuning_seeds(n_seeds), metric, across_envs)


def check_configs(spec: TuneSpec, configs: Sequence[RunConfig]) -> None:
    """Refuse what a tuned study cannot honour, before anything runs (every grid point is then built, as in any study).

    :param spec: the tuning
    :param configs: the final runs as the command line gives them
    :raises UsageError: a tuned key that is a run field, set by a flag or also in ``--hyperparams``; a final seed among
        the tuning seeds' range; ``--tune-across-envs`` on an env without a reference for the metric
    """
    for key in spec.keys:
        if key in RUN_FIELDS:
            raise UsageError(f"--tune {key}: {key} is a run field; give its values as --{key} V1 V2 (a group each)")
        for config in configs:
            if key in FLAG_KEYS and getattr(config, key) is not None:
                raise UsageError(f"--tune {key}: --{key.replace('_', '-')} sets it for every run; leave one of them out")
            if key in config.hyperparams:
                raise UsageError(f"--tune {key}: {key} is also given in --hyperparams; give it in one of them")
    late = sorted({c.seed for c in configs if c.seed >= TUNING_SEED_BASE})
    if late:
        raise UsageError(f"--seeds of a tuned study must be below {TUNING_SEED_BASE} (the tuning seeds' range), got {late[0]}")
    if spec.across_envs:
        for config in configs:
            if not has_reference(spec.metric, config.env, config.env_kwargs):
                raise UsageError(
                    f"--tune-across-envs pools normalised scores, and {config.env} has no reference for the "
                    f"{spec.metric} metric: tune per env (leave out --tune-across-envs)"
                    + (" or use --tune-metric final" if spec.metric == "auc" else "")
                )


def has_reference(metric: str, env_id: str, env_kwargs: Mapping[str, Any]) -> bool:
    """:param metric: a tuning metric
    :param env_id: an env
    :param env_kwargs: its kwargs
    :return: whether that metric is normalised on this env (returns: the table; final scores: the table or a model)"""
    if table_reference(env_id, env_kwargs) is not None:
        return True
    return metric == "final" and model_reference(env_id, env_kwargs) is not None


def with_point(config: RunConfig, point: Mapping[str, Any], seed: int | None = None) -> RunConfig:
    """:param config: a run
    :param point: tuned values
    :param seed: a new seed (None: keep it)
    :return: the run with the point's values in its hyperparameters"""
    data = config.to_dict()
    data["hyperparams"] = {**config.hyperparams, **point}
    if seed is not None:
        data["seed"] = seed
    return RunConfig(**data)


def grid_configs(spec: TuneSpec, configs: Sequence[RunConfig]) -> list[RunConfig]:
    """:param spec: the tuning
    :param configs: the final runs (their seeds are dropped)
    :return: every group x grid point x tuning seed, in that order"""
    groups = {_config_group(c, False): c for c in configs}
    return [with_point(c, point, seed) for c in groups.values() for point in spec.points() for seed in spec.seeds]


def value_text(value: Any) -> str:
    """:param value: a tuned value
    :return: it as a command line would give it: ``0.0003``, ``1e-05``, ``sgd``, ``[64, 64]``"""
    if isinstance(value, float):
        return f"{value:g}"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def point_text(point: Mapping[str, Any]) -> str:
    """:param point: tuned values
    :return: ``learning_rate=0.0003 optimizer=sgd``"""
    return " ".join(f"{k}={value_text(v)}" for k, v in point.items())


def point_suffix(point: Mapping[str, Any]) -> str:
    """:param point: tuned values
    :return: a file-name part, ``learning_rate-0.0003_optimizer-sgd`` (a value with other characters is a digest)"""
    parts = []
    for key, value in point.items():
        text = value_text(value)
        if not re.fullmatch(r"[A-Za-z0-9.+-]+", text):
            text = "h" + _digest(text)
        parts.append(f"{key}-{text}")
    return "_".join(parts)


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode()).hexdigest()[:6]


def _config_group(config: RunConfig, across_envs: bool) -> tuple[Any, ...]:
    return group_key(config.algo, env_label(config.env, config.env_kwargs), config.policy, config.p, across_envs)


def kwargs_text(env_kwargs: Mapping[str, Any]) -> str:
    """:param env_kwargs: env kwargs
    :return: ``k=v`` pairs joined by commas, values as JSON (``subgoals=[], slip=0.1``)"""
    return ", ".join(f"{k}={json.dumps(v, separators=(',', ':'), default=str)}" for k, v in env_kwargs.items())


def env_label(env: str, env_kwargs: Mapping[str, Any]) -> str:
    """:param env: an env id
    :param env_kwargs: its kwargs
    :return: how groups, tables and figures name it: the id, with its kwargs where it has some
        (``FourRooms-v0 (slip=0.1)``), so that variants of an env are tuned and reported apart"""
    return f"{env} ({kwargs_text(env_kwargs)})" if env_kwargs else env


def group_key(algo: str, env: str, policy: str, p: float, across_envs: bool) -> tuple[Any, ...]:
    """:return: the key of a run's group: (algo, env, policy, p), or (algo, policy, p) across envs"""
    return (str(algo), str(policy), float(p)) if across_envs else (str(algo), str(env), str(policy), float(p))


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


def final_configs(configs: Sequence[RunConfig], selections: Sequence[Selection], across_envs: bool) -> list[RunConfig]:
    """:param configs: the final runs as the command line gives them
    :param selections: the selections
    :param across_envs: whether groups span envs
    :return: the final runs, each with its group's selected values"""
    chosen = {_selection_key(s, across_envs): s.selected for s in selections}
    return [with_point(c, chosen[_config_group(c, across_envs)]) for c in configs]


def _selection_key(selection: Selection, across_envs: bool) -> tuple[Any, ...]:
    g = selection.group
    return group_key(g["algo"], "" if across_envs else g["env"], g["policy"], g["p"], across_envs)


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
