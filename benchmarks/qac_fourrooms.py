"""QAC with softmax, escort and NeuRD policies on FourRooms-v0: the fraction of V* each greedy policy reaches.

The bar: with the sub-goals turned off (``subgoals=[]``), each policy reaches >= 90% of V* within 100k steps on every
one of 5 seeds. The default FourRooms-v0 (with its sub-goals) is reported as a finding. The fraction of V* is
exact: the greedy policy, read off the network on every state's observation, evaluated on ``transition_model()`` by
the runner's ``experiments.tabular_eval.greedy_report`` (the ``fraction_of_optimal`` that ``train.py`` reports).

    python benchmarks/qac_fourrooms.py                      # 5 seeds x 3 policies x 2 variants, 100k steps, 2 processes
    python benchmarks/qac_fourrooms.py --actor-update sampled --seeds 3
    python benchmarks/qac_fourrooms.py --variants 'subgoals=[]' --hyperparams td_lambda=0.5 replay_updates=0 replay_rollouts=0

``--hyperparams`` overrides ``hyperparams/qac.yml`` for every run (YAML values, as ``train.py --hyperparams``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for a checkout not pip-installed

from experiments.config import parse_key_values  # noqa: E402
from experiments.errors import UsageError  # noqa: E402

ENV_ID = "FourRooms-v0"
VARIANTS: dict[str, dict[str, Any]] = {"subgoals=[]": {"subgoals": []}, "default": {}}
BAR = 0.9
POLICIES = ("softmax", "escort", "neurd")
#: Hyperparameter keys that the runner (``experiments/sb3_run.py``) consumes instead of passing them to QAC.
RUNNER_KEYS = ("n_timesteps", "n_envs", "policy", "policy_kwargs", "normalize", "frame_stack", "eval_deterministic")


@dataclass(frozen=True)
class Job:
    """One training run."""

    variant: str
    policy: str
    seed: int
    n_timesteps: int
    eval_every: int
    overrides: dict[str, Any]


def resolved_hyperparams(overrides: dict[str, Any]) -> dict[str, Any]:
    """:param overrides: values that replace the file's
    :return: ``hyperparams/qac.yml`` resolved for FourRooms-v0, as ``train.py`` resolves it"""
    from envs.make import env_family
    from experiments.hyperparams import load_hyperparams

    return load_hyperparams("qac", ENV_ID, env_family(ENV_ID), overrides)


@dataclass(frozen=True)
class Point:
    """An exact evaluation of the greedy policy."""

    steps: int
    fraction: float
    subgoals: tuple[int, ...]


def train_one(job: Job) -> tuple[Job, list[Point], float]:
    """Train QAC with the resolved hyperparameters; evaluate the greedy policy every ``eval_every`` steps (rounded down
    to whole rollouts, so that no run takes a step past ``n_timesteps``) with the runner's ``greedy_report``.

    :param job: the run
    :return: the job, its evaluations, its wall time in seconds
    """
    import torch as th

    th.set_num_threads(1)
    from agents import QAC
    from envs.make import make_vec_env
    from experiments.hyperparams import schedule
    from experiments.tabular_eval import greedy_report

    hp = resolved_hyperparams(job.overrides)
    env_kwargs = VARIANTS[job.variant]
    env = make_vec_env(ENV_ID, int(hp["n_envs"]), job.seed, env_kwargs=env_kwargs)
    kwargs = {key: schedule(value) if key == "learning_rate" else value for key, value in hp.items() if key not in RUNNER_KEYS}
    policy_kwargs = {**(hp.get("policy_kwargs") or {}), "parameterization": job.policy}
    model = QAC("MlpPolicy", env, policy_kwargs=policy_kwargs, seed=job.seed, device="cpu", **kwargs)
    rollout = model.n_steps * model.n_envs
    checkpoints = sorted(
        {
            min(k, job.n_timesteps) // rollout * rollout
            for k in range(job.eval_every, job.n_timesteps + job.eval_every, job.eval_every)
        }
    )
    start = time.perf_counter()
    curve = []
    for checkpoint in checkpoints:
        model.learn(checkpoint - model.num_timesteps, reset_num_timesteps=False)
        summary = greedy_report(model, ENV_ID, env_kwargs)
        curve.append(Point(model.num_timesteps, summary["fraction_of_optimal"], tuple(summary.get("subgoals_collected", ()))))
    return job, curve, time.perf_counter() - start


def first_reach(curve: list[Point]) -> str:
    """:return: the first evaluated step with a fraction >= the bar, in thousands, or "-" """
    steps = next((point.steps for point in curve if point.fraction >= BAR), None)
    return "-" if steps is None else f"{steps / 1000:.0f}k"


def report(results: list[tuple[Job, list[Point], float]], wall: float, header: str) -> str:
    """:return: one table row per (variant, policy): seeds at >= 90% of V*, final fractions, steps to 90%, sub-goals"""
    columns = f"{'variant':12s} {'policy':8s} {'>=0.9':>5s}  {'final fraction of V* per seed':34s} {'mean':>5s}  "
    lines = [header, columns + f"{'first >= 0.9':24s} sub-goals on the final greedy path"]
    for variant, policy in itertools.product(VARIANTS, POLICIES):
        rows = sorted((r for r in results if r[0].variant == variant and r[0].policy == policy), key=lambda r: r[0].seed)
        if not rows:
            continue
        finals = [curve[-1] for _, curve, _ in rows]
        hits = f"{sum(point.fraction >= BAR for point in finals)}/{len(rows)}"
        per_seed = " ".join(f"{point.fraction:.3f}" for point in finals)
        reach = " ".join(first_reach(curve) for _, curve, _ in rows)
        subgoals = " ".join("[" + ",".join(map(str, point.subgoals)) + "]" for point in finals)
        mean = np.mean([point.fraction for point in finals])
        lines.append(f"{variant:12s} {policy:8s} {hits:>5s}  {per_seed:34s} {mean:5.3f}  {reach:24s} {subgoals}")
    summed = sum(seconds for _, _, seconds in results)
    final_steps = max(curve[-1].steps for _, curve, _ in results)
    lines.append(
        f"last evaluation at {final_steps} steps; wall time {wall:.0f} s; training time summed over runs {summed:.0f} s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. n-1")
    parser.add_argument("--n-timesteps", type=int, default=100_000, help="environment steps per run")
    parser.add_argument("--eval-every", type=int, default=10_000, help="steps between exact evaluations")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated parameterizations")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: subgoals=[], default")
    parser.add_argument("--actor-update", default=None, help="sampled or all_actions (default: hyperparams/qac.yml)")
    parser.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of hyperparams/qac.yml")
    args = parser.parse_args(argv)
    try:
        overrides = parse_key_values(args.hyperparams, "--hyperparams")
    except UsageError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    if args.actor_update:
        overrides["actor_update"] = args.actor_update
    for flag, given, known in (("--variants", args.variants, VARIANTS), ("--policies", args.policies, POLICIES)):
        unknown = set(given.split(",")) - set(known)
        if unknown:
            parser.error(f"{flag}: unknown {', '.join(sorted(unknown))}; choose from {', '.join(known)}")
    jobs = [
        Job(variant, policy, seed, args.n_timesteps, args.eval_every, overrides)
        for variant, policy, seed in itertools.product(args.variants.split(","), args.policies.split(","), range(args.seeds))
    ]
    hp = resolved_hyperparams(overrides)
    start = time.perf_counter()
    with Pool(args.workers) as pool:
        results = pool.map(train_one, jobs, chunksize=1)
    header = (
        f"QAC on {ENV_ID}, {args.n_timesteps} steps, seeds 0..{args.seeds - 1}, actor_update={hp['actor_update']}, "
        f"{args.workers} processes; greedy policy evaluated exactly every {args.eval_every} steps; "
        f"overrides {overrides or 'none'}"
    )
    print(report(results, time.perf_counter() - start, header))


if __name__ == "__main__":
    main()
