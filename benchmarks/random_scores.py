"""The uniform-random policy's mean return (and its standard error) on the envs of experiments/reference_scores.yml.

Each env is made as ``train.py`` makes its evaluation env,
``envs.make_vec_env(env_id, 1, seed, training=False, seed_stream=EVAL_STREAM)`` (Atari: full games, unclipped
scores; MiniGrid: the image view), seeded with ``--seed``; actions are drawn uniformly by a numpy generator of the
same seed, and returns are the episode returns that ``Monitor`` records. By default the entries under ``envs`` whose
``random`` score has ``episodes`` are measured, with that many episodes; Atari's random scores stay DQN Zoo's
published ones (``--env ALE/Pong-v5`` measures a game, but ``--write`` only writes ``envs``). Entries marked
``model: true`` get their numbers from the transition model (default env kwargs) instead.

    python benchmarks/random_scores.py [--env ID ...] [--episodes N] [--seed 0] [--write]

``--write`` rewrites ``experiments/reference_scores.yml`` with the measured random scores and their sources.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for a checkout not pip-installed

from experiments.reference import (  # noqa: E402
    REFERENCE_FILE,
    load_reference_scores,
    model_reference,
    write_reference_scores,
)

COMMAND = "python benchmarks/random_scores.py --write"


@dataclass(frozen=True)
class Measurement:
    """The uniform-random policy's returns on one env."""

    env_id: str
    episodes: int
    seed: int
    mean: float
    stderr: float
    seconds: float

    def source(self) -> str:
        """:return: the YAML ``source`` of this measurement"""
        return (
            f"uniform-random policy: mean return of {self.episodes} episodes (standard error {self.stderr:.3g}), "
            f"evaluation env of envs.make_vec_env (training=False), seed {self.seed}; `{COMMAND}`"
        )


def random_returns(env_id: str, episodes: int, seed: int) -> np.ndarray:
    """:param env_id: an env id
    :param episodes: episodes to play
    :param seed: seed of the env and of the actions
    :return: the episode returns of uniformly random actions"""
    from envs import make_vec_env
    from envs.seeding import EVAL_STREAM

    env = make_vec_env(env_id, 1, seed, training=False, seed_stream=EVAL_STREAM)
    rng = np.random.default_rng(seed)
    n_actions = int(env.action_space.n)
    returns: list[float] = []
    env.reset()
    while len(returns) < episodes:
        _, _, dones, infos = env.step(rng.integers(n_actions, size=env.num_envs))
        returns += [float(info["episode"]["r"]) for done, info in zip(dones, infos) if done and "episode" in info]
    env.close()
    return np.asarray(returns[:episodes])


def measure(env_id: str, episodes: int, seed: int) -> Measurement:
    """:param env_id: an env id
    :param episodes: episodes to play
    :param seed: seed of the env and of the actions
    :return: mean return, its standard error and the time taken"""
    start = time.perf_counter()
    returns = random_returns(env_id, episodes, seed)
    stderr = float(returns.std(ddof=1) / np.sqrt(len(returns))) if len(returns) > 1 else float("nan")
    return Measurement(env_id, len(returns), seed, float(returns.mean()), stderr, time.perf_counter() - start)


def measured_envs(data: dict[str, Any]) -> dict[str, int]:
    """:param data: reference-score data
    :return: env id -> episodes, for the entries whose random score was measured"""
    return {env: int(entry["random"]["episodes"]) for env, entry in data["envs"].items() if "episodes" in entry["random"]}


def record(data: dict[str, Any], measurement: Measurement) -> None:
    """Put a measurement into the ``random`` entry of its env.

    :param data: reference-score data (changed in place)
    :param measurement: the measurement
    """
    data["envs"][measurement.env_id]["random"] = {
        "score": round(measurement.mean, 4),
        "stderr": round(measurement.stderr, 4),
        "episodes": measurement.episodes,
        "seed": measurement.seed,
        "source": measurement.source(),
    }


def refresh_models(data: dict[str, Any]) -> list[str]:
    """Recompute the numbers of the ``model: true`` entries from their transition models (default env kwargs).

    :param data: reference-score data (changed in place)
    :return: one printable line per entry
    """
    lines = []
    for env, entry in data["envs"].items():
        if entry.get("model"):
            reference = model_reference(env, {})
            entry["random"]["score"], entry["target"]["score"] = round(reference.random, 6), round(reference.target, 6)
            lines.append(f"{env:32s} V(rho) of the uniform policy {reference.random:.6f}, V*(rho) {reference.target:.6f}")
    return lines


def print_table(measurements: list[Measurement], data: dict[str, Any]) -> None:
    """:param measurements: what was measured
    :param data: the reference scores before (their random score is printed next to the measured one)"""
    print(f"| env | episodes | mean return | standard error | in {REFERENCE_FILE.name} | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for m in measurements:
        before = data["envs"].get(m.env_id, {}).get("random", {}).get("score", "-")
        print(f"| {m.env_id} | {m.episodes} | {m.mean:.4f} | {m.stderr:.4f} | {before} | {m.seconds:.1f} |")


def main() -> None:
    """Measure, print the table, and with ``--write`` rewrite the reference scores."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", nargs="+", help="env ids to measure (default: the measured entries of the YAML)")
    parser.add_argument("--episodes", type=int, help="episodes per env (default: each entry's own count)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help=f"rewrite {REFERENCE_FILE} with the measured scores")
    args = parser.parse_args()
    if args.episodes is not None and args.episodes < 2:
        parser.error(f"--episodes must be >= 2 for a standard error (got {args.episodes})")
    data = load_reference_scores()
    default = measured_envs(data)
    envs = {env: default.get(env, 1000) for env in args.env} if args.env else default
    print(f"# {' '.join(shlex.quote(a) for a in sys.argv)}")
    measurements = []
    for env, episodes in envs.items():
        measurements.append(measure(env, args.episodes or episodes, args.seed))
        print(f"{env}: {measurements[-1].mean:.4f} +- {measurements[-1].stderr:.4f}", file=sys.stderr, flush=True)
    print_table(measurements, data)
    models = refresh_models(data)
    print("\n".join(models))
    if args.write:
        for m in measurements:
            if not data["envs"].get(m.env_id, {"model": True}).get("model"):
                record(data, m)
        print(f"wrote {write_reference_scores(data)}")


if __name__ == "__main__":
    main()
