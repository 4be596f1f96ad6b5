"""Parity of our softmax PPO baseline on MinAtar with stock SB3 PPO, side by side, same games, seeds and budget.

Run from the repository root:
``python benchmarks/minatar_parity.py [--games Breakout SpaceInvaders] [--seeds 0 1 2] [-n 1000000] [--workers 2]``.

Two arms per (game, seed), each in its own process on one torch thread:

- ``stock``: a plain SB3 script that imports nothing of this repository: ``minatar.gym.register_envs()``, MinAtar's
  ``MinAtar/<Game>-v1`` made channel-first float32 by a five-line wrapper, SB3's ``make_vec_env`` (copy ``i`` seeded
  ``seed + i``), ``PPO("MlpPolicy")`` with the network of MinAtar's paper written out below (``examples/AC_lambda.py``
  of kenjyoung/MinAtar: a 3x3 convolution with 16 channels, a 128-unit hidden layer, policy and value heads on it) and
  the PPO hyperparameters gymnax-blines published for MinAtar (``agents/<Game>-MinAtar/ppo.yaml`` of
  RobertTLange/gymnax-blines: 64 envs, 128 steps, 8 minibatches, 4 epochs, gamma 0.999, GAE 0.95, lr 5e-4 after a
  linear warm-up over the first 5% of the steps, clip 0.2, entropy 0.01, value 0.5, grad norm 0.5).
- ``ours``: ``python train.py --algo ppo --policy softmax --env MinAtar/<Game>-v1 -n N --seed S`` with the preset of
  ``hyperparams/ppo.yml`` (``minatar``) and ``envs.make_vec_env``'s SeedSequence env seeds.

Both are scored the same way after training: ``--eval-episodes`` episodes of the stochastic policy (gymnax-blines
evaluates by sampling) on a fresh env, and the mean return of the last 100 training episodes. A row per finished run
is appended to ``--out`` at once; running the command again skips the (arm, game, seed) already there, so an
interrupted comparison resumes. The table gives mean and standard error over seeds per arm, the fps, and the
published 10M-step returns (gymnax README: Asterix 15, Breakout 28, Freeway 58, SpaceInvaders 131; none for Seaquest)
next to the budget used here; they were measured on gymnax's JAX port of MinAtar, which has no sticky actions, where
both arms here play MinAtar itself with its default sticky actions (0.1). The command, commit, date and machine
load come first (``benchmarks.provenance``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repository root, for a checkout not pip-installed

from benchmarks.provenance import after_runs, header  # noqa: E402

COLUMNS = ("arm", "game", "seed", "n_timesteps", "eval_mean", "eval_episodes", "train_last100", "wall_time", "fps")
#: gymnax README, environment table (PPO of gymnax-blines, 10M steps, one run).
PUBLISHED = {"Asterix": 15.0, "Breakout": 28.0, "Freeway": 58.0, "SpaceInvaders": 131.0}
PUBLISHED_STEPS = 10_000_000
#: gymnax-blines, agents/<Game>-MinAtar/ppo.yaml (identical for the four games).
GYMNAX_BLINES_PPO = {
    "num_train_envs": 64,
    "n_steps": 128,
    "n_minibatch": 8,
    "epoch_ppo": 4,
    "gamma": 0.999,
    "gae_lambda": 0.95,
    "lr": 5e-4,
    "lr_warmup": 0.05,
    "clip_eps": 0.2,
    "entropy_coeff": 0.01,
    "critic_coeff": 0.5,
    "max_grad_norm": 0.5,
}


def stock_run(game: str, seed: int, n_timesteps: int, eval_episodes: int) -> dict[str, Any]:
    """Train and evaluate stock SB3 PPO on one game, with nothing from this repository.

    :param game: a MinAtar game (``Breakout``)
    :param seed: the seed of SB3 and of its ``make_vec_env``
    :param n_timesteps: env steps
    :param eval_episodes: stochastic evaluation episodes after training
    :return: the row of the run
    """
    import gymnasium as gym
    import minatar.gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    torch.set_num_threads(1)
    minatar.gym.register_envs()

    class ChannelFirst(gym.ObservationWrapper):
        def __init__(self, env: gym.Env) -> None:
            super().__init__(env)
            h, w, c = env.observation_space.shape
            self.observation_space = gym.spaces.Box(0.0, 1.0, (c, h, w), np.float32)

        def observation(self, observation: np.ndarray) -> np.ndarray:
            return np.moveaxis(observation, -1, 0).astype(np.float32)

    class MinAtarNetwork(BaseFeaturesExtractor):
        def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128) -> None:
            super().__init__(observation_space, features_dim)
            c, h, w = observation_space.shape
            self.net = torch.nn.Sequential(
                torch.nn.Conv2d(c, 16, kernel_size=3, stride=1),
                torch.nn.ReLU(),
                torch.nn.Flatten(),
                torch.nn.Linear(16 * (h - 2) * (w - 2), features_dim),
                torch.nn.ReLU(),
            )

        def forward(self, observations: torch.Tensor) -> torch.Tensor:
            return self.net(observations)

    hp = GYMNAX_BLINES_PPO

    def warmup(progress_remaining: float) -> float:
        return hp["lr"] * min(1.0, (1.0 - progress_remaining) / hp["lr_warmup"])

    env_id = f"MinAtar/{game}-v1"
    env = make_vec_env(env_id, n_envs=hp["num_train_envs"], seed=seed, wrapper_class=ChannelFirst)
    model = PPO(
        "MlpPolicy",
        env,
        learning_rate=warmup,
        n_steps=hp["n_steps"],
        batch_size=hp["num_train_envs"] * hp["n_steps"] // hp["n_minibatch"],
        n_epochs=hp["epoch_ppo"],
        gamma=hp["gamma"],
        gae_lambda=hp["gae_lambda"],
        clip_range=hp["clip_eps"],
        ent_coef=hp["entropy_coeff"],
        vf_coef=hp["critic_coeff"],
        max_grad_norm=hp["max_grad_norm"],
        policy_kwargs={"features_extractor_class": MinAtarNetwork, "net_arch": []},
        seed=seed,
        device="cpu",
    )
    start = time.perf_counter()
    model.learn(n_timesteps)
    wall = time.perf_counter() - start
    train_returns = [float(info["r"]) for info in model.ep_info_buffer]
    eval_env = make_vec_env(env_id, n_envs=1, seed=seed + 10_000, wrapper_class=ChannelFirst)
    returns, _ = evaluate_policy(
        model, eval_env, n_eval_episodes=eval_episodes, deterministic=False, return_episode_rewards=True
    )
    return _row("stock", game, seed, n_timesteps, (float(np.mean(returns)), len(returns)), train_returns, wall)


def ours_run(game: str, seed: int, n_timesteps: int, eval_episodes: int) -> dict[str, Any]:
    """Train our softmax baseline with ``train.py`` and the ``minatar`` preset, then score it as :func:`stock_run`.

    :param game: a MinAtar game
    :param seed: the run's seed
    :param n_timesteps: env steps
    :param eval_episodes: stochastic evaluation episodes after training
    :return: the row of the run
    """
    with tempfile.TemporaryDirectory() as folder:
        argv = [sys.executable, "train.py", "--algo", "ppo", "--policy", "softmax", "--env", f"MinAtar/{game}-v1"]
        argv += ["-n", str(n_timesteps), "--seed", str(seed), "--eval-freq", "0", "--eval-episodes", str(eval_episodes)]
        argv += ["--num-threads", "1", "-f", folder, "--verbose", "0"]
        subprocess.run(argv, cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        (run_dir,) = (Path(folder) / "ppo").iterdir()
        summary = json.loads((run_dir / "summary.json").read_text())
        train_returns = _monitor_returns(run_dir)
    evaluation = (float(summary["final_return"]), eval_episodes)
    return _row("ours", game, seed, n_timesteps, evaluation, train_returns, float(summary["wall_time"]))


def _monitor_returns(run_dir: Path) -> list[float]:
    """:return: the training episodes' returns of a run's Monitor files, in the order they ended"""
    episodes = []
    for path in run_dir.glob("*.monitor.csv"):
        with path.open() as handle:
            next(handle)
            episodes += [(float(r["t"]), float(r["r"])) for r in csv.DictReader(handle)]
    return [r for _, r in sorted(episodes)]


def _row(
    arm: str, game: str, seed: int, n: int, evaluation: tuple[float, int], train_returns: list[float], wall: float
) -> dict[str, Any]:
    """:return: one CSV row: the final evaluation (mean, episodes), the last 100 training returns' mean, the speed"""
    last = train_returns[-100:]
    return {
        "arm": arm,
        "game": game,
        "seed": seed,
        "n_timesteps": n,
        "eval_mean": round(evaluation[0], 4),
        "eval_episodes": evaluation[1],
        "train_last100": round(float(np.mean(last)), 4) if last else float("nan"),
        "wall_time": round(wall, 1),
        "fps": round(n / wall) if wall > 0 else 0,
    }


ARMS = {"stock": stock_run, "ours": ours_run}


def done_runs(path: Path, n_timesteps: int) -> list[dict[str, Any]]:
    """:param path: the CSV of finished runs
    :param n_timesteps: the budget of this comparison (rows of other budgets are ignored)
    :return: its rows at that budget"""
    if not path.exists():
        return []
    with path.open() as handle:
        return [r for r in csv.DictReader(handle) if int(r["n_timesteps"]) == n_timesteps]


def append_row(path: Path, row: dict[str, Any]) -> None:
    """:param path: the CSV of finished runs (created with its header)
    :param row: one finished run"""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        if new:
            writer.writeheader()
        writer.writerow(row)


def summarize(rows: list[dict[str, Any]], n_timesteps: int) -> str:
    """:param rows: finished runs
    :param n_timesteps: their budget
    :return: the Markdown table: per game and arm, mean and standard error over seeds, fps, the published figure"""
    lines = [
        "| game | arm | seeds | final eval (stochastic) | last 100 training episodes | fps | published, 10M steps |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for game in sorted({r["game"] for r in rows}):
        for arm in ARMS:
            mine = [r for r in rows if r["game"] == game and r["arm"] == arm]
            if not mine:
                continue
            cells = [_mean_se([float(r[k]) for r in mine]) for k in ("eval_mean", "train_last100")]
            fps = np.mean([float(r["fps"]) for r in mine])
            published = PUBLISHED.get(game)
            lines.append(
                f"| {game} | {arm} | {len(mine)} | {cells[0]} | {cells[1]} | {fps:,.0f} | "
                f"{'-' if published is None else f'{published:g}'} |"
            )
    lines.append(f"\nBudget: {n_timesteps:,} steps per run, {n_timesteps / PUBLISHED_STEPS:.1%} of the published runs' 10M.")
    return "\n".join(lines)


def _mean_se(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} +- {np.std(values, ddof=1) / np.sqrt(len(values)):.2f}"


def main() -> None:
    """Run the missing (arm, game, seed) runs in parallel processes, then print the table of every finished one."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", nargs="+", default=["Breakout", "SpaceInvaders"], help="MinAtar games")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (the same for both arms)")
    parser.add_argument("-n", "--n-timesteps", type=int, default=1_000_000, help="env steps per run")
    parser.add_argument("--eval-episodes", type=int, default=100, help="stochastic evaluation episodes after training")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), help="which arms to run")
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel (one process each)")
    parser.add_argument("--out", default="logs/benchmarks/minatar_parity.csv", help="CSV of finished runs")
    args = parser.parse_args()
    out = Path(args.out)
    rows = done_runs(out, args.n_timesteps)
    finished = {(r["arm"], r["game"], int(r["seed"])) for r in rows}
    jobs = [(a, g, s) for g in args.games for s in args.seeds for a in args.arms if (a, g, s) not in finished]
    print(header())
    print(
        f"{len(jobs)} runs of {args.n_timesteps} steps to go ({len(rows)} done in {out}), {args.workers} at a time", flush=True
    )
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        futures = {pool.submit(ARMS[a], g, s, args.n_timesteps, args.eval_episodes): (a, g, s) for a, g, s in jobs}
        for future in as_completed(futures):
            try:
                row = future.result()
            except Exception as err:  # noqa: BLE001 (one failed run must not lose the others)
                print(f"{futures[future]} failed: {type(err).__name__}: {err}", flush=True)
                continue
            rows.append(row)
            append_row(out, row)
            print(f"{row['arm']:<5} {row['game']} seed {row['seed']}: eval {row['eval_mean']}, {row['fps']} fps", flush=True)
    print(summarize([r for r in rows if r["game"] in args.games], args.n_timesteps))
    print(after_runs())


if __name__ == "__main__":
    main()
