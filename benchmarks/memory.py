"""Peak memory (resident set size) of one PPO run of ``train.py`` on FourRooms-v0 and one on Atari.

Run from the repository root::

    python benchmarks/memory.py [--fourrooms-steps 20000] [--atari-steps 2048] [--atari ALE/Pong-v5]

Each run is a fresh ``python train.py ...`` process (escort policy, the hyperparameters of ``hyperparams/ppo.yml``,
logs in a temporary folder, ``OMP_NUM_THREADS=1`` as in the other benchmarks), and its peak RSS is what the kernel
reports for it (``ru_maxrss`` from ``os.wait4``). The buffers are allocated in the first iteration, so the peak does
not grow with the number of steps beyond it.
For scale, the first row is a process that only imports torch, SB3 and the project.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repository root, for a checkout not pip-installed

from benchmarks.env_speed import print_results  # noqa: E402
from benchmarks.provenance import header  # noqa: E402

IMPORTS_ONLY = "import torch, stable_baselines3, ale_py, envs, policies, experiments.sb3_run"


def peak_rss(command: list[str]) -> tuple[float, float]:
    """
    :param command: a command to run to the end (from the repository root, output discarded)
    :return: its peak resident set size in MiB and its wall-clock seconds (one torch thread)
    :raises RuntimeError: if it fails
    """
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        environment = {**os.environ, "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            stderr.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}): {stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fourrooms-steps", type=int, default=20_000, help="training steps of the FourRooms run")
    parser.add_argument("--atari-steps", type=int, default=2048, help="training steps of the Atari run")
    parser.add_argument("--atari", default="ALE/Pong-v5", help="Atari id")
    args = parser.parse_args()
    print(header())
    with tempfile.TemporaryDirectory() as logs:
        train = [sys.executable, "train.py", "--algo", "ppo", "--policy", "escort", "-f", logs, "--verbose", "0"]
        runs = {
            "imports only (torch, SB3, ALE, the project)": [sys.executable, "-c", IMPORTS_ONLY],
            f"FourRooms-v0, {args.fourrooms_steps} steps, 8 envs (batched), periodic evaluation": [
                *train,
                *("--env", "FourRooms-v0", "-n", str(args.fourrooms_steps)),
            ],
            f"{args.atari}, {args.atari_steps} steps, 8 envs, 4 stacked frames, 1 final evaluation episode": [
                *train,
                *("--env", args.atari, "-n", str(args.atari_steps), "--eval-freq", "0", "--eval-episodes", "1"),
            ],
        }
        lines = ["| run | peak RSS (MiB) | wall (s) |", "|---|---:|---:|"]
        for name, command in runs.items():
            rss, wall = peak_rss(command)
            lines.append(f"| {name} | {rss:,.0f} | {wall:,.0f} |")
            print(f"`{' '.join(command[1:]).replace(logs, 'LOGS')}`")
    print_results(lines)


if __name__ == "__main__":
    main()
