"""What ``train.py`` gives with the project's default hyperparameters on FourRooms-v0: PPO, softmax vs escort.

For each policy and seed, one run exactly as ``python train.py --policy P --env FourRooms-v0 --seed S [--env-kwargs ...]``
would make it, then the greedy policy's discounted return from the start state over V*(start) (computed exactly from the
transition model) and the sub-goals the greedy policy collects. Two settings: sub-goals off (``subgoals=[]``) and the
default env (sub-goals on).

    python benchmarks/fourrooms_ppo.py [--seeds 5] [--workers 2] [-n 50000]
"""

from __future__ import annotations

import argparse
import tempfile
from concurrent.futures import ProcessPoolExecutor
from typing import Any

SETTINGS = {"subgoals off": {"subgoals": []}, "default (sub-goals on)": {}}
POLICIES = ("softmax", "escort")


def one_run(policy: str, seed: int, env_kwargs: dict[str, Any], n_timesteps: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from experiments.config import RunConfig
    from experiments.run import run

    with tempfile.TemporaryDirectory() as logs:
        config = RunConfig(policy=policy, seed=seed, env_kwargs=env_kwargs, n_timesteps=n_timesteps, log_folder=logs,
                           eval_freq=0, verbose=0)
        return run(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("-n", "--n-timesteps", type=int, default=50_000)
    args = parser.parse_args()
    jobs = [(name, policy, seed) for name in SETTINGS for policy in POLICIES for seed in range(args.seeds)]
    with ProcessPoolExecutor(args.workers) as pool:
        futures = {job: pool.submit(one_run, job[1], job[2], SETTINGS[job[0]], args.n_timesteps) for job in jobs}
        results = {job: future.result() for job, future in futures.items()}
    print(f"PPO on FourRooms-v0, {args.n_timesteps} steps, default hyperparameters (hyperparams/ppo.yml), greedy policy")
    for name in SETTINGS:
        print(f"\n{name}: fraction of V*(start) per seed; sub-goals the greedy policy collects")
        for policy in POLICIES:
            rows = [results[(name, policy, seed)] for seed in range(args.seeds)]
            fractions = [r["fraction_of_optimal"] for r in rows]
            reached = sum(f >= 0.95 for f in fractions)
            subgoals = [r.get("subgoals_collected") for r in rows]
            print(f"  {policy:8s} {' '.join(f'{f:6.3f}' for f in fractions)}   >=95% of V*: {reached}/{args.seeds}"
                  f"   sub-goals: {subgoals}")


if __name__ == "__main__":
    main()
