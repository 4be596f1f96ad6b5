"""Speedup of a study on 2 Dask workers over 1: the same 8 PPO runs on FourRooms-v0, measured side by side.

Run from the repository root: ``python benchmarks/study_speedup.py [--runs 8] [-n 50000] [--workers 1 2]`` (50k
steps: the FourRooms-v0 default). Each configuration runs the whole study in a fresh folder (local cluster start
included, no report) and prints its wall time, the time its runs took on their workers (in all, and how many ran at a
time on average), and the load average of the machine before and after; the last line is the speedup. On a machine
that other work keeps busy the ratio drops (each run gets slower as more run at a time): a control before and after,
two processes against one on a pure-Python loop, shows what speedup the machine allowed at the time (2.0 on two idle
cores).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for a checkout not pip-installed

import pandas as pd  # noqa: E402

from benchmarks.provenance import after_runs, header  # noqa: E402
from experiments.cli import parse_command  # noqa: E402
from experiments.study import RESULTS_FILE, make_study, run_study  # noqa: E402


def study_argv(log_folder: Path, runs: int, n_timesteps: int, workers: int) -> list[str]:
    """:param log_folder: where the study goes
    :param runs: number of runs (softmax and escort, runs // 2 seeds each)
    :param n_timesteps: environment steps per run
    :param workers: local Dask workers
    :return: the ``train.py`` arguments of the study"""
    return [
        "--algo", "ppo", "--env", "FourRooms-v0", "--policy", "softmax", "escort", "--seeds", str(runs // 2),
        "-n", str(n_timesteps), "--n-envs", "4", "--eval-freq", "0", "--eval-episodes", "5", "--verbose", "0",
        "-f", str(log_folder), "--workers", str(workers), "--no-report",
    ]  # fmt: skip


def time_study(argv: list[str]) -> dict[str, float]:
    """:param argv: ``train.py`` arguments of a study
    :return: wall time, summed time of its runs on their workers, number of runs, load averages (1 min) before and after"""
    configs, options = parse_command(argv)
    study = make_study(configs, options.study)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        outcome = run_study(study, options, stream=quiet)
    wall = time.perf_counter() - start
    table = pd.read_csv(study.folder / RESULTS_FILE)
    busy = table.loc[table["metric"] == "run_time", "value"].sum()
    load_after = os.getloadavg()[0]
    return {"wall": wall, "busy": busy, "runs": outcome.n_complete, "load_before": load_before, "load_after": load_after}


def spin(n: int) -> float:
    """:param n: loop iterations of pure-Python arithmetic
    :return: seconds taken"""
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i
    return time.perf_counter() - start


def machine_speedup(n: int = 20_000_000) -> float:
    """The control: how much faster two CPU-bound processes finish two equal jobs than one process does, right now.

    :param n: size of each job
    :return: that ratio (2 on two idle cores; lower when other work holds the CPUs)
    """
    one = spin(n) * 2
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        start = time.perf_counter()
        pool.map(spin, [n, n])
        two = time.perf_counter() - start
    return one / two


def main() -> None:
    """Time the study once per worker count and print the speedup of the largest over the smallest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("-n", "--n-timesteps", type=int, default=50_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(header(), flush=True)
    print(f"{args.runs} runs of PPO on FourRooms-v0, {args.n_timesteps} steps each; {os.cpu_count()} CPUs")
    print(f"control: 2 processes vs 1 on a pure-Python loop: {machine_speedup():.2f}x", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            r = time_study(study_argv(Path(tmp) / f"w{workers}", args.runs, args.n_timesteps, workers))
            results[workers] = r
            print(
                f"workers={workers}: study {r['wall']:.1f} s for {r['runs']} runs; runs on workers {r['busy']:.1f} s in all, "
                f"{r['busy'] / r['wall']:.2f} at a time on average; "
                f"load average {r['load_before']:.1f} -> {r['load_after']:.1f}",
                flush=True,
            )
    low, high = min(results), max(results)
    print(f"control: 2 processes vs 1 on a pure-Python loop: {machine_speedup():.2f}x")
    print(f"speedup {high} vs {low} workers: {results[low]['wall'] / results[high]['wall']:.2f}x")
    print(after_runs())


if __name__ == "__main__":
    main()
