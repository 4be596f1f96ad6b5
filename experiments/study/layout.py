"""The files of a study folder (``experiments.study`` describes the layout), and which of its runs are complete."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.results import SUMMARY_FILE

STUDY_FILE = "study.yml"
RESULTS_FILE = "results.csv"
RUNS_DIR = "runs"
FAILED_DIR = "failed"
LOCK_FILE = ".lock"
RESULT_COLUMNS = ("study", "env", "env_kwargs", "algo", "policy", "p", "seed", "timesteps", "metric", "value")
#: Column of a tuning grid's ``results.csv`` that names the run's grid point (``point_text``).
POINT_COLUMN = "point"
SELECTED_FILE = "selected.yml"
TUNING_DIR = "tuning"


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
