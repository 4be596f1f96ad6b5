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
``selected.yml``, each group's selected values and every grid point's score with its CI (``experiments.study.tuning``
and ``experiments.study.selection``); ``runs/`` then holds the final runs, each group with its selected values, on the
``--seeds`` seeds.

Each run executes in a Dask worker (``run_remote``) inside a temporary folder of the worker's machine; its files come
back to the submitting process, which writes them into ``runs/<run>.tmp`` and renames that folder to ``runs/<run>``.
A run is complete iff ``runs/<run>/summary.json`` exists, so a study that is killed at any moment loses no complete run,
and running the same command again runs exactly the missing ones.

One job per module, each importing only the ones before it in this list:

- ``layout``: the file names of a study folder, and which runs are complete
- ``naming``: names of runs, env variants, policies, grid points and studies
- ``tuning``: the tune-then-test grid, its tuning seeds and runs; ``options``: ``StudyOptions``, the study flags
- ``spec``: ``Study``, ``make_study``, ``expand_seeds`` and ``study.yml``
- ``storage``: crash-safe run folders, failures, the folder lock and ``results.csv``
- ``progress``: the live display and the summary line; ``selection``: tuning scores and ``selected.yml``
- ``cluster``: the Dask client and its workers' set-up; ``runner``: checks, submits and stores the runs of a study
- ``launch``: ``run_study`` and ``run_tuned_study``, what a command launches (and the only module that writes the report)

The report (``experiments.report``) reads a study folder through ``layout``, ``naming``, ``spec``, ``storage``,
``progress`` and ``selection``; it never imports the runner, the cluster or Dask. Every name of ``MODULE_NAMES`` is
importable from ``experiments.study`` itself; each is imported from its module on first use, so importing one module of
the package does not import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

#: The names of the package, by the module that defines them.
MODULE_NAMES = {
    "layout": (
        "STUDY_FILE",
        "RESULTS_FILE",
        "RUNS_DIR",
        "FAILED_DIR",
        "LOCK_FILE",
        "RESULT_COLUMNS",
        "POINT_COLUMN",
        "SELECTED_FILE",
        "TUNING_DIR",
        "complete_runs",
    ),
    "naming": (
        "MAX_TAG_CHARS",
        "TAG_VALUE",
        "run_key",
        "kwargs_json",
        "kwargs_tag",
        "point_of",
        "policy_label",
        "default_name",
        "value_text",
        "point_text",
        "point_suffix",
        "kwargs_text",
        "env_label",
    ),
    "options": ("StudyOptions", "check_options"),
    "spec": (
        "RUN_FIELDS",
        "MAX_SEEDS",
        "LAUNCH_FIELDS",
        "Study",
        "StudyOutcome",
        "expand_seeds",
        "make_study",
        "shared_settings",
        "study_settings",
        "check_spec",
        "save_spec",
        "load_spec",
    ),
    "storage": (
        "MAX_FILE_BYTES",
        "read_tree",
        "store_run",
        "record_failure",
        "study_lock",
        "run_rows",
        "ResultsTable",
        "write_results",
        "read_results",
    ),
    "progress": ("StudyProgress", "format_duration", "summary_line"),
    "cluster": ("WORKER_ENV", "dask_client", "dask_setup", "Cluster", "warm_up", "import_training_code"),
    "runner": ("run_remote", "validate_runs", "execute"),
    "launch": ("run_study", "run_tuned_study", "tuning_grid", "grid_results"),
}
_MODULE_OF = {name: module for module, names in MODULE_NAMES.items() for name in names}
__all__ = list(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use (PEP 562).

    :param name: a name of the package
    :return: its value
    """
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """:return: the module's attributes and every name of the package"""
    return sorted({*globals(), *_MODULE_OF})
