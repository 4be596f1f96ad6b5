"""What ``train.py`` gives with the project's default hyperparameters on FourRooms-v0: PPO, softmax vs escort.

For each policy and seed, one run exactly as ``python train.py --policy P --env FourRooms-v0 --seed S [--env-kwargs ...]``
would make it, then the greedy policy's discounted return from the start state over V*(start) (computed exactly from the
transition model) and the sub-goals the greedy policy collects. Two settings: sub-goals off (``subgoals=[]``) and the
default env (sub-goals on).

    python benchmarks/fourrooms_ppo.py [--seeds 5] [--workers 2] [-n 50000] [--setting off] [--hyperparams k=v ...]

``--hyperparams`` overrides ``hyperparams/ppo.yml`` for every run, as ``train.py --hyperparams`` does; ``--setting``
keeps one of the two settings. The command, commit, date and machine load are printed first (``benchmarks.provenance``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for a checkout not pip-installed

from benchmarks.provenance import after_runs, header  # noqa: E402
from experiments.config import parse_key_values  # noqa: E402

SETTINGS = {"subgoals off": {"subgoals": []}, "default (sub-goals on)": {}}
POLICIES = ("softmax", "escort")


def one_run(
    policy: str, seed: int, env_kwargs: dict[str, Any], n_timesteps: int, hyperparams: dict[str, Any]
) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from experiments.config import RunConfig
    from experiments.run import run

    with tempfile.TemporaryDirectory() as logs:
        config = RunConfig(
            policy=policy,
            seed=seed,
            env_kwargs=env_kwargs,
            n_timesteps=n_timesteps,
            log_folder=logs,
            eval_freq=0,
            verbose=0,
            hyperparams=hyperparams,
        )
        start = time.perf_counter()
        summary = run(config)
        return {**summary, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("-n", "--n-timesteps", type=int, default=50_000)
    parser.add_argument("--setting", choices=("off", "default"), help="only this setting (sub-goals off, or the default)")
    parser.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of hyperparams/ppo.yml")
    args = parser.parse_args()
    hyperparams = parse_key_values(args.hyperparams, "--hyperparams")
    settings = list(SETTINGS) if args.setting is None else [list(SETTINGS)[args.setting == "default"]]
    jobs = [(name, policy, seed) for name in settings for policy in POLICIES for seed in range(args.seeds)]
    print(header(), flush=True)
    with ProcessPoolExecutor(args.workers) as pool:
        futures = {job: pool.submit(one_run, job[1], job[2], SETTINGS[job[0]], args.n_timesteps, hyperparams) for job in jobs}
        results = {job: future.result() for job, future in futures.items()}
    overrides = f", overrides {hyperparams}" if hyperparams else ""
    print(
        f"PPO on FourRooms-v0, {args.n_timesteps} steps, default hyperparameters (hyperparams/ppo.yml){overrides}, "
        "greedy policy"
    )
    seconds = sorted(r["seconds"] for r in results.values())
    print(f"wall seconds per run: median {seconds[len(seconds) // 2]:.1f}, max {seconds[-1]:.1f} ({args.workers} workers)")
    for name in settings:
        print(f"\n{name}: fraction of V*(start) per seed; sub-goals the greedy policy collects")
        for policy in POLICIES:
            rows = [results[(name, policy, seed)] for seed in range(args.seeds)]
            fractions = [r["fraction_of_optimal"] for r in rows]
            reached = sum(f >= 0.95 for f in fractions)
            subgoals = [r.get("subgoals_collected") for r in rows]
            print(
                f"  {policy:8s} {' '.join(f'{f:6.3f}' for f in fractions)}   >=95% of V*: {reached}/{args.seeds}"
                f"   sub-goals: {subgoals}"
            )
    print(f"\n{after_runs()}")


if __name__ == "__main__":
    main()
