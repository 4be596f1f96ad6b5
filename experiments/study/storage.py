"""Crash-safe storage of a study's runs: a run's files appear under their final name complete or not at all
(``store_run``), failures are kept per attempt (``record_failure``), one launch at a time holds the folder
(``study_lock``), and ``results.csv`` is rebuilt atomically from the complete runs (``ResultsTable``)."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import shutil
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from experiments.errors import UsageError
from experiments.reference import reference_metrics
from experiments.results import CONFIG_FILE, SUMMARY_FILE, last_values, read_metrics
from experiments.study.layout import FAILED_DIR, LOCK_FILE, POINT_COLUMN, RESULT_COLUMNS, RESULTS_FILE, RUNS_DIR, complete_runs
from experiments.study.naming import kwargs_json, point_text
from experiments.study.spec import load_spec

#: Files larger than this stay on the worker (listed in the run's summary as ``skipped_files``).
MAX_FILE_BYTES = 256 * 2**20


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


def run_rows(study_name: str, run_dir: Path, point_keys: Sequence[str] = ()) -> list[list[Any]]:
    """The tidy rows of one complete run: its metrics table, plus the summary's scalars that the table lacks, plus
    its reference metrics at its last timestep (``experiments.reference.reference_metrics``: ``normalized_score``,
    computed from this run alone, the reference it used, and whether its evaluations were greedy).

    :param study_name: the study
    :param run_dir: a complete run folder
    :param point_keys: in a tuning grid, the tuned hyperparameters: each row ends with the run's point
        (``experiments.study.naming.point_text``)
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
        point = [point_text({k: hp[k] for k in point_keys if k in hp})]
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
        self.columns = RESULT_COLUMNS + ((POINT_COLUMN,) if point_keys else ())
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


def read_results(folder: Path) -> Any:
    """:param folder: a study folder
    :return: its ``results.csv`` as a pandas frame, ``env_kwargs`` as text (``""``: none; also for a table written
        before it had that column)"""
    import pandas as pd

    table = pd.read_csv(Path(folder) / RESULTS_FILE)
    table["env_kwargs"] = table["env_kwargs"].fillna("").astype(str) if "env_kwargs" in table else ""
    return table
