"""The runner: every distinct configuration checked in the launching process (``validate_runs``), then a checked
study's missing runs submitted to Dask (``execute``), each run executed in a worker (``run_remote``, shipped to the
workers by reference, so it lives here and nowhere else) and stored as it completes; a run that raised is tried again
unless its error is a usage error."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from experiments.config import RunConfig
from experiments.errors import UsageError
from experiments.results import SUMMARY_FILE
from experiments.study.cluster import Cluster
from experiments.study.layout import FAILED_DIR
from experiments.study.naming import run_key
from experiments.study.options import StudyOptions
from experiments.study.progress import StudyProgress
from experiments.study.spec import Study, StudyOutcome, save_spec
from experiments.study.storage import ResultsTable, read_tree, record_failure, store_run


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
