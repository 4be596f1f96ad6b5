"""The grid of a study: ``Study`` (its runs and folder), ``make_study`` and ``expand_seeds``; ``study.yml``, which
records the settings every run shares and refuses a rerun with other settings (``save_spec``, ``check_spec``); and
``StudyOutcome``, what a launch of a study achieved."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiments.config import RunConfig
from experiments.errors import UsageError
from experiments.results import write_yaml
from experiments.study.layout import RUNS_DIR, STUDY_FILE, complete_runs
from experiments.study.naming import _digest, default_name, kwargs_text, point_of, run_key

#: Fields that identify a run inside a study (its grid fields); every other field of ``RunConfig`` is a setting shared by
#: the whole study. A study can hold envs with their own budgets and env kwargs (a suite's envs).
RUN_FIELDS = ("algo", "env", "env_kwargs", "n_timesteps", "policy", "p", "seed")
#: ``--seeds N`` with a larger N (or a longer list) is refused: no study of this size is meant.
MAX_SEEDS = 100_000
#: Fields that change how a run is launched or displayed, not what it computes.
LAUNCH_FIELDS = ("log_folder", "progress", "verbose", "resume", "checkpoint_freq")


@dataclass(frozen=True)
class Study:
    """A named grid of runs and the folder that holds it."""

    name: str
    folder: Path
    configs: tuple[RunConfig, ...]
    #: Hyperparameters that differ between runs (a tuning grid's point, or a tuned study's selected values): recorded
    #: with each run in ``study.yml``, not in the shared settings.
    tuned: tuple[str, ...] = ()
    #: A tuning grid: run names and ``results.csv`` rows carry the point, so that grid points do not collide.
    grid: bool = False
    #: A tuned study's ``experiments.study.tuning.TuneSpec.settings()``, recorded in the settings.
    tune: dict[str, Any] | None = None

    def key(self, config: RunConfig) -> str:
        """:param config: a run of the study
        :return: its folder name (``run_key``, with the grid point in a tuning grid)"""
        return run_key(config, self.tuned if self.grid else ())

    @property
    def runs_dir(self) -> Path:
        """:return: the folder of complete runs"""
        return self.folder / RUNS_DIR

    def complete(self) -> set[str]:
        """:return: names of the runs of this folder that are complete (in or out of the current grid)"""
        return complete_runs(self.folder)

    def pending(self) -> list[RunConfig]:
        """:return: the runs of the grid that are not complete yet, in grid order"""
        done = self.complete()
        return [c for c in self.configs if self.key(c) not in done]


@dataclass
class StudyOutcome:
    """What a call of ``run_study`` achieved."""

    study: Study
    completed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    interrupted: bool = False
    wall_time: float = 0.0
    report: Path | None = None
    #: A tuned study's tuning grid, and its ``selected.yml`` once written.
    tuning: StudyOutcome | None = None
    selected: Path | None = None

    @property
    def n_complete(self) -> int:
        """:return: runs of the grid that are complete now"""
        done = self.study.complete()
        return sum(self.study.key(c) in done for c in self.study.configs)


def expand_seeds(configs: Sequence[RunConfig], seeds: Sequence[int] | None) -> list[RunConfig]:
    """Give every grid point its seeds and drop runs that would be identical (p only matters for escort).

    :param configs: one config per grid point (seed from ``--seed``)
    :param seeds: ``None`` (keep each config's seed), ``[N]`` (seeds 0..N-1) or an explicit list
    :return: the runs, in grid order, one per distinct ``run_key``
    """
    if seeds is not None and (not seeds or any(s < 0 for s in seeds) or (len(seeds) == 1 and seeds[0] < 1)):
        raise UsageError(f"--seeds takes a count N >= 1 or several seeds >= 0 (got {' '.join(map(str, seeds))})")
    if seeds is not None and max(len(seeds), seeds[0] if len(seeds) == 1 else 0) > MAX_SEEDS:
        count = seeds[0] if len(seeds) == 1 else len(seeds)
        raise UsageError(f"--seeds asks for {count:,} seeds per grid point: at most {MAX_SEEDS:,} (10 to 100 is usual)")
    values = list(range(seeds[0])) if seeds is not None and len(seeds) == 1 else seeds
    runs: dict[str, RunConfig] = {}
    for config in configs:
        for seed in values if values is not None else [config.seed]:
            run = RunConfig(**{**config.to_dict(), "seed": int(seed)})
            runs.setdefault(run_key(run), run)
    return list(runs.values())


def make_study(configs: Sequence[RunConfig], name: str | None = None, tune: Sequence[str] = ()) -> Study:
    """:param configs: the runs (after ``expand_seeds``); they share every field but the run fields
    :param name: the study's name (default: ``default_name``, with ``_tune-<digest of the grid>`` for a tuned study)
    :param tune: ``--tune``, whose grid names a tuned study by default
    :return: the study, stored in ``<log_folder>/studies/<name>``"""
    name = name or default_name(configs) + (f"_tune-{_digest(' '.join(tune))}" if tune else "")
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise UsageError(f"--study '{name}' is not a valid folder name: use letters, digits, '-', '_', '+'")
    return Study(name=name, folder=Path(configs[0].log_folder) / "studies" / name, configs=tuple(configs))


def shared_settings(config: RunConfig, tuned: Sequence[str] = ()) -> dict[str, Any]:
    """:param config: a run
    :param tuned: hyperparameters that differ between the study's runs (left out)
    :return: its fields that are neither run fields nor launch fields: what every run of a study must share"""
    settings = {k: v for k, v in config.to_dict().items() if k not in RUN_FIELDS + LAUNCH_FIELDS}
    settings["hyperparams"] = {k: v for k, v in config.hyperparams.items() if k not in tuned}
    return settings


def study_settings(study: Study) -> dict[str, Any]:
    """:param study: a study
    :return: the settings ``study.yml`` records: shared by every run, and the tuning of a tuned study"""
    settings = shared_settings(study.configs[0], study.tuned)
    if study.tune is not None:
        settings["tune"] = study.tune
    return settings


def check_spec(study: Study) -> dict[str, Any]:
    """:param study: a study
    :return: its folder's ``study.yml`` (empty when there is none), its runs with every run field (a ``study.yml``
        written when budgets and env kwargs were shared settings gives them to each of its runs)
    :raises UsageError: when that holds a study with other settings, or a run of this study with another budget"""
    path = study.folder / STUDY_FILE
    if not path.exists():
        return {}
    old = yaml.safe_load(path.read_text()) or {}
    stored = old.get("settings") or {}
    legacy = {k: v for k, v in stored.items() if k in RUN_FIELDS}
    settings = json.loads(json.dumps(study_settings(study)))
    old_settings = {k: v for k, v in stored.items() if k not in RUN_FIELDS}
    diff = sorted(k for k in set(settings) | set(old_settings) if settings.get(k) != old_settings.get(k))
    if legacy.get("env_kwargs"):
        raise UsageError(
            f"study {study.name} in {study.folder} names its runs without their env kwargs "
            f"({kwargs_text(legacy['env_kwargs'])}): choose another --study name, or delete that folder"
        )
    if diff:
        key = diff[0]
        raise UsageError(
            f"study {study.name} in {study.folder} was run with {key}={old_settings.get(key)!r}, "
            f"not {settings.get(key)!r}: choose another --study name, or delete that folder"
        )
    runs = [{**legacy, **r} for r in old.get("runs") or []]
    _check_budgets(study, runs)
    return {**old, "settings": old_settings, "runs": runs}


def _check_budgets(study: Study, old_runs: list[dict[str, Any]]) -> None:
    """:raises UsageError: when a run of the study was stored with another ``n_timesteps``"""
    budgets = {_identity(r): r.get("n_timesteps") for r in old_runs}
    for config in study.configs:
        before = budgets.get(_identity(_run_entry(config, study.tuned)), config.n_timesteps)
        if before != config.n_timesteps:
            raise UsageError(
                f"study {study.name} in {study.folder} was run with n_timesteps={before!r} for {study.key(config)}, not "
                f"{config.n_timesteps!r}: choose another --study name, or delete that folder"
            )


def _identity(entry: dict[str, Any]) -> str:
    """:return: a run entry of ``study.yml`` without its budget, as text"""
    return json.dumps({**{k: v for k, v in entry.items() if k != "n_timesteps"}, "p": float(entry["p"])}, sort_keys=True)


def save_spec(study: Study) -> None:
    """Write ``study.yml``; a folder that already holds a study with other settings is refused, and its runs are kept.

    :param study: the study
    """
    old = check_spec(study)
    runs = [_run_entry(c, study.tuned) for c in study.configs]
    runs = _unique_runs(old.get("runs", []) + runs)
    spec: dict[str, Any] = {"name": study.name, "settings": study_settings(study)}
    if study.tuned:
        spec.update(tuned=list(study.tuned), grid=study.grid)
    study.folder.mkdir(parents=True, exist_ok=True)
    write_yaml(study.folder / STUDY_FILE, {**spec, "runs": runs})


def _run_entry(config: RunConfig, tuned: Sequence[str]) -> dict[str, Any]:
    entry = {k: getattr(config, k) for k in RUN_FIELDS}
    return {**entry, "point": point_of(config, tuned)} if tuned else entry


def _unique_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list({json.dumps(r, sort_keys=True): r for r in runs}.values())


def load_spec(folder: Path) -> dict[str, Any]:
    """:param folder: a study folder
    :return: the content of its ``study.yml``"""
    path = Path(folder) / STUDY_FILE
    if not path.exists():
        raise UsageError(f"{folder} is not a study folder (no {STUDY_FILE}): pass the folder that a study printed")
    return yaml.safe_load(path.read_text())
