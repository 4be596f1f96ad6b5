"""Speed of sampled tabular policy gradient (``agents.TabularPG``, ``gradient="sampled"``) on Bandit-v0 and FourRooms-v0.

Run from the repository root: ``python benchmarks/tabular_pg_speed.py [--repeats 3] [--seconds 0.5]``. Each row times
``TabularPG.learn`` (per iteration: the exact evaluation that the history records, the rollout of ``n_episodes``
on-policy episodes in the env's batched dynamics, the REINFORCE estimate and the optimizer step) and, for FourRooms,
the rollout alone and the rollout with the estimate (``TabularPG.gradient``), from a fresh agent at the given start.
It prints the best of ``--repeats`` timings of about ``--seconds`` each, as sampled episodes per second, iterations per
second and milliseconds per iteration, with the mean episode length at the start policy (FourRooms-v0 episodes end at
its 200-step time limit; the adversarial start, which rarely reaches the goal, is the slow case). ``learn`` is timed
while the agent learns, so its episodes shorten as the policy improves; the rollout row keeps the start policy. The bars:
>= 20,000 sampled episodes per second on Bandit-v0, and < 20 ms for one 16-episode FourRooms-v0 iteration.

Last, side by side in this run: ``--pooled`` FourRooms-v0 agents (softmax, 16 episodes, adversarial start, seeds
``0..K-1``) learning ``--pooled-iterations`` iterations one after the other, then the same agents from scratch learning
together (``agents.tabular_pg.learn_together``, their episodes in one batch), with the ratio of the two wall times and
a check that both give the same parameters.
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
from agents.tabular_pg import TabularPG, learn_together  # noqa: E402
from benchmarks.provenance import after_runs, header  # noqa: E402

#: ``(env id, policy, n_episodes, init, learning rate)`` of each row.
ROWS = (
    ("Bandit-v0", "escort", 16, "adversarial", 0.4),
    ("Bandit-v0", "softmax", 16, "adversarial", 0.4),
    ("Bandit-v0", "escort", 256, "adversarial", 0.4),
    ("FourRooms-v0", "escort", 16, "adversarial", 1.0),
    ("FourRooms-v0", "softmax", 16, "adversarial", 1.0),
    ("FourRooms-v0", "neurd", 16, "adversarial", 1.0),
    ("FourRooms-v0", "escort", 16, "uniform", 1.0),
)
BANDIT_BAR, FOUR_ROOMS_BAR_MS = 20_000, 20.0


def best_seconds(work: Callable[[], None], calls: int, repeats: int) -> float:
    """:param work: one call.
    :param calls: calls per timing.
    :param repeats: timings; the best counts.
    :return: the best wall-clock seconds per call."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            work()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def make_agent(env_id: str, policy: str, n_episodes: int, init: str, learning_rate: float) -> TabularPG:
    """:return: a fresh sampled agent with the row's settings (``pi0 = 0.01`` for the adversarial start)."""
    env = gym.make(env_id)
    return TabularPG(env, policy=policy, gradient="sampled", n_episodes=n_episodes, init=init, learning_rate=learning_rate)


def time_row(row: tuple[str, str, int, str, float], seconds: float, repeats: int) -> dict[str, float]:
    """
    :param row: ``(env id, policy, n_episodes, init, learning rate)``.
    :param seconds: about how long one timing lasts.
    :param repeats: timings per measure.
    :return: seconds per iteration of ``learn``, of ``gradient`` and of the rollout alone, and the mean episode length.
    """
    n_episodes = row[2]
    probe = make_agent(*row)
    length = float(probe.sample_episodes(256).lengths.mean())
    probe_start = time.perf_counter()
    probe.learn(5)
    per_call = (time.perf_counter() - probe_start) / 5
    calls = max(5, int(seconds / max(per_call, 1e-6)))
    agent = make_agent(*row)
    pi = agent.policy()
    return {
        "learn": best_seconds(lambda: agent.learn(1), calls, repeats),
        "gradient": best_seconds(lambda: agent.gradient(), calls, repeats),
        "rollout": best_seconds(lambda: agent.sampler.sample(pi, n_episodes), calls, repeats),
        "length": length,
    }


def pooled_speed(n_agents: int, n_iterations: int) -> tuple[float, float, bool]:
    """
    :param n_agents: agents (seeds ``0..n_agents-1``).
    :param n_iterations: iterations of each.
    :return: wall seconds one after the other, wall seconds together, and whether the parameters agree exactly.
    """

    def fresh() -> list[TabularPG]:
        return [
            TabularPG(gym.make("FourRooms-v0"), policy="softmax", gradient="sampled", init="adversarial", pi0=0.01, seed=s)
            for s in range(n_agents)
        ]

    alone, together = fresh(), fresh()
    start = time.perf_counter()
    for agent in alone:
        agent.learn(n_iterations)
    sequential = time.perf_counter() - start
    start = time.perf_counter()
    learn_together(together, n_iterations)
    pooled = time.perf_counter() - start
    same = all(np.array_equal(a.theta, b.theta) for a, b in zip(alone, together, strict=True))
    return sequential, pooled, same


def main() -> None:
    """Print the table and the two bars."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timings per measure; the best counts")
    parser.add_argument("--seconds", type=float, default=0.5, help="about how long one timing lasts")
    parser.add_argument("--pooled", type=int, default=50, help="FourRooms-v0 agents learning together")
    parser.add_argument("--pooled-iterations", type=int, default=40, help="iterations of each pooled agent")
    args = parser.parse_args()
    print(header())
    print(f"best of {args.repeats} timings of ~{args.seconds:g} s; wall-clock time; one process, OMP_NUM_THREADS=1")
    title = f"{'env':<13} {'policy':<8} {'N':>4} {'init':<12} {'episodes/s':>11} {'it/s':>8} {'ms/it':>7}"
    print(f"{title} {'ms gradient':>11} {'ms rollout':>10} {'mean length':>11}")
    results = {}
    for row in ROWS:
        timing = results[row] = time_row(row, args.seconds, args.repeats)
        env_id, policy, n_episodes, init, _ = row
        learn = timing["learn"]
        cells = f"{env_id:<13} {policy:<8} {n_episodes:>4} {init:<12} {n_episodes / learn:>11.0f} {1 / learn:>8.0f}"
        gradient, rollout = 1e3 * timing["gradient"], 1e3 * timing["rollout"]
        print(f"{cells} {1e3 * learn:>7.2f} {gradient:>11.2f} {rollout:>10.2f} {timing['length']:>11.1f}")
    bandit = min(row[2] / timing["learn"] for row, timing in results.items() if row[0] == "Bandit-v0" and row[2] == 16)
    rooms = max(1e3 * timing["learn"] for row, timing in results.items() if row[0] == "FourRooms-v0" and row[2] == 16)
    print(f"Bandit-v0, 16 episodes per iteration, learn() included: {bandit:,.0f} episodes per second (bar >= {BANDIT_BAR:,})")
    print(f"FourRooms-v0, one 16-episode iteration, slowest row: {rooms:.2f} ms (bar < {FOUR_ROOMS_BAR_MS:g} ms)")
    sequential, pooled, same = pooled_speed(args.pooled, args.pooled_iterations)
    per = 1e3 / (args.pooled * args.pooled_iterations)
    print(
        f"FourRooms-v0, {args.pooled} agents x {args.pooled_iterations} iterations: one after the other "
        f"{sequential * per:.2f} ms per agent-iteration, together {pooled * per:.2f} ms: {sequential / pooled:.2f}x faster; "
        f"same parameters: {'yes' if same else 'NO'}"
    )
    print(after_runs())


if __name__ == "__main__":
    main()
