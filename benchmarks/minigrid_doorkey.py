"""PPO (or QAC) with softmax and escort policies on MiniGrid-DoorKey-5x5-v0: how many seeds reach a mean return of 0.9.

Run from the repository root: ``python benchmarks/minigrid_doorkey.py [--algo ppo] [--seeds 0 1 2 3 4] [--workers 2]``.
Each (policy, seed) is a run as ``train.py`` makes it (``hyperparams/<algo>.yml``: the ``minigrid`` preset) in its own
process, evaluated every ``--eval-freq`` steps on ``--eval-episodes`` stochastic episodes; it stops
at the first evaluation whose mean reaches ``--target`` (``--full``: it trains for the whole budget). A row per
finished run is appended to ``--out`` at once (partial results survive an interruption); the evaluation curves go to
the same name with ``_curves``. The table at the end counts, per policy, the seeds whose evaluation mean reached
``--target`` within ``--n-timesteps`` steps. The command, commit, date and machine load come first
(``benchmarks.provenance``).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for a checkout not pip-installed

from benchmarks.provenance import after_runs, header  # noqa: E402
from experiments.config import parse_key_values  # noqa: E402

COLUMNS = (
    "env", "policy", "seed", "n_timesteps", "target", "first_step_at_target", "best_eval", "last_eval", "wall_time", "fps",
)  # fmt: skip


def run_one(env_id: str, policy: str, seed: int, args: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[int, float]]]:
    """Train one (policy, seed) run in this process until its evaluation mean reaches the target or the budget ends.

    :param env_id: the MiniGrid id
    :param policy: ``softmax`` or ``escort``
    :param seed: the seed
    :param args: the script's options (``algo``, ``n_timesteps``, ``eval_freq``, ``eval_episodes``, ``target``)
    :return: the CSV row, and the evaluation curve ``(timesteps, mean return)``
    """
    import tempfile
    import time

    import torch
    from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold

    torch.set_num_threads(1)
    from experiments.config import RunConfig
    from experiments.run import resolve, validate
    from experiments.sb3_run import build_model, eval_deterministic, make_envs

    config = RunConfig(
        algo=args["algo"], env=env_id, policy=policy, seed=seed, n_timesteps=args["n_timesteps"],
        hyperparams=args["hyperparams"], verbose=0,
    )  # fmt: skip
    validate(config).close()
    hp = resolve(config)
    train_env, eval_env = make_envs(config, hp, None)
    model = build_model(config, hp, train_env)
    evaluation = EvalCallback(
        eval_env,
        n_eval_episodes=args["eval_episodes"],
        eval_freq=max(args["eval_freq"] // train_env.num_envs, 1),
        deterministic=eval_deterministic(env_id, hp),
        callback_on_new_best=StopTrainingOnRewardThreshold(args["target"]) if args["stop_at_target"] else None,
        log_path=tempfile.mkdtemp(prefix="doorkey_eval_"),  # SB3 keeps the curve only when it has a log folder
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(hp["n_timesteps"], callback=evaluation)
    wall = time.perf_counter() - start
    curve = [(int(t), float(np.mean(r))) for t, r in zip(evaluation.evaluations_timesteps, evaluation.evaluations_results)]
    reached = [t for t, mean in curve if mean >= args["target"]]
    row = {
        "env": env_id,
        "policy": policy,
        "seed": seed,
        "n_timesteps": model.num_timesteps,
        "target": args["target"],
        "first_step_at_target": reached[0] if reached else "",
        "best_eval": max(mean for _, mean in curve) if curve else float("nan"),
        "last_eval": curve[-1][1] if curve else float("nan"),
        "wall_time": round(wall, 1),
        "fps": round(model.num_timesteps / wall, 1),
    }
    return row, curve


def append_rows(path: Path, columns: tuple[str, ...] | list[str], rows: list[dict[str, Any]]) -> None:
    """Append rows to a CSV file, writing the header first when the file is new.

    :param path: the file
    :param columns: its columns
    :param rows: the rows
    """
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        if new:
            writer.writeheader()
        writer.writerows(rows)


def summarize(rows: list[dict[str, Any]], n_seeds: int) -> str:
    """:param rows: finished runs
    :param n_seeds: seeds asked for per policy
    :return: the table: per policy, seeds at target, median steps to reach it, best evaluation mean (mean +- std)"""
    lines = [f"{'policy':<10}{'runs':>6}{'at target':>11}{'median steps':>14}{'best eval':>18}{'mean fps':>10}"]
    for policy in dict.fromkeys(r["policy"] for r in rows):
        mine = [r for r in rows if r["policy"] == policy]
        steps = [int(r["first_step_at_target"]) for r in mine if r["first_step_at_target"] != ""]
        finals = np.array([float(r["best_eval"]) for r in mine])
        median = f"{np.median(steps):.0f}" if steps else "-"
        lines.append(
            f"{policy:<10}{len(mine):>6}{f'{len(steps)}/{n_seeds}':>11}{median:>14}"
            f"{f'{finals.mean():.3f} +- {finals.std():.3f}':>18}{np.mean([float(r['fps']) for r in mine]):>10.0f}"
        )
    return "\n".join(lines)


def main() -> None:
    """Run the grid in parallel processes and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="ppo", choices=("ppo", "a2c", "qac"), help="algorithm")
    parser.add_argument("--env", default="MiniGrid-DoorKey-5x5-v0", help="MiniGrid id")
    parser.add_argument("--policies", nargs="+", default=["escort", "softmax"], help="policy parameterizations")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="seeds")
    parser.add_argument("-n", "--n-timesteps", type=int, default=200_000, help="training steps per run")
    parser.add_argument("--eval-freq", type=int, default=10_000, help="evaluate every this many steps")
    parser.add_argument("--eval-episodes", type=int, default=20, help="episodes per evaluation")
    parser.add_argument("--target", type=float, default=0.9, help="mean evaluation return to reach")
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel (one process each)")
    parser.add_argument(
        "--hyperparams", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of hyperparams/<algo>.yml"
    )
    parser.add_argument("--full", action="store_true", help="train every run for the whole budget (default: stop at target)")
    parser.add_argument("--out", default="logs/benchmarks/minigrid_doorkey.csv", help="CSV of finished runs")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = Path(args.out)
    curves = out.with_name(f"{out.stem}_curves{out.suffix}")
    options = {k: getattr(args, k) for k in ("algo", "n_timesteps", "eval_freq", "eval_episodes", "target")}
    options["stop_at_target"] = not args.full
    options["hyperparams"] = parse_key_values(args.hyperparams, "--hyperparams")
    jobs = [(policy, seed) for seed in args.seeds for policy in args.policies]
    print(header())
    print(
        f"{args.env}: {args.algo.upper()}, {len(jobs)} runs of {args.n_timesteps} steps, {args.workers} at a time -> {out}",
        flush=True,
    )
    rows = []
    context = get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context, max_tasks_per_child=1) as pool:
        futures = {pool.submit(run_one, args.env, policy, seed, options): (policy, seed) for policy, seed in jobs}
        for future in as_completed(futures):
            try:
                row, curve = future.result()
            except Exception as err:  # noqa: BLE001 (one failed run must not lose the others)
                print(f"{futures[future]} failed: {type(err).__name__}: {err}", flush=True)
                continue
            rows.append(row)
            append_rows(out, COLUMNS, [row])
            points = [{"policy": row["policy"], "seed": row["seed"], "timesteps": t, "eval_return": m} for t, m in curve]
            append_rows(curves, ("policy", "seed", "timesteps", "eval_return"), points)
            print(
                f"{row['policy']:<8} seed {row['seed']}: best {row['best_eval']:.3f}, last {row['last_eval']:.3f}, "
                f"at {args.target} after {row['first_step_at_target'] or 'never'} steps, {row['fps']} fps",
                flush=True,
            )
    print(summarize(rows, len(args.seeds)))
    print(after_runs())


if __name__ == "__main__":
    main()
