"""Per-run overhead of the study machinery over bare runs: the same PPO runs with ``experiments.run.run`` in this
process, and as a study on 1 Dask worker, measured side by side.

Run from the repository root: ``python benchmarks/study_overhead.py [--runs 8] [-n 2048]``. A first bare run warms up
this process (imports, first-call costs) and is not counted. In the study, the worker runs one run after the other; the
time between two completions, as the launching process sees them (run stored, results.csv rewritten), minus the time
``run`` itself took on the worker (``run_time`` in the run's summary), is what the study adds to each run: submission,
sending the files back, storing them, rewriting the table. What remains of the study's wall time is its one-time cost:
starting the local cluster, imports in the fresh worker, shutting down. Load from other work on the machine slows bare
runs and study runs alike, but not the per-run overhead, which is measured within the study.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for a checkout not pip-installed

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.provenance import after_runs, header  # noqa: E402
from experiments.cli import parse_command  # noqa: E402
from experiments.run import run  # noqa: E402
from experiments.study import make_study, run_study  # noqa: E402


def study_argv(log_folder: Path, seeds: list[int], n_timesteps: int) -> list[str]:
    """:param log_folder: where the runs go
    :param seeds: one escort run per seed
    :param n_timesteps: environment steps per run
    :return: ``train.py`` arguments of the runs as a 1-worker study"""
    return [
        "--algo", "ppo", "--env", "FourRooms-v0", "--policy", "escort", "--seeds", *map(str, seeds), "-n", str(n_timesteps),
        "--n-envs", "4", "--eval-freq", "0", "--eval-episodes", "5", "--verbose", "0", "-f", str(log_folder),
        "--workers", "1", "--no-report",
    ]  # fmt: skip


def time_bare(argv: list[str], folder: Path) -> float:
    """:param argv: the study's arguments
    :param folder: where the bare runs go
    :return: seconds to run every configuration one after the other with ``experiments.run.run``"""
    configs, _ = parse_command(argv)
    run(configs[0], folder / "warmup")
    start = time.perf_counter()
    for k, config in enumerate(configs):
        run(config, folder / f"bare{k}")
    return time.perf_counter() - start


class CompletionTimes(io.TextIOBase):
    """The progress stream of a study in plain mode: one line per finished run, timestamped here."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def write(self, text: str) -> int:
        """:param text: a progress line
        :return: its length"""
        if " runs: " in text and "ETA ?" not in text:
            self.times.append(time.perf_counter())
        return len(text)

    def isatty(self) -> bool:
        """:return: False: plain lines, one per finished run"""
        return False


def time_study(argv: list[str]) -> tuple[float, list[float], list[float]]:
    """:param argv: the study's arguments
    :return: its wall time (cluster start and stop included, no report), the times at which runs finished (from its
        start), and the worker's ``run_time`` of each run in order of completion"""
    configs, options = parse_command(argv)
    study = make_study(configs, options.study)
    stream = CompletionTimes()
    start = time.perf_counter()
    run_study(study, options, stream=stream)
    wall = time.perf_counter() - start
    runs = sorted((study.folder / "runs").iterdir(), key=lambda p: (p / "summary.json").stat().st_mtime_ns)
    run_times = [json.loads((p / "summary.json").read_text())["run_time"] for p in runs]
    return wall, [t - start for t in stream.times], run_times


def main() -> None:
    """Print bare and study times, the overhead per run, and the one-time cost of a study."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("-n", "--n-timesteps", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(header(), flush=True)
    n = args.runs
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        argv = study_argv(Path(tmp), list(range(n)), args.n_timesteps)
        bare = time_bare(argv, Path(tmp) / "bare")
        wall, done, run_times = time_study(argv)
    gaps = np.diff(done)
    overhead = gaps - np.array(run_times[1:])
    one_time = wall - sum(run_times) - overhead.sum()
    load = f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    print(f"PPO on FourRooms-v0, {n} runs of {args.n_timesteps} steps; {load}")
    print(f"bare run(): {bare / n:.2f} s per run ({bare:.2f} s in all)")
    print(f"study on 1 worker: {wall:.2f} s in all; run() on the worker {np.mean(run_times):.2f} s per run, one run "
          f"finished every {gaps.mean():.2f} s")  # fmt: skip
    print(f"overhead per run: {overhead.mean():.3f} s (median {np.median(overhead):.3f} s, max {overhead.max():.3f} s)")
    print(f"one-time cost of the study (cluster start, worker imports, shutdown): {one_time:.2f} s, "
          f"{one_time / n:.2f} s per run over {n} runs")  # fmt: skip
    print(f"study minus bare, everything included: {(wall - bare) / n:.2f} s per run")
    print(after_runs())


if __name__ == "__main__":
    main()
