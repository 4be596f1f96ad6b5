"""``write_report``: a study folder's ``report.md`` and its PNG plots, from its ``results.csv`` (and ``selected.yml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from experiments.config import RunConfig
from experiments.report.estimates import aggregate_estimates, improvement_estimates
from experiments.report.figures import (
    AGGREGATES_PNG,
    CURVES_PNG,
    IMPROVEMENT_PNG,
    PROFILES_PNG,
    SENSITIVITY_PNG,
    _plot_aggregates,
)
from experiments.report.sections import (
    _aggregate_section,
    _curves_section,
    _failures_section,
    _header,
    _improvement_section,
    _no_aggregates_section,
    _per_env_section,
    _profiles_section,
    _scores_section,
)
from experiments.report.tables import final_scores, load_table, ordered_labels, score_matrices
from experiments.report.tuning import _tuning_section
from experiments.study.selection import load_selected
from experiments.study.spec import load_spec

REPORT_FILE = "report.md"


def write_report(folder: Path, reps: int = 2000, seed: int = 0) -> Path:
    """Write ``report.md`` and its PNG plots into a study folder, from its ``results.csv``.

    :param folder: the study folder
    :param reps: bootstrap replications of every confidence interval
    :param seed: seed of the bootstrap (the same table and seed give the same report)
    :return: the report's path
    """
    import matplotlib

    matplotlib.use("Agg")
    folder = Path(folder)
    spec = load_spec(folder)
    table = load_table(folder)
    selected = load_selected(folder)
    lines = _header(folder, spec, table, reps) + (_tuning_section(selected, folder / SENSITIVITY_PNG) if selected else [])
    lines += _body(folder, table, spec.get("settings") or {}, reps, seed)
    path = folder / REPORT_FILE
    tmp = path.with_name(f"{REPORT_FILE}.tmp")
    tmp.write_text("\n".join(lines).rstrip() + "\n")
    tmp.replace(path)
    return path


def _body(folder: Path, table: pd.DataFrame, settings: dict[str, Any], reps: int, seed: int) -> list[str]:
    labels = ordered_labels(table)
    scores = final_scores(table)
    episodes = int(settings.get("eval_episodes", RunConfig().eval_episodes))
    referenced = scores[scores["score"].notna()]
    matrices, envs, notes = score_matrices(referenced, labels) if not referenced.empty else ({}, [], [])
    left_out = sorted(set(scores["env"]) - set(referenced["env"]))
    lines = _scores_section(scores, episodes)
    if matrices:
        notes = [*notes, *([f"Left out (no reference): {', '.join(left_out)}."] if left_out else [])]
        points, intervals = aggregate_estimates(matrices, reps, seed)
        lines += _aggregate_section(points, intervals, matrices, envs, notes)
        _plot_aggregates(points, intervals, list(matrices), folder / AGGREGATES_PNG)
        lines += _improvement_section(*improvement_estimates(matrices, reps, seed), folder / IMPROVEMENT_PNG)
        lines += _profiles_section(matrices, reps, seed, folder / PROFILES_PNG)
    else:
        lines += _no_aggregates_section(left_out, notes)
    lines += _per_env_section(scores, labels, episodes, reps, seed)
    lines += _curves_section(table, scores, labels, episodes, reps, seed, folder / CURVES_PNG, settings)
    return lines + _failures_section(folder)
