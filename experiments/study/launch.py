"""What a command launches: a study (``run_study``) or a tuned study (``run_tuned_study``: its tuning grid, the
selection, then the final runs). Each checks its options and runs before it writes anything, starts the cluster,
holds the study folder, runs what is missing and writes the table and the report."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from pathlib import Path
from typing import IO, Any

from experiments.report import write_report
from experiments.study import selection, tuning
from experiments.study.cluster import Cluster
from experiments.study.layout import POINT_COLUMN, TUNING_DIR
from experiments.study.naming import kwargs_json, point_of, point_text
from experiments.study.options import StudyOptions, check_options
from experiments.study.runner import execute, validate_runs
from experiments.study.spec import Study, StudyOutcome, check_spec
from experiments.study.storage import read_results, study_lock


def run_study(study: Study, options: StudyOptions, stream: IO[str] | None = None, header: str | None = None) -> StudyOutcome:
    """Run the missing runs of a study on Dask, store each as it completes, then write the table and the report
    (with ``options.tune``: ``run_tuned_study``).

    The cluster starts first, so that its workers import the training code while this process checks the grid; a bad
    grid raises ``UsageError`` before anything is written to the folder or to ``stream``.

    :param study: the study
    :param options: how to run it
    :param stream: progress and summary output (default: stdout)
    :param header: a line written to ``stream`` once the runs are checked and the folder is held (the command line's
        ``study NAME: N runs in FOLDER, on ...``)
    :return: what happened; on Ctrl-C ``interrupted`` is set and the complete runs are on disk
    """
    if options.tune:
        return run_tuned_study(study, options, stream, header)
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
            check_spec(study)
            _announce(header, stream)
            outcome = execute(study, options, cluster, stream)
            cluster.close()
            outcome.wall_time = time.perf_counter() - start
            outcome.report = _report(outcome, options)
    return outcome


def _announce(header: str | None, stream: IO[str]) -> None:
    """:param header: a line for the terminal, or None
    :param stream: where to write it"""
    if header:
        print(header, file=stream, flush=True)


def _report(outcome: StudyOutcome, options: StudyOptions) -> Path | None:
    """:return: the study's report, written unless interrupted, ``--no-report`` or no run is complete"""
    if outcome.interrupted or options.no_report or not outcome.study.complete():
        return None
    return write_report(outcome.study.folder, reps=options.reps)


def tuning_grid(study: Study, spec: tuning.TuneSpec) -> Study:
    """:param study: a tuned study (its final runs as the command line gives them)
    :param spec: its tuning
    :return: the study of its grid, in ``<folder>/tuning``: every group x grid point x tuning seed"""
    configs = tuple(tuning.grid_configs(spec, study.configs))
    folder = study.folder / TUNING_DIR
    return Study(f"{study.name}-tuning", folder, configs, tuned=spec.keys, grid=True, tune=spec.settings())


def run_tuned_study(
    study: Study, options: StudyOptions, stream: IO[str] | None = None, header: str | None = None
) -> StudyOutcome:
    """Tune then test (``experiments.study.tuning``): run the grid on the tuning seeds, select each group's values, then
    run the final runs with them. Every grid point is checked before anything runs; a rerun runs only what is
    missing, and a complete tuning selects the same values again.

    :param study: the study of the final runs as the command line gives them (without tuned values)
    :param options: how to run it (``tune``, ``tune_seeds``, ``tune_metric``, ``tune_across_envs``)
    :param stream: progress and summary output (default: stdout)
    :param header: a line written to ``stream`` once every grid point is checked and the folders are held
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
            _announce(header, stream)
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


def grid_results(grid: Study) -> Any:
    """:param grid: a tuning grid whose runs are complete
    :return: the rows of its ``results.csv`` that belong to its runs (the folder may hold others from earlier launches)"""
    table = read_results(grid.folder)
    ident = ["algo", "env", "env_kwargs", "policy", "p", "seed", POINT_COLUMN]
    wanted = {
        (c.algo, c.env, kwargs_json(c.env_kwargs), c.policy, float(c.p), c.seed, point_text(point_of(c, grid.tuned)))
        for c in grid.configs
    }
    keep = [tuple(row) in wanted for row in table[ident].astype({"p": float}).itertuples(index=False, name=None)]
    return table[keep]


def _test(
    tuned: Study, spec: tuning.TuneSpec, options: StudyOptions, cluster: Cluster, stream: IO[str], grid: StudyOutcome
) -> StudyOutcome:
    """Select each group's values from the complete tuning grid, write ``selected.yml`` and run the final runs."""
    table = grid_results(grid.study)
    selections = selection.select(table, spec, {}, options.reps)
    selected = selection.write_selected(tuned.folder, spec, selections)
    final = dataclasses.replace(tuned, configs=tuple(tuning.final_configs(tuned.configs, selections, spec.across_envs)))
    outcome = execute(final, options, cluster, stream)
    outcome.tuning, outcome.selected = grid, selected
    return outcome
