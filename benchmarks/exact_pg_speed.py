"""Iterations per second of exact policy gradient on FourRooms-v0, and the share of the exact policy evaluation.

Run from the repository root: ``python benchmarks/exact_pg_speed.py [--iterations N] [--env FourRooms-v0]``. Prints one
row per parameterization (``ExactPG.learn`` from the adversarial start) and one for ``policy_evaluation`` plus
``discounted_visitation`` alone on random policies, each the best of ``--repeats`` timings, per second of wall-clock
time and per second of this process's CPU time (the latter is what other work on a busy machine does not slow down).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for a checkout not pip-installed

import envs  # noqa: E402,F401  (registers the envs)
from agents.exact_pg import ExactPG  # noqa: E402
from envs.tabular import discounted_visitation, policy_evaluation  # noqa: E402

VARIANTS = {
    "softmax": {"policy": "softmax"},
    "escort p=2": {"policy": "escort", "p": 2.0},
    "escort p=2 (no normalisation)": {"policy": "escort", "p": 2.0, "normalize": False},
    "neurd": {"policy": "neurd"},
    "neurd (uniform state weighting)": {"policy": "neurd", "state_weighting": "uniform"},
    "gnpg": {"policy": "gnpg"},
}


def best_rates(work: Callable[[], int], repeats: int) -> tuple[float, float]:
    """
    :param work: runs once and returns how many iterations it did.
    :param repeats: timings (the best counts).
    :return: iterations per second of wall-clock time and of process CPU time.
    """
    wall, cpu, n = float("inf"), float("inf"), 0
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        n = work()
        wall = min(wall, time.perf_counter() - start_wall)
        cpu = min(cpu, time.process_time() - start_cpu)
    return n / wall, n / max(cpu, 1e-9)


def learn_work(env_id: str, kwargs: dict, iterations: int) -> Callable[[], int]:
    """
    :param env_id: the env.
    :param kwargs: ``ExactPG`` arguments.
    :param iterations: iterations per timing.
    :return: the timed work: a fresh agent learns for ``iterations`` (its construction, one value iteration, included).
    """
    env = gym.make(env_id)

    def work() -> int:
        ExactPG(env, learning_rate=1.0, pi0=0.1, **kwargs).learn(iterations)
        return iterations

    return work


def evaluation_work(env_id: str, iterations: int) -> Callable[[], int]:
    """
    :param env_id: the env.
    :param iterations: evaluations per timing (distinct random policies).
    :return: the timed work: ``policy_evaluation`` and ``discounted_visitation`` of each policy.
    """
    mdp = gym.make(env_id).unwrapped.transition_model()
    policies = np.random.default_rng(0).dirichlet(np.ones(mdp.n_actions), size=(iterations, mdp.n_states))

    def work() -> int:
        for pi in policies:
            policy_evaluation(mdp, pi)
            discounted_visitation(mdp, pi)
        return iterations

    return work


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="FourRooms-v0", help="tabular env id")
    parser.add_argument("--iterations", type=int, default=2000, help="iterations per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings per row; the best counts")
    args = parser.parse_args()
    mdp = gym.make(args.env).unwrapped.transition_model()
    print(f"{args.env}: {mdp.n_states} states x {mdp.n_actions} actions, {args.iterations} iterations, best of {args.repeats}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'':<42} {'wall it/s':>10} {'CPU it/s':>10}")
    wall, cpu = best_rates(evaluation_work(args.env, args.iterations), args.repeats)
    print(f"{'policy_evaluation + discounted_visitation':<42} {wall:>10.0f} {cpu:>10.0f}")
    for name, kwargs in VARIANTS.items():
        wall, cpu = best_rates(learn_work(args.env, kwargs, args.iterations), args.repeats)
        print(f"{'ExactPG ' + name:<42} {wall:>10.0f} {cpu:>10.0f}")


if __name__ == "__main__":
    main()
