"""Environment steps per second: FourRooms-v0 single and batched, against MiniGrid-FourRooms-v0 and CliffWalking-v1.

Run from the repository root::

    python benchmarks/env_speed.py [--seconds 1.0] [--repeats 5]

Every variant steps uniformly random actions (resetting finished episodes) for ``--seconds`` per repetition; the
variants run one after the other, in an order that rotates each repetition, so all of them see the same load. The
table gives the median rate over repetitions, by the wall clock and by the process's CPU time (steps per CPU-second,
what the rate would be on an idle core), and the median over repetitions of the ratio to MiniGrid-FourRooms-v0 in the
same repetition. The helpers ``interleave``, ``timed`` and ``print_results`` serve the other speed benchmarks too; the
command, commit, date and load come from ``benchmarks.provenance``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repository root, for a checkout not pip-installed

import envs  # noqa: E402,F401  (registers the envs)
from benchmarks.provenance import after_runs, header  # noqa: E402
from envs.four_rooms_vec import FourRoomsVecEnv  # noqa: E402
from envs.make import make_vec_env  # noqa: E402

#: A block of work: runs some steps and returns how many.
Block = Callable[[], int]
#: Wall-clock and CPU seconds of a timed call, and the units it did.
Timing = tuple[int, float, float]

BATCH_SIZES = (1, 64, 4096)
REFERENCE = "MiniGrid-FourRooms-v0 (gym.make)"


def print_results(lines: list[str], title: str | None = None) -> None:
    """Print a result table between blank lines, then the date and the machine's load after the runs.

    :param lines: the table's lines
    :param title: a line printed above the table
    """
    print()
    if title:
        print(title)
    print("\n".join(lines))
    print()
    print(after_runs())


def timed(work: Callable[[], int]) -> Timing:
    """
    :param work: a call that returns how many units it did
    :return: (units, wall seconds, CPU seconds of this process)
    """
    wall, cpu = time.perf_counter(), time.process_time()
    units = work()
    return units, time.perf_counter() - wall, time.process_time() - cpu


def interleave(variants: dict[str, Callable[[], Timing]], repeats: int) -> list[dict[str, Timing]]:
    """
    Time every variant once per repetition, rotating the order each repetition.

    :param variants: name -> a call that does one timed unit of work
    :param repeats: repetitions
    :return: one ``{name: (units, wall, cpu)}`` per repetition, names in the order of ``variants``
    """
    names = list(variants)
    results = []
    for r in range(repeats):
        shift = r % len(names)
        timings = {name: variants[name]() for name in names[shift:] + names[:shift]}
        results.append({name: timings[name] for name in names})
    return results


def for_seconds(block: Block, seconds: float) -> Callable[[], Timing]:
    """:param block: a block of steps
    :param seconds: how long one timing runs (whole blocks)
    :return: a call that runs blocks for ``seconds`` and returns (steps, wall, cpu)"""

    def run() -> Timing:
        def work() -> int:
            steps, end = 0, time.perf_counter() + seconds
            while time.perf_counter() < end:
                steps += block()
            return steps

        return timed(work)

    block()
    return run


def single_env(env_id: str, n_actions: int) -> Block:
    """:param env_id: id for ``gym.make``
    :param n_actions: actions to draw from
    :return: 4096 steps of one env, reset at episode ends"""
    env = gym.make(env_id)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(n_actions, size=4096).tolist()

    def block() -> int:
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        return len(actions)

    return block


def vec_env(step: Callable[[np.ndarray], object], n_envs: int) -> Block:
    """:param step: the vectorised env's ``step``
    :param n_envs: its number of copies
    :return: at least 4096 env-steps of it"""
    rng = np.random.default_rng(0)
    actions = [rng.integers(4, size=n_envs) for _ in range(max(16, 4096 // n_envs))]

    def block() -> int:
        for batch in actions:
            step(batch)
        return len(actions) * n_envs

    return block


def sb3_batched(n_envs: int) -> Block:
    """:param n_envs: copies
    :return: steps of ``FourRoomsVecEnv`` (what ``train.py`` trains on)"""
    env = FourRoomsVecEnv(n_envs, 0, max_episode_steps=200)
    env.reset()
    return vec_env(env.step, n_envs)


def gymnasium_batched(n_envs: int) -> Block:
    """:param n_envs: copies
    :return: steps of ``gym.make_vec("FourRooms-v0", vectorization_mode="vector_entry_point")``"""
    env = gym.make_vec("FourRooms-v0", num_envs=n_envs, vectorization_mode="vector_entry_point")
    env.reset(seed=0)
    return vec_env(env.step, n_envs)


def dummy_vec_env(n_envs: int) -> Block:
    """:param n_envs: copies
    :return: steps of SB3's ``DummyVecEnv`` of ``Monitor(gym.make("FourRooms-v0"))`` copies"""
    env = make_vec_env("FourRooms-v0", n_envs, 0, batched=False)
    env.reset()
    return vec_env(env.step, n_envs)


def variants() -> dict[str, tuple[int, Block]]:
    """:return: name -> (copies, block), built once (construction is not timed)"""
    import minigrid  # noqa: F401  (registers MiniGrid ids)

    table: dict[str, tuple[int, Block]] = {"FourRooms-v0 (gym.make)": (1, single_env("FourRooms-v0", 4))}
    for n in BATCH_SIZES:
        table[f"FourRooms-v0 batched, SB3 VecEnv, N={n}"] = (n, sb3_batched(n))
    for n in BATCH_SIZES:
        table[f"FourRooms-v0 batched, gym.make_vec, N={n}"] = (n, gymnasium_batched(n))
    table["FourRooms-v0 single envs in SB3 DummyVecEnv, N=64"] = (64, dummy_vec_env(64))
    table[REFERENCE] = (1, single_env("MiniGrid-FourRooms-v0", 7))
    table["CliffWalking-v1 (gym.make)"] = (1, single_env("CliffWalking-v1", 4))
    return table


def report(results: list[dict[str, Timing]], copies: dict[str, int]) -> str:
    """:param results: what ``interleave`` returned
    :param copies: name -> number of copies
    :return: the Markdown table"""
    lines = [
        "| environment | N | env-steps/s (wall) | env-steps/CPU-s | x MiniGrid-FourRooms (same repetition) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in results[0]:
        wall = statistics.median(steps / w for steps, w, _ in (r[name] for r in results))
        cpu = statistics.median(steps / c for steps, _, c in (r[name] for r in results))
        ratio = statistics.median((r[name][0] / r[name][1]) / (r[REFERENCE][0] / r[REFERENCE][1]) for r in results)
        lines.append(f"| {name} | {copies[name]} | {wall:,.0f} | {cpu:,.0f} | {ratio:,.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per variant and repetition")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions")
    args = parser.parse_args()
    print(header())
    table = variants()
    results = interleave({name: for_seconds(block, args.seconds) for name, (_, block) in table.items()}, args.repeats)
    title = f"{args.repeats} interleaved repetitions of {args.seconds:g} s per variant; medians:"
    print_results([report(results, {name: n for name, (n, _) in table.items()})], title)


if __name__ == "__main__":
    main()
