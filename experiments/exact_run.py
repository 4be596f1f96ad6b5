"""One run of tabular policy gradient on a tabular env: ``--algo exact`` (exact gradients) or ``--algo tabular``
(``gradient: exact | sampled``, ``n_episodes`` per sampled gradient); curves, final parameters, escape time, committal
failure."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.exact_pg import HISTORY_KEYS, ExactPG
from agents.tabular_pg import TabularPG
from experiments.config import RunConfig
from experiments.errors import UsageError
from experiments.results import write_metrics

#: Hyperparameter keys the runner consumes; the others are ``TabularPG`` arguments.
RUNNER_KEYS = ("n_timesteps", "metrics_points")
#: ``ExactPG``'s arguments, and the committal threshold of the summary.
AGENT_KEYS = (
    "normalize",
    "optimizer",
    "learning_rate",
    "init",
    "pi0",
    "beta",
    "escape",
    "escape_threshold",
    "rho",
    "state_weighting",
    "committal_threshold",
)
#: The agent keys of each algorithm: ``tabular`` adds the sampled gradient's.
ALGO_KEYS = {"exact": AGENT_KEYS, "tabular": (*AGENT_KEYS, "gradient", "n_episodes", "neurd_clip")}
#: Keys of the torch escort (its floor) that ``ExactPG`` does not take, with the reason given in the error.
RETIRED_KEYS = {"eps": "the exact escort |theta|^p / sum_b |theta_b|^p has no floor"}
#: Summary values also written to ``metrics.csv`` at the last iteration (booleans as 0/1), so that studies' results
#: tables carry them.
FINAL_METRICS = ("final_value", "fraction_of_optimal", "iterations_per_second", "escaped", "committal_failure", "episodes")
THETA_FILE = "theta.npz"
DEFAULT_METRICS_POINTS = 2000


def build_agent(config: RunConfig, hp: Mapping[str, Any]) -> TabularPG:
    """
    Make the env and the agent for a run (``exact``: exact gradients, the same numbers as ``ExactPG``).

    :param config: the run (algo, env, env kwargs, policy, p, seed).
    :param hp: resolved hyperparameters; ``learning_rate`` may be a mapping from policy name to step size.
    :return: the untrained agent.
    """
    agent_keys = ALGO_KEYS.get(config.algo, AGENT_KEYS)
    unknown = sorted(set(hp) - set(RUNNER_KEYS) - set(agent_keys))
    if unknown:
        known = ", ".join(RUNNER_KEYS + agent_keys)
        reasons = "".join(f" ({key}: {RETIRED_KEYS[key]})" for key in unknown if key in RETIRED_KEYS)
        raise UsageError(f"{config.algo} does not take {', '.join(unknown)}{reasons}: its hyperparameters are {known}")
    kwargs = {key: hp[key] for key in agent_keys if key in hp}
    if "learning_rate" in kwargs:
        kwargs["learning_rate"] = learning_rate_for(kwargs["learning_rate"], config.policy)
    env = gym.make(config.env, **config.env_kwargs)
    try:
        return TabularPG(env, policy=config.policy, p=config.p, seed=config.seed, **kwargs)
    except ValueError as err:
        raise UsageError(f"{config.algo} on {config.env}: {err}") from None
    finally:
        env.close()


def check_exact(config: RunConfig, hp: dict[str, Any]) -> None:
    """Build the run's agent with every hyperparameter, then drop it (see ``experiments.run.check``).

    :param config: the run
    :param hp: resolved hyperparameters
    """
    build_agent(config, hp)


def learning_rate_for(value: Any, policy: str) -> Any:
    """
    :param value: a step size, or a mapping ``{policy: step size}``.
    :param policy: the run's policy.
    :return: the step size for ``policy``.
    """
    if not isinstance(value, Mapping):
        return value
    if policy not in value:
        raise UsageError(f"learning_rate has no entry for policy {policy}; pass --hyperparams learning_rate=<number>")
    return value[policy]


def curve_indices(n: int, points: int) -> np.ndarray:
    """
    Iterations kept in ``metrics.csv``: all of them for short runs, else about ``points`` spread evenly on a linear and
    on a log scale (so that log-scale learning curves keep their early part), always with the first and last.

    :param n: number of recorded iterations.
    :param points: target number of rows per metric.
    :return: sorted unique indices in ``[0, n)``.
    """
    if n <= points:
        return np.arange(n)
    half = max(points // 2, 2)
    linear = np.linspace(0, n - 1, half)
    log = np.geomspace(1, n, half) - 1
    return np.unique(np.concatenate([linear, log]).round().astype(np.int64))


def run_exact(config: RunConfig, hp: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """
    Run tabular policy gradient for ``n_timesteps`` iterations; write ``metrics.csv`` and ``theta.npz``.

    :param config: the run.
    :param hp: resolved hyperparameters (``hyperparams/exact.yml`` or ``hyperparams/tabular.yml``).
    :param run_dir: the (temporary) run folder.
    :return: summary scalars: escape time (``None`` if it did not escape) and ``escaped``, ``committal_failure``
        (``TabularPG.committal_failure`` of the final policy), final and optimal ``V(rho)``, their ratio, the final
        optimality gap and ``pi(a*|s0)``, iterations and iterations per second, ``gradient``, ``n_episodes`` (per
        sampled gradient; 0 for exact ones) and ``episodes`` (sampled in all).
    """
    agent = build_agent(config, hp)
    n_iterations = int(hp["n_timesteps"])
    points = int(hp.get("metrics_points", DEFAULT_METRICS_POINTS))
    start = time.perf_counter()
    interrupted = False
    try:
        agent.learn(n_iterations, callback=_progress(n_iterations) if config.progress else None)
    except KeyboardInterrupt:
        interrupted = True
    wall = time.perf_counter() - start
    final = agent.evaluate()
    pi_star = float(final.pi[agent.start_state, agent.optimal_actions[agent.start_state]])
    sampled = agent.gradient_kind == "sampled"
    summary: dict[str, Any] = {
        "escape_time": agent.escape_time,
        "escaped": agent.escape_time is not None,
        "committal_failure": agent.committal_failure(),
        "gradient": agent.gradient_kind,
        "n_episodes": agent.n_episodes if sampled else 0,
        "episodes": agent.num_episodes,
        "final_value": final.value,
        "optimal_value": agent.optimal_value,
        "fraction_of_optimal": final.value / agent.optimal_value if agent.optimal_value else float("nan"),
        "final_gap": agent.optimal_value - final.value,
        "final_pi_star": pi_star,
        "iterations": agent.num_iterations,
        "timesteps": agent.num_iterations,
        "wall_time": wall,
        "iterations_per_second": agent.num_iterations / max(wall, 1e-9),
    }
    if interrupted:
        summary["interrupted"] = True
    _write_curves(agent, run_dir, points, summary)
    np.savez(run_dir / THETA_FILE, theta=agent.theta, policy=final.pi, optimal_actions=agent.optimal_actions)
    return summary


def _write_curves(agent: ExactPG, run_dir: Path, points: int, summary: dict[str, Any]) -> None:
    history = agent.history
    keep = curve_indices(len(history["value"]), points)
    rows = [(int(t), key, float(history[key][t])) for key in HISTORY_KEYS for t in keep]
    last = agent.num_iterations
    rows += [(last, key, float(summary[key])) for key in FINAL_METRICS]
    if agent.escape_time is not None:
        rows.append((agent.escape_time, "escape_time", float(agent.escape_time)))
    write_metrics(run_dir, rows)


def _progress(total: int) -> Any:
    from tqdm import tqdm

    bar = tqdm(total=total, unit="it")

    def update(agent: ExactPG) -> bool:
        bar.update(1)
        if agent.num_iterations >= total:
            bar.close()
        return True

    return update
