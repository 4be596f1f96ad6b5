"""PPO with softmax and escort policies on one Atari game: game scores after 100k steps, and their training speed ratio.

Run from the repository root: ``python benchmarks/atari_ppo.py [--env ALE/RoadRunner-v5] [-n 100000] [--seeds 0]``.
For each seed, one process trains the softmax and the escort model side by side (``hyperparams/ppo.yml``: the ``atari``
preset, NatureCNN, 4 stacked 84x84 frames) in two threads that take turns, one rollout + update each: the seconds of
each turn are summed per model, so both speeds are measured under the same machine load and
``fps ratio = escort fps / softmax fps``. Both models are then scored on ``--eval-episodes`` full games (unclipped
rewards, no episodic life, stochastic actions as rl-zoo3 evaluates Atari), beside a uniformly random policy on the
same evaluation env. Each model is saved as a run folder that ``python train.py --eval`` reads. Rows are appended to
``--out`` as each seed finishes. The command, commit, date and machine load come first (``benchmarks.provenance``).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for a checkout not pip-installed

from benchmarks.minigrid_doorkey import append_rows  # noqa: E402
from benchmarks.provenance import after_runs, header  # noqa: E402

POLICIES = ("softmax", "escort")
#: Print each model's progress about every this many steps.
PROGRESS_EVERY = 10_240
COLUMNS = (
    "env", "seed", "policy", "n_timesteps", "score_mean", "score_std", "episodes", "train_seconds", "fps",
    "fps_ratio_escort_softmax", "run_dir",
)  # fmt: skip


class Baton:
    """Turns between training threads: one holder at a time, passed on at each rollout start; seconds held per name."""

    def __init__(self, names: tuple[str, ...]) -> None:
        """:param names: the threads' names, in turn order"""
        self._cond = threading.Condition()
        self._active = list(names)
        self._holder: str | None = names[0]
        self._since: float | None = None
        self.seconds = dict.fromkeys(names, 0.0)

    def take(self, name: str) -> None:
        """End ``name``'s turn if it holds one, then wait for its next turn and start timing it.

        :param name: the calling thread's name
        """
        with self._cond:
            if self._holder == name and self._since is not None:
                self._pass(name)
            self._cond.wait_for(lambda: self._holder == name)
            self._since = time.perf_counter()

    def leave(self, name: str) -> None:
        """``name`` is done: end its turn and take it out of the rotation.

        :param name: the calling thread's name
        """
        with self._cond:
            if self._holder == name:
                self._pass(name)
            self._active.remove(name)
            if self._holder == name:
                self._holder = self._active[0] if self._active else None
            self._cond.notify_all()

    def _pass(self, name: str) -> None:
        if self._since is not None:
            self.seconds[name] += time.perf_counter() - self._since
        self._since = None
        self._holder = self._active[(self._active.index(name) + 1) % len(self._active)]
        self._cond.notify_all()


def _turn_callback(baton: Baton, name: str) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class TurnCallback(BaseCallback):
        """Wait for this model's turn before each rollout."""

        def _on_rollout_start(self) -> None:
            baton.take(name)
            if self.num_timesteps and self.num_timesteps % PROGRESS_EVERY < self.training_env.num_envs:
                seconds = baton.seconds[name]
                print(f"{name}: {self.num_timesteps} steps, {self.num_timesteps / max(seconds, 1e-9):.0f} fps", flush=True)

        def _on_step(self) -> bool:
            return True

    return TurnCallback()


class RandomAgent:
    """Uniformly random actions, with ``predict`` as SB3's ``evaluate_policy`` calls it."""

    def __init__(self, action_space: Any, seed: int) -> None:
        """:param action_space: a Discrete space
        :param seed: seed of the actions"""
        self.n = int(action_space.n)
        self.rng = np.random.default_rng(seed)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = False):
        """:return: one random action per env, and no state"""
        return self.rng.integers(self.n, size=len(observation)), None


def train_side_by_side(models: dict[str, Any], n_timesteps: int) -> dict[str, float]:
    """Train every model for ``n_timesteps`` steps in its own thread, one rollout + update at a time each.

    :param models: name -> SB3 model
    :param n_timesteps: steps per model
    :return: name -> seconds spent in its turns
    """
    baton = Baton(tuple(models))
    errors: list[BaseException] = []

    def learn(name: str) -> None:
        try:
            models[name].learn(n_timesteps, callback=_turn_callback(baton, name))
        except BaseException as err:  # noqa: BLE001 (re-raised in the main thread)
            errors.append(err)
        finally:
            baton.leave(name)

    threads = [threading.Thread(target=learn, args=(name,)) for name in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return baton.seconds


def run_seed(env_id: str, seed: int, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Train softmax and escort side by side for one seed, save both, score them and a random policy.

    :param env_id: the Atari id
    :param seed: the seed
    :param args: the script's options (``n_timesteps``, ``eval_episodes``, ``log_folder``)
    :return: one CSV row per policy (and one for the random policy)
    """
    import torch
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)
    from experiments.config import RunConfig
    from experiments.results import CONFIG_FILE, write_yaml
    from experiments.run import next_run_dir, provenance, resolve, validate
    from experiments.sb3_run import MODEL_FILE, build_model, make_envs

    configs, models, eval_envs, hps = {}, {}, {}, {}
    for policy in POLICIES:
        config = RunConfig(
            env=env_id, policy=policy, seed=seed, n_timesteps=args["n_timesteps"], log_folder=args["log_folder"]
        )
        validate(config).close()
        hp = resolve(config)
        train_env, eval_env = make_envs(config, hp, None)
        configs[policy], hps[policy], eval_envs[policy] = config, hp, eval_env
        models[policy] = build_model(config, hp, train_env)
    seconds = train_side_by_side(models, args["n_timesteps"])
    fps = {policy: models[policy].num_timesteps / seconds[policy] for policy in POLICIES}
    ratio = fps["escort"] / fps["softmax"]
    rows, episodes = [], args["eval_episodes"]
    for policy in POLICIES:
        run_dir = next_run_dir(configs[policy])
        run_dir.mkdir(parents=True)
        record = {
            **configs[policy].to_dict(),
            "resolved_hyperparams": hps[policy],
            "provenance": provenance(configs[policy].algo),
        }
        write_yaml(run_dir / CONFIG_FILE, record)
        models[policy].save(run_dir / MODEL_FILE)
        model, env = models[policy], eval_envs[policy]
        scores, _ = evaluate_policy(model, env, episodes, deterministic=False, return_episode_rewards=True)
        steps = models[policy].num_timesteps
        rows.append(_row(env_id, seed, policy, steps, scores, seconds[policy], fps[policy], ratio, run_dir))
    random_env = eval_envs["softmax"]
    agent = RandomAgent(random_env.action_space, seed)
    scores, _ = evaluate_policy(agent, random_env, episodes, return_episode_rewards=True)
    rows.append(_row(env_id, seed, "random", 0, scores, 0.0, float("nan"), ratio, ""))
    return rows


def _row(env_id: str, seed: int, policy: str, steps: int, scores: Any, seconds: float, fps: float, ratio: float, run_dir: Any):
    return {
        "env": env_id,
        "seed": seed,
        "policy": policy,
        "n_timesteps": steps,
        "score_mean": float(np.mean(scores)),
        "score_std": float(np.std(scores)),
        "episodes": len(scores),
        "train_seconds": round(seconds, 1),
        "fps": round(fps, 1),
        "fps_ratio_escort_softmax": round(ratio, 4),
        "run_dir": str(run_dir),
    }


def main() -> None:
    """Run the seeds (in parallel processes) and print one line per policy and seed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="ALE/RoadRunner-v5", help="Atari id")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds")
    parser.add_argument("-n", "--n-timesteps", type=int, default=100_000, help="training steps per model")
    parser.add_argument("--eval-episodes", type=int, default=10, help="full games per score")
    parser.add_argument("--workers", type=int, default=1, help="seeds in parallel (one process each)")
    parser.add_argument("--log-folder", default="logs/benchmarks/atari_ppo", help="folder of the saved run folders")
    parser.add_argument("--out", default="logs/benchmarks/atari_ppo.csv", help="CSV of results")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    options = {k: getattr(args, k) for k in ("n_timesteps", "eval_episodes", "log_folder")}
    print(header())
    print(f"{args.env}: PPO softmax and escort side by side, {args.n_timesteps} steps each, seeds {args.seeds}", flush=True)
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        futures = {pool.submit(run_seed, args.env, seed, options): seed for seed in args.seeds}
        for future in as_completed(futures):
            try:
                rows = future.result()
            except Exception as err:  # noqa: BLE001 (one failed seed must not lose the others)
                print(f"seed {futures[future]} failed: {type(err).__name__}: {err}", flush=True)
                continue
            append_rows(Path(args.out), COLUMNS, rows)
            for row in rows:
                print(
                    f"seed {row['seed']} {row['policy']:<8} score {row['score_mean']:8.2f} +- {row['score_std']:6.2f} "
                    f"({row['episodes']} games)  {row['fps']:>7} fps",
                    flush=True,
                )
            print(f"seed {rows[0]['seed']}: training speed ratio escort/softmax = {rows[0]['fps_ratio_escort_softmax']:.3f}")
    print(after_runs())


if __name__ == "__main__":
    main()
