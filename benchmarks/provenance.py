"""Where a benchmark's numbers come from: the command, the commit, the date, the machine and its load, the versions.

Every benchmark prints ``header()`` first and ``after_runs()`` last, and the docs quote both with the numbers::

    Command: `python benchmarks/ppo_speed.py --repeats 9`
    Commit 4bd70ea-dirty, 2026-12-01 10:05 UTC; AMD EPYC 7B13, 2 logical CPUs, load average (1, 5, 15 min) 3.4, 3.5, 3.6;
    Python 3.11.7, numpy 2.4.6, torch 2.13.0+cpu, gymnasium 1.4.0, stable_baselines3 2.9.2

The commit is what ``git describe --always --dirty`` says: ``-dirty`` when the working tree differs from it.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
#: The libraries whose versions change the numbers.
PACKAGES = ("numpy", "torch", "gymnasium", "stable_baselines3")


def commit() -> str:
    """:return: ``git describe --always --dirty`` of the checkout (``unknown`` outside one)"""
    try:
        result = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def command() -> str:
    """:return: the command line that runs this process, the script's path relative to the repository root"""
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    name = script.relative_to(ROOT).as_posix() if script is not None and script.is_relative_to(ROOT) else sys.argv[0]
    return shlex.join(["python", name, *sys.argv[1:]])


def load() -> str:
    """:return: the load average over 1, 5 and 15 minutes"""
    return "load average (1, 5, 15 min) " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    """:return: the CPU's name, the number of logical CPUs and the load average"""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} logical CPUs, {load()}"


def versions() -> str:
    """:return: the Python version and those of ``PACKAGES``"""

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return ", ".join([f"Python {platform.python_version()}", *(f"{p} {of(p)}" for p in PACKAGES)])


def provenance() -> str:
    """:return: ``Commit <describe>, <UTC date and time>; <machine and load>; <versions>``"""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"Commit {commit()}, {now}; {machine()}; {versions()}"


def header() -> str:
    """:return: the command line and the provenance, two lines to print before the results"""
    return f"Command: `{command()}`\n{provenance()}"


def after_runs() -> str:
    """:return: the line to print after the results: the date and the load once the runs are over"""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"After the runs: {now}, {load()}"


def run_commits(study: Path) -> str:
    """:param study: a study folder
    :return: the commits the runs trained at, ``-dirty`` where the tree differed"""
    commits = set()
    for config_file in study.glob("runs/*/config.yml"):
        provenance = yaml.safe_load(config_file.read_text()).get("provenance", {})
        commits.add(f"{str(provenance.get('git_commit', 'unknown'))[:7]}{'-dirty' if provenance.get('git_dirty') else ''}")
    return ", ".join(sorted(commits))


def run_dates(study: Path) -> str:
    """:param study: a study folder
    :return: the first and last modification times of the runs' summaries, UTC"""
    times = sorted(path.stat().st_mtime for path in study.glob("runs/*/summary.json"))
    stamp = [datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") for t in times]
    return f"{stamp[0]} and {stamp[-1]}" if stamp else "?"
