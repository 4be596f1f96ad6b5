"""Tune-then-test: the grid of ``--tune``, the tuning seeds, what a tuned study refuses, and its runs (every group x
grid point x tuning seed, and the final runs with each group's selected values).

A tuned study (``experiments.study.launch.run_tuned_study``) runs, for every group of the study, each grid point of
``--tune`` on the tuning seeds, selects the best point by ``--tune-metric`` (``experiments.study.selection``), and runs
the group's final runs with the selected values on the ``--seeds`` seeds. A group is an (algo, env, policy, p) of the
study; with ``--tune-across-envs`` it is an (algo, policy, p), and one point is selected for all envs by the IQM of its
normalised scores over (tuning seed, env).

**Tuning seeds** are ``TUNING_SEED_BASE + k`` for ``k = 0 .. --tune-seeds - 1``, and a tuned study refuses final seeds
``>= TUNING_SEED_BASE``: the two sets are disjoint by construction. Every seed of a run (env copies, evaluation env) is a
``SeedSequence`` hash of the run's seed (``envs.seeding``), so no env seed is shared either. Every grid point and group
uses the same tuning seeds (common random numbers).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from experiments.config import RunConfig, load_yaml
from experiments.errors import UsageError
from experiments.reference import model_reference, table_reference
from experiments.study.naming import env_label

#: Tuning seeds are TUNING_SEED_BASE, TUNING_SEED_BASE + 1, ...; final seeds of a tuned study stay below it.
TUNING_SEED_BASE = 1_000_000
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


def _config_group(config: RunConfig, across_envs: bool) -> tuple[Any, ...]:
    return group_key(config.algo, env_label(config.env, config.env_kwargs), config.policy, config.p, across_envs)


def group_key(algo: str, env: str, policy: str, p: float, across_envs: bool) -> tuple[Any, ...]:
    """:return: the key of a run's group: (algo, env, policy, p), or (algo, policy, p) across envs"""
    return (str(algo), str(policy), float(p)) if across_envs else (str(algo), str(env), str(policy), float(p))


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
