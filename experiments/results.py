"""Files a run leaves behind: the tidy metrics table, the summary and the resolved configuration."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yml"
METRICS_COLUMNS = ("timesteps", "metric", "value")


def write_metrics(run_dir: Path, rows: Iterable[tuple[int, str, float]]) -> Path:
    """Append rows ``(timesteps, metric, value)`` to the run's tidy metrics table.

    :param run_dir: the run folder
    :param rows: the measurements
    :return: the table's path
    """
    path = Path(run_dir) / METRICS_FILE
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(METRICS_COLUMNS)
        writer.writerows((int(t), str(m), float(v)) for t, m, v in rows)
    return path


def read_metrics(run_dir: Path) -> list[tuple[int, str, float]]:
    """:param run_dir: the run folder
    :return: the rows of its metrics table (empty when there is none)"""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [(int(r["timesteps"]), r["metric"], float(r["value"])) for r in csv.DictReader(handle)]


def last_values(rows: Iterable[tuple[int, str, float]]) -> dict[str, float]:
    """:param rows: measurements ``(timesteps, metric, value)``
    :return: each metric's value at its largest timestep (the later row where two share it)"""
    last: dict[str, tuple[int, float]] = {}
    for t, m, v in rows:
        if m not in last or t >= last[m][0]:
            last[m] = (t, v)
    return {m: v for m, (_, v) in last.items()}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (a temporary file renamed into place).

    :param path: destination
    :param data: JSON-able mapping
    """
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_plain) + "\n")
    os.replace(tmp, path)


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    """Write YAML atomically.

    :param path: destination
    :param data: mapping of plain values
    """
    tmp = Path(f"{path}.tmp")
    tmp.write_text(yaml.safe_dump(json.loads(json.dumps(data, default=_plain)), sort_keys=False))
    os.replace(tmp, path)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
