"""Studies: a grid of runs executed on Dask, stored run by run on the submitting machine, resumable at any time.

A study lives in one folder, ``<log_folder>/studies/<name>/``::

    study.yml        the grid: its name, the settings every run shares, and the runs (algo, env, env_kwargs,
                     n_timesteps, policy, p, seed: ``RUN_FIELDS``, so envs with their own budgets and kwargs, such as a
                     suite's, make one study)
    runs/<run>/      one folder per complete run (config.yml, summary.json, metrics.csv, model, ...), named by
                     ``run_key``: ``ppo_FourRooms-v0_escort-p2_s0``, ``ppo_FourRooms-v0_escort-p2_s0_slip-0.1``
    failed/<run>.txt the errors of a run that raised, one block per attempt (removed when the run later succeeds)
    results.csv      the tidy table of every complete run: study, env, env_kwargs (compact JSON, empty for none), algo,
                     policy, p, seed, timesteps, metric, value; each run's ``normalized_score`` is computed from the
                     run alone (``experiments.reference``)
    report.md        the rliable report (``experiments.report``) and its PNG plots

A tuned study (``--tune KEY=V1,V2,...``, ``run_tuned_study``) adds ``tuning/``, a complete study of the grid (every
group x grid point x tuning seed, same layout; its runs' names and ``results.csv`` carry the grid point), and
``selected.yml``, each group's selected values and every grid point's score with its CI (``experiments.tuning``);
``runs/`` then holds the final runs, each group with its selected values, on the ``--seeds`` seeds.

Each run executes in a Dask worker (``run_remote``) inside a temporary folder of the worker's machine; its files come
back to the submitting process, which writes them into ``runs/<run>.tmp`` and renames that folder to ``runs/<run>``.
A run is complete iff ``runs/<run>/summary.json`` exists, so a study that is killed at any moment loses no complete run,
and running the same command again runs exactly the missing ones.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from experiments import tuning
from experiments.config import RunConfig
from experiments.errors import UsageError
from experiments.reference import reference_metrics
from experiments.results import CONFIG_FILE, SUMMARY_FILE, last_values, read_metrics, write_yaml
from experiments.tuning import kwargs_text

STUDY_FILE = "study.yml"
RESULTS_FILE = "results.csv"
RUNS_DIR = "runs"
FAILED_DIR = "failed"
LOCK_FILE = ".lock"
RESULT_COLUMNS = ("study", "env", "env_kwargs", "algo", "policy", "p", "seed", "timesteps", "metric", "value")
#: Fields that identify a run inside a study (its grid fields); every other field of ``RunConfig`` is a setting shared by
#: the whole study. A study can hold envs with their own budgets and env kwargs (a suite's envs).
RUN_FIELDS = ("algo", "env", "env_kwargs", "n_timesteps", "policy", "p", "seed")
#: ``--seeds N`` with a larger N (or a longer list) is refused: no study of this size is meant.
MAX_SEEDS = 100_000
#: Env kwargs tags longer than this are replaced by a digest in run names.
MAX_TAG_CHARS = 40
#: A value that appears as itself in an env kwargs tag (others are a digest).
TAG_VALUE = re.compile(r"[A-Za-z0-9.+\-\[\]]+")
#: Fields that change how a run is launched or displayed, not what it computes.
LAUNCH_FIELDS = ("log_folder", "progress", "verbose", "resume", "checkpoint_freq")
#: Files larger than this stay on the worker (listed in the run's summary as ``skipped_files``).
MAX_FILE_BYTES = 256 * 2**20
#: Environment of local worker processes: one thread per run.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@dataclass
class StudyOptions:
    """How a grid of runs is launched: its seeds, where it runs, where it is stored and how it is reported."""

    seeds: list[int] | None = field(
        default=None,
        metadata={"help": "N: seeds 0..N-1; several values: these seeds (replaces --seed); more than one run makes a study"},
    )
    study: str | None = field(
        default=None, metadata={"help": "study name, stored in <log-folder>/studies/NAME; default: derived from the grid"}
    )
    workers: int = field(
        default=os.cpu_count() or 1,
        metadata={"help": "worker processes of the local Dask cluster (one thread each); ignored with --cluster"},
    )
    cluster: str | None = field(
        default=None,
        metadata={"help": "address of a running Dask scheduler (tcp://HOST:PORT) to run the study on; default: a local one"},
    )
    retries: int = field(default=1, metadata={"help": "how many times a run that raised is tried again"})
    no_report: bool = field(default=False, metadata={"help": "do not write the report at the end of a study"})
    reps: int = field(default=2000, metadata={"help": "bootstrap replications of the report's confidence intervals"})
    tune: list[str] = field(
        default_factory=list,
        metadata={
            "help": "tune then test: KEY=V1,V2,... (values as YAML, e.g. learning_rate=1e-4,3e-4,1e-3 optimizer=sgd,adam): "
            "every grid point runs on the tuning seeds for each (algo, env, policy, p), the best by --tune-metric is "
            "selected, and the final runs use it on the --seeds seeds; see experiments/tuning.py"
        },
    )
    tune_seeds: int = field(
        default=3,
        metadata={
            "help": f"tuning seeds per grid point: {tuning.TUNING_SEED_BASE}, {tuning.TUNING_SEED_BASE + 1}, ... (final "
            f"seeds stay below {tuning.TUNING_SEED_BASE}, so the two never overlap)"
        },
    )
    tune_metric: str = field(
        default="auc",
        metadata={
            "help": "what a grid point is scored by, as the IQM over its tuning runs: auc (area under the normalised "
            "evaluation curve) or final (final normalised score)"
        },
    )
    tune_across_envs: bool = field(
        default=False,
        metadata={
            "help": "select one setting per (algo, policy, p) for all envs, by the IQM of normalised scores over tuning "
            "seeds and envs (otherwise one selection per env)"
        },
    )


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
    #: A tuned study's ``experiments.tuning.TuneSpec.settings()``, recorded in the settings.
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


def run_key(config: RunConfig, point_keys: Sequence[str] = ()) -> str:
    """:param config: a run
    :param point_keys: the hyperparameters of a tuning grid's point, named after the seed
    :return: its folder name in a study: ``<algo>_<env>_<policy>_s<seed>`` (deterministic, so resume finds it), then
        ``_<kwargs tag>`` where the run has env kwargs (``kwargs_tag``: two variants of an env never share a folder), and
        in a tuning grid ``_<key>-<value>`` per tuned key (``experiments.tuning.point_suffix``)"""
    tag = kwargs_tag(config.env_kwargs)
    name = f"{config.algo}_{config.run_name}" + (f"_{tag}" if tag else "")
    return f"{name}_{tuning.point_suffix(point_of(config, point_keys))}" if point_keys else name


def kwargs_json(env_kwargs: Mapping[str, Any]) -> str:
    """:param env_kwargs: a run's env kwargs
    :return: them as compact JSON with sorted keys (the ``env_kwargs`` column of ``results.csv``); ``""`` for none"""
    return json.dumps(dict(env_kwargs), sort_keys=True, separators=(",", ":"), default=str) if env_kwargs else ""


def kwargs_tag(env_kwargs: Mapping[str, Any]) -> str:
    """A short, file-system-safe and stable name part for env kwargs: ``slip-0.1``, ``subgoals-[]``,
    ``slip-0.1_subgoals-[]`` (keys sorted); a value with other characters is ``h<digest>``, and a tag longer than
    ``MAX_TAG_CHARS`` is ``kwargs-<digest>`` of all of them.

    :param env_kwargs: a run's env kwargs
    :return: the tag; ``""`` for none
    """
    parts = []
    for key in sorted(env_kwargs):
        text = json.dumps(env_kwargs[key], sort_keys=True, separators=(",", ":"), default=str).strip('"')
        parts.append(f"{key}-{text if TAG_VALUE.fullmatch(text) else 'h' + _digest(text)}")
    tag = "_".join(parts)
    return tag if len(tag) <= MAX_TAG_CHARS else f"kwargs-{_digest(kwargs_json(env_kwargs))}"


def point_of(config: RunConfig, keys: Sequence[str]) -> dict[str, Any]:
    """:param config: a run
    :param keys: tuned hyperparameters
    :return: the run's values of them"""
    return {k: config.hyperparams[k] for k in keys if k in config.hyperparams}


def policy_label(policy: str, p: float) -> str:
    """:param policy: a policy parameterization
    :param p: its escort power
    :return: ``escort-p2`` for escort, the policy name otherwise"""
    return f"{policy}-p{p:g}" if policy == "escort" else policy


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


def default_name(configs: Sequence[RunConfig]) -> str:
    """A study's name derived from its grid, e.g. ``ppo_FourRooms-v0_softmax+escort-p2_s0-9``.

    :param configs: the runs
    :return: algorithms, envs (with their env kwargs tags), policies and seeds (long lists shortened to a count and a
        digest), and ``_n<steps>`` (``_n<least>-<most>`` for envs with several budgets)
    """
    algos = _unique(c.algo for c in configs)
    env_ids = _unique(_env_part(c) for c in configs)
    policies = _unique(policy_label(c.policy, c.p) for c in configs)
    seeds = sorted({c.seed for c in configs})
    parts = [_short(algos, "algos"), _short(env_ids, "envs"), _short(policies, "policies"), _seeds_text(seeds)]
    budgets = sorted({c.n_timesteps for c in configs if c.n_timesteps is not None})
    if budgets:
        parts.append(f"n{budgets[0]}" + (f"-{budgets[-1]}" if len(budgets) > 1 else ""))
    return "_".join(parts)


def _env_part(config: RunConfig) -> str:
    tag = kwargs_tag(config.env_kwargs)
    return config.env.replace("/", "-").replace(":", "-") + (f"-{tag}" if tag else "")


def _unique(values: Any) -> list[str]:
    return list(dict.fromkeys(values))


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:6]


def _short(values: list[str], noun: str) -> str:
    text = "+".join(values)
    return text if len(values) <= 3 and len(text) <= 48 else f"{len(values)}{noun}-{_digest(text)}"


def _seeds_text(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return f"s{seeds[0]}"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"s{seeds[0]}-{seeds[-1]}"
    return f"{len(seeds)}seeds-{_digest(','.join(map(str, seeds)))}"


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


def complete_runs(folder: Path) -> set[str]:
    """:param folder: a study folder
    :return: names of its complete runs (folders under their final name that hold a summary of a run that finished:
        one marked ``"interrupted"`` never counts)"""
    runs = Path(folder) / RUNS_DIR
    if not runs.is_dir():
        return set()
    return {p.name for p in runs.iterdir() if not p.name.endswith(".tmp") and _finished(p / SUMMARY_FILE)}


def _finished(summary: Path) -> bool:
    """:param summary: a run's ``summary.json``
    :return: whether it exists, is readable and does not mark the run interrupted"""
    try:
        return not json.loads(summary.read_text()).get("interrupted")
    except (OSError, ValueError):
        return False


def run_remote(config: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration in a worker: one torch thread, a private temporary folder, the files returned as bytes.

    :param config: ``RunConfig.to_dict()`` of the run
    :return: ``files`` (relative path -> bytes) and ``summary``, which adds to the runner's summary ``run_time`` (seconds
        of ``run`` on the worker: setup, training, evaluation, saving), ``host`` and, if any, ``skipped_files``
    """
    import torch

    from experiments.run import run

    torch.set_num_threads(1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="escort-run-") as tmp:
        run_config = RunConfig(**{**config, "log_folder": tmp, "progress": False, "verbose": 0, "resume": False})
        summary = run(run_config, Path(tmp) / "run")
        if summary.get("interrupted"):  # never stored: the run is tried again, or recorded as failed
            raise RuntimeError(f"run {run_key(run_config)} was interrupted on {socket.gethostname()}")
        files, skipped = read_tree(Path(tmp) / "run")
    summary.pop("run_dir", None)
    summary.update(run_time=time.perf_counter() - start, host=socket.gethostname())
    if skipped:
        summary["skipped_files"] = skipped
    files[SUMMARY_FILE] = (json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n").encode()
    return {"files": files, "summary": summary}


def read_tree(folder: Path) -> tuple[dict[str, bytes], list[str]]:
    """:param folder: a run folder
    :return: its files (relative POSIX path -> content), and the paths of files over ``MAX_FILE_BYTES`` left out"""
    files: dict[str, bytes] = {}
    skipped: list[str] = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            rel = path.relative_to(folder).as_posix()
            if path.stat().st_size > MAX_FILE_BYTES:
                skipped.append(rel)
            else:
                files[rel] = path.read_bytes()
    return files, skipped


def store_run(runs_dir: Path, name: str, files: dict[str, bytes]) -> Path:
    """Write a run's files into ``<name>.tmp`` and rename it to ``<name>``: the run appears complete or not at all.

    :param runs_dir: the study's ``runs`` folder
    :param name: the run's name
    :param files: relative path -> content (must include ``summary.json``)
    :return: the run folder
    """
    if SUMMARY_FILE not in files:
        raise ValueError(f"run {name} came back without {SUMMARY_FILE}")
    tmp, final = runs_dir / f"{name}.tmp", runs_dir / name
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, data in files.items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def record_failure(folder: Path, name: str, attempt: int, error: BaseException) -> str:
    """Append an attempt's error to ``failed/<name>.txt``.

    :param folder: the study folder
    :param name: the run
    :param attempt: 1 for the first try
    :param error: what the run raised (with the worker's traceback)
    :return: the error's last line
    """
    path = folder / FAILED_DIR / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    with path.open("a") as handle:
        handle.write(f"--- attempt {attempt} ({time.strftime('%Y-%m-%d %H:%M:%S')}) ---\n{text}\n")
    return f"{type(error).__name__}: {error}".splitlines()[0]


def run_rows(study_name: str, run_dir: Path, point_keys: Sequence[str] = ()) -> list[list[Any]]:
    """The tidy rows of one complete run: its metrics table, plus the summary's scalars that the table lacks, plus
    its reference metrics at its last timestep (``experiments.reference.reference_metrics``: ``normalized_score``,
    computed from this run alone, the reference it used, and whether its evaluations were greedy).

    :param study_name: the study
    :param run_dir: a complete run folder
    :param point_keys: in a tuning grid, the tuned hyperparameters: each row ends with the run's point
        (``experiments.tuning.point_text``)
    :return: rows in ``RESULT_COLUMNS`` order (and ``point``)
    """
    config = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    metrics = read_metrics(run_dir)
    names = {m for _, m, _ in metrics}
    end = max((t for t, _, _ in metrics), default=int(summary.get("timesteps", 0)))
    metrics += [
        (end, k, float(v))
        for k, v in sorted(summary.items())
        if k not in names and k != "timesteps" and isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    names = {m for _, m, _ in metrics}
    metrics += [(end, k, v) for k, v in reference_metrics(config, last_values(metrics)).items() if k not in names]
    env_kwargs = kwargs_json(config.get("env_kwargs") or {})
    ident = [study_name, config["env"], env_kwargs, config["algo"], config["policy"], config["p"], config["seed"]]
    if point_keys:
        hp = config.get("hyperparams") or {}
        point = [tuning.point_text({k: hp[k] for k in point_keys if k in hp})]
        return [[*ident, t, m, v, *point] for t, m, v in metrics]
    return [[*ident, t, m, v] for t, m, v in metrics]


class ResultsTable:
    """``results.csv`` of a study, rewritten atomically from a cache of each complete run's rows."""

    def __init__(self, folder: Path, name: str, point_keys: Sequence[str] = ()) -> None:
        """:param folder: the study folder
        :param name: the study's name (first column)
        :param point_keys: a tuning grid's tuned hyperparameters (a last column, ``point``, names each run's values)"""
        self.path = Path(folder) / RESULTS_FILE
        self.folder = Path(folder)
        self.name = name
        self.point_keys = tuple(point_keys)
        self.columns = RESULT_COLUMNS + ((tuning.POINT_COLUMN,) if point_keys else ())
        self._chunks: dict[str, str] = {}

    def add(self, run_name: str) -> None:
        """:param run_name: a complete run of the folder"""
        buffer = io.StringIO()
        rows = run_rows(self.name, self.folder / RUNS_DIR / run_name, self.point_keys)
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        self._chunks[run_name] = buffer.getvalue()

    def write(self) -> Path:
        """:return: the table, rewritten with every run added so far (sorted by run name)"""
        tmp = self.path.with_name(f"{RESULTS_FILE}.tmp")
        with tmp.open("w", newline="") as handle:
            handle.write(",".join(self.columns) + "\n")
            handle.writelines(self._chunks[k] for k in sorted(self._chunks))
        os.replace(tmp, self.path)
        return self.path


def write_results(folder: Path) -> Path:
    """Rebuild ``results.csv`` from the complete run folders.

    :param folder: a study folder
    :return: the table's path
    """
    spec = load_spec(folder)
    table = ResultsTable(folder, spec["name"], spec.get("tuned", ()) if spec.get("grid") else ())
    for name in sorted(complete_runs(folder)):
        table.add(name)
    return table.write()


class StudyProgress:
    """Runs done / running / failed and an ETA: a live rich display on a terminal, one plain line per event otherwise."""

    def __init__(self, total: int, done: int, stream: IO[str], live: bool | None = None) -> None:
        """:param total: runs in the grid
        :param done: runs complete before this launch
        :param stream: where to write
        :param live: rich display (default: when ``stream`` is a terminal)"""
        self.total, self.done0, self.stream = total, done, stream
        self.start = time.perf_counter()
        self.live = stream.isatty() if live is None else live
        self._progress: Any = None
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(file=stream),
            )
            self._task = self._progress.add_task("", total=total, completed=done)
            self._progress.start()

    def update(self, done: int, running: int, failed: int) -> None:
        """:param done: complete runs of the grid
        :param running: runs executing now
        :param failed: runs that failed for good"""
        text = f"{done} done, {running} running, {failed} failed, ETA {self._eta(done + failed)}"
        if self._progress is not None:
            self._progress.update(self._task, completed=done + failed, description=text)
            return
        print(f"[{time.strftime('%H:%M:%S')}] {done + failed}/{self.total} runs: {text}", file=self.stream, flush=True)

    def _eta(self, finished: int) -> str:
        new = finished - self.done0
        if new <= 0:
            return "?"
        seconds = (time.perf_counter() - self.start) / new * (self.total - finished)
        return format_duration(seconds)

    def close(self) -> None:
        """Stop the live display."""
        if self._progress is not None:
            self._progress.stop()


def format_duration(seconds: float) -> str:
    """:param seconds: a duration
    :return: ``1h02m03s``, ``2m03s`` or ``3.4s``"""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{sec:02d}s" if hours else f"{minutes}m{sec:02d}s"


@contextlib.contextmanager
def study_lock(folder: Path) -> Iterator[None]:
    """Hold ``<folder>/.lock`` (released by the OS if the process dies), so two launches never run one study twice.

    :param folder: the study folder
    """
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / LOCK_FILE).open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise UsageError(
                f"study {folder} is being run by another process (pid {handle.read().strip() or '?'}): wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def dask_client(options: StudyOptions, n_runs: int) -> Iterator[Any]:
    """A Dask client: to the scheduler at ``options.cluster``, or to a new LocalCluster on 127.0.0.1.

    :param options: study options (``cluster``, ``workers``)
    :param n_runs: runs to execute (no more local workers are started)
    """
    from distributed import Client, LocalCluster

    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    cluster = None
    try:
        if options.cluster:
            try:
                client = Client(options.cluster, timeout="20s")
            except (OSError, TimeoutError, ValueError) as err:
                raise UsageError(
                    f"cannot reach the Dask scheduler at {options.cluster} ({err}): start one with `dask scheduler` "
                    "or leave out --cluster"
                ) from None
        else:
            cluster = LocalCluster(
                n_workers=max(1, min(options.workers, n_runs)),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
                env=WORKER_ENV,
                preload=[__name__],
            )
            client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    finally:
        quiet.setLevel(level)


def dask_setup(worker: Any) -> None:
    """Dask's preload hook, run in each local worker process as it starts: Ctrl-C in the terminal reaches the whole
    process group, and only the launching process should act on it (it cancels the runs and closes the cluster).

    :param worker: the Dask worker
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def validate_runs(configs: Sequence[RunConfig], name: Callable[[RunConfig], str] = run_key) -> None:
    """Check every distinct configuration (all settings but the seed) in this process before any run is submitted:
    flags, hyperparameters, and the envs and model built once with them (``experiments.run.check``).

    :param configs: the runs
    :param name: a run's name (``Study.key``)
    :raises UsageError: one line naming the first bad run and its problem
    """
    from experiments.run import check

    seen: set[str] = set()
    for config in configs:
        key = json.dumps({**config.to_dict(), "seed": None}, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            try:
                check(config)
            except UsageError as err:
                raise UsageError(f"run {name(config)}: {err}") from None


def check_options(options: StudyOptions) -> None:
    """:param options: study options; bad values raise ``UsageError``"""
    if options.workers < 1:
        raise UsageError(f"--workers must be >= 1 (got {options.workers})")
    if options.retries < 0:
        raise UsageError(f"--retries must be >= 0 (got {options.retries})")
    if options.reps < 10:
        raise UsageError(f"--reps must be >= 10 (got {options.reps}); 2000 is usual")


class Cluster:
    """The Dask client of one launch, started on first need and shared by its studies (a tuning grid, its final runs)."""

    def __init__(self, options: StudyOptions, stack: contextlib.ExitStack) -> None:
        """:param options: where to run (``cluster``, ``workers``)
        :param stack: what closes the client (and a local cluster) at the latest"""
        self.options = options
        self.stack = stack.enter_context(contextlib.ExitStack())
        self._client: Any = None
        self._warm: list[Any] = []

    def start(self, n_runs: int) -> Any:
        """Connect (or start a local cluster), and have its workers import the training code.

        :param n_runs: runs to execute (no more local workers are started)
        :return: the client
        """
        if self._client is None:
            self._client = self.stack.enter_context(dask_client(self.options, max(n_runs, 1)))
            self._warm = warm_up(self._client)
        return self._client

    def close(self) -> None:
        """Close the client and a local cluster (a later ``start`` connects again)."""
        self._warm = []
        self._client = None
        self.stack.close()


def run_study(study: Study, options: StudyOptions, stream: IO[str] | None = None) -> StudyOutcome:
    """Run the missing runs of a study on Dask, store each as it completes, then write the table and the report
    (with ``options.tune``: ``run_tuned_study``).

    The cluster starts first, so that its workers import the training code while this process checks the grid; a bad
    grid raises ``UsageError`` before anything is written.

    :param study: the study
    :param options: how to run it
    :param stream: progress and summary output (default: stdout)
    :return: what happened; on Ctrl-C ``interrupted`` is set and the complete runs are on disk
    """
    if options.tune:
        return run_tuned_study(study, options, stream)
    stream = stream or sys.stdout
    check_options(options)
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        cluster = Cluster(options, stack)
        n_pending = len(study.pending())
        if n_pending:
            cluster.start(n_pending)
        validate_runs(study.configs, study.key)
        with study_lock(study.folder):
            outcome = execute(study, options, cluster, stream)
            cluster.close()
            outcome.wall_time = time.perf_counter() - start
            outcome.report = _report(outcome, options)
    return outcome


def execute(study: Study, options: StudyOptions, cluster: Cluster, stream: IO[str]) -> StudyOutcome:
    """Run the missing runs of a checked study whose folder this process has locked.

    :param study: the study
    :param options: how to run it
    :param cluster: where
    :param stream: progress output
    :return: what happened (``interrupted`` on Ctrl-C)
    """
    start = time.perf_counter()
    outcome = StudyOutcome(study=study)
    table = _prepare(study)
    pending = study.pending()
    outcome.skipped = len(study.configs) - len(pending)
    progress = StudyProgress(len(study.configs), outcome.skipped, stream)
    try:
        if pending:
            _execute(cluster.start(len(pending)), study, pending, options, table, progress, outcome)
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        progress.close()
    outcome.wall_time = time.perf_counter() - start
    return outcome


def _prepare(study: Study) -> ResultsTable:
    """Save the spec, remove partial run folders of a killed launch, and rewrite the table from the complete runs."""
    save_spec(study)
    study.runs_dir.mkdir(parents=True, exist_ok=True)
    for leftover in study.runs_dir.glob("*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    table = ResultsTable(study.folder, study.name, study.tuned if study.grid else ())
    for name in sorted(study.complete()):
        table.add(name)
    table.write()
    return table


def _report(outcome: StudyOutcome, options: StudyOptions) -> Path | None:
    """:return: the study's report, written unless interrupted, ``--no-report`` or no run is complete"""
    if outcome.interrupted or options.no_report or not outcome.study.complete():
        return None
    from experiments.report import write_report

    return write_report(outcome.study.folder, reps=options.reps)


def tuning_grid(study: Study, spec: tuning.TuneSpec) -> Study:
    """:param study: a tuned study (its final runs as the command line gives them)
    :param spec: its tuning
    :return: the study of its grid, in ``<folder>/tuning``: every group x grid point x tuning seed"""
    configs = tuple(tuning.grid_configs(spec, study.configs))
    folder = study.folder / tuning.TUNING_DIR
    return Study(f"{study.name}-tuning", folder, configs, tuned=spec.keys, grid=True, tune=spec.settings())


def run_tuned_study(study: Study, options: StudyOptions, stream: IO[str] | None = None) -> StudyOutcome:
    """Tune then test (``experiments.tuning``): run the grid on the tuning seeds, select each group's values, then
    run the final runs with them. Every grid point is checked before anything runs; a rerun runs only what is
    missing, and a complete tuning selects the same values again.

    :param study: the study of the final runs as the command line gives them (without tuned values)
    :param options: how to run it (``tune``, ``tune_seeds``, ``tune_metric``, ``tune_across_envs``)
    :param stream: progress and summary output (default: stdout)
    :return: the final runs' outcome, with ``tuning`` (the grid's) and ``selected``; the final runs are not started
        while a tuning run is missing
    """
    stream = stream or sys.stdout
    check_options(options)
    spec = tuning.make_spec(options.tune, options.tune_seeds, options.tune_metric, options.tune_across_envs)
    tuning.check_configs(spec, study.configs)
    start = time.perf_counter()
    grid = tuning_grid(study, spec)
    tuned = dataclasses.replace(study, tuned=spec.keys, tune=spec.settings())
    check_spec(tuned)
    with contextlib.ExitStack() as stack:
        cluster = Cluster(options, stack)
        n_pending = len(grid.pending())
        if n_pending:
            cluster.start(n_pending)
        validate_runs(grid.configs, grid.key)
        with study_lock(tuned.folder), study_lock(grid.folder):
            check_spec(tuned)
            grid_outcome = execute(grid, options, cluster, stream)
            grid_outcome.report = _report(grid_outcome, options)
            outcome = StudyOutcome(study=tuned, tuning=grid_outcome, interrupted=grid_outcome.interrupted)
            if grid_outcome.n_complete == len(grid.configs):
                outcome = _test(tuned, spec, options, cluster, stream, grid_outcome)
            else:
                outcome.failed = dict(grid_outcome.failed)
            cluster.close()
            outcome.wall_time = time.perf_counter() - start
            outcome.report = _report(outcome, options) if outcome.selected is not None else None
    return outcome


def read_results(folder: Path) -> Any:
    """:param folder: a study folder
    :return: its ``results.csv`` as a pandas frame, ``env_kwargs`` as text (``""``: none; also for a table written
        before it had that column)"""
    import pandas as pd

    table = pd.read_csv(Path(folder) / RESULTS_FILE)
    table["env_kwargs"] = table["env_kwargs"].fillna("").astype(str) if "env_kwargs" in table else ""
    return table


def grid_results(grid: Study) -> Any:
    """:param grid: a tuning grid whose runs are complete
    :return: the rows of its ``results.csv`` that belong to its runs (the folder may hold others from earlier launches)"""
    table = read_results(grid.folder)
    ident = ["algo", "env", "env_kwargs", "policy", "p", "seed", tuning.POINT_COLUMN]
    wanted = {
        (c.algo, c.env, kwargs_json(c.env_kwargs), c.policy, float(c.p), c.seed, tuning.point_text(point_of(c, grid.tuned)))
        for c in grid.configs
    }
    keep = [tuple(row) in wanted for row in table[ident].astype({"p": float}).itertuples(index=False, name=None)]
    return table[keep]


def _test(
    tuned: Study, spec: tuning.TuneSpec, options: StudyOptions, cluster: Cluster, stream: IO[str], grid: StudyOutcome
) -> StudyOutcome:
    """Select each group's values from the complete tuning grid, write ``selected.yml`` and run the final runs."""
    table = grid_results(grid.study)
    selections = tuning.select(table, spec, {}, options.reps)
    selected = tuning.write_selected(tuned.folder, spec, selections)
    final = dataclasses.replace(tuned, configs=tuple(tuning.final_configs(tuned.configs, selections, spec.across_envs)))
    outcome = execute(final, options, cluster, stream)
    outcome.tuning, outcome.selected = grid, selected
    return outcome


def warm_up(client: Any) -> list[Any]:
    """Have every worker import the training code now (keep the returned futures until the runs are submitted).

    :param client: a Dask client
    :return: one future per worker
    """
    return [
        client.submit(import_training_code, workers=[address], allow_other_workers=False, pure=False)
        for address in client.scheduler_info()["workers"]
    ]


def import_training_code() -> bool:
    """Import what the first run of a process would otherwise import on the way: torch (with the ``torch._dynamo`` that
    its optimizers load lazily), TensorBoard's writer, SB3 and the runners.

    :return: True
    """
    import torch._dynamo  # noqa: F401
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    import experiments.run
    import experiments.sb3_run  # noqa: F401

    return experiments.run.ALGOS is not None


def _execute(
    client: Any,
    study: Study,
    pending: list[RunConfig],
    options: StudyOptions,
    table: ResultsTable,
    progress: StudyProgress,
    outcome: StudyOutcome,
) -> None:
    from distributed import as_completed

    attempts: Counter[str] = Counter()
    futures = {_submit(client, config, study.key(config)): config for config in pending}
    queue = as_completed(list(futures))
    done = outcome.skipped
    progress.update(done, _running(client, len(futures)), 0)
    try:
        for future in queue:
            config = futures.pop(future)
            name = study.key(config)
            try:
                result = future.result()
            except Exception as err:  # noqa: BLE001 (any error of a run is recorded; the study goes on)
                attempts[name] += 1
                message = record_failure(study.folder, name, attempts[name], err)
                # a usage error is deterministic: running it again would only fail again
                if attempts[name] <= options.retries and not isinstance(err, UsageError):
                    retry = _submit(client, config, name)
                    futures[retry] = config
                    queue.add(retry)
                else:
                    outcome.failed[name] = message
            else:
                store_run(study.runs_dir, name, result["files"])
                (study.folder / FAILED_DIR / f"{name}.txt").unlink(missing_ok=True)
                table.add(name)
                table.write()
                outcome.completed.append(name)
                done += 1
            future.release()
            progress.update(done, _running(client, len(futures)), len(outcome.failed))
    finally:
        if futures:
            client.cancel(list(futures))


def _submit(client: Any, config: RunConfig, name: str) -> Any:
    return client.submit(run_remote, config.to_dict(), key=f"{name}-{uuid.uuid4().hex[:8]}", pure=False)


def _running(client: Any, outstanding: int) -> int:
    try:
        threads = sum(client.nthreads().values())
    except (OSError, TimeoutError):
        threads = outstanding
    return min(threads, outstanding)


def summary_line(outcome: StudyOutcome) -> str:
    """:param outcome: a finished (or interrupted) study
    :return: one line: runs complete and failed (of the tuning grid, then the final runs, for a tuned study), time,
        and where the report (or the folder) is"""
    study = outcome.study
    grid = outcome.tuning
    if grid is None:
        text = f"study {study.name}: {_counts(outcome)}"
    elif outcome.selected is None:
        text = f"study {study.name}: tuning {_counts(grid)}; the final runs start once every tuning run is complete"
    else:
        text = f"study {study.name}: tuning {_counts(grid)}; selected: {outcome.selected}; final {_counts(outcome)}"
    text += f", {format_duration(outcome.wall_time)}"
    if outcome.interrupted:
        return f"{text}; interrupted: run the same command again to resume ({study.folder})"
    failed = grid if grid is not None and grid.failed else outcome
    if failed.failed:
        text += f"; errors in {failed.study.folder / FAILED_DIR}"
    where = outcome.report if outcome.report is not None else study.folder
    return f"{text}; report: {where}" if outcome.report is not None else f"{text}; folder: {where}"


def _counts(outcome: StudyOutcome) -> str:
    return (
        f"{outcome.n_complete}/{len(outcome.study.configs)} runs complete ({len(outcome.completed)} new, "
        f"{outcome.skipped} already done), {len(outcome.failed)} failed"
    )
