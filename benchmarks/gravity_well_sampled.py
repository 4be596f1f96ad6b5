"""Does the escort escape from the softmax gravity well survive sampled actions and learned Q-estimates?

Run from the repository root: ``python benchmarks/gravity_well_sampled.py [--parts P ...] [--seeds N] [--fourrooms-seeds N]
[--deep-seeds N] [--workers N] [--out DIR] [--load]``; it writes ``docs/gravity_well_sampled.md`` and its figures.

Parts (run in the order given; each caches every finished run as one JSON line in ``--out``, so a rerun skips them):

- ``bandit``, ``fourrooms``, ``fourrooms_uniform``: sampled tabular policy gradient (``agents.TabularPG``,
  ``gradient="sampled"``, 16 episodes per iteration, visitation state weighting: the policy gradient itself) on
  Bandit-v0, FourRooms-v0 from its start cell, and FourRooms-v0 with a uniform start distribution. Step sizes are tuned
  per method and optimizer on tuning seeds (``TUNING_SEED`` onwards) from a log grid around the YAML default, at one
  start (``Setting.tune_start``), by the fraction of runs escaped within the cap (ties: the smaller median escape
  time, then the step size closest to the default); the final runs use seeds ``0..N-1``. Each final cell also runs the
  exact gradient (``gradient="exact"``) with the same step size.
- ``deep_bandit``, ``deep_fourrooms``, ``deep_fourrooms_uniform`` (FourRooms-v0 with ``start_distribution="uniform"``,
  episodes starting in any non-terminal state): PPO and QAC (``actor_update`` all_actions and sampled) through the
  train.py code path (``make_envs``, ``build_model``, the adversarial fit, ``learn``), with a callback that evaluates
  the network's stochastic policy exactly on the transition model every ``Setting.deep_eval_every`` steps.

Stop rule of a tabular run: at its cap, at escape, or when committed (``TabularPG.committal_failure`` with the
threshold ``committal_threshold``: the greedy policy is sub-optimal and every state on its path puts at least
``max(0.99, 1 - (1 - m0) / 10)`` on its greedy action, ``m0`` the start's largest action probability), checked every
``Setting.check_every`` iterations.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repository root, for a checkout not pip-installed

import envs  # noqa: E402,F401  (registers the envs)
from agents.tabular_pg import TabularPG, learn_together  # noqa: E402
from envs.tabular import policy_evaluation, value_iteration  # noqa: E402
from experiments.hyperparams import load_hyperparams  # noqa: E402

DOCS = ROOT / "docs"
DOC = DOCS / "gravity_well_sampled.md"
DEFAULT_OUT = Path("/tmp/gravity_well_sampled")
TUNING_SEED = 10_000
N_EPISODES = 16
#: Seeds of one tabular cell run in one call (learning together on FourRooms-v0).
POOLED_SEEDS = 25
BOOTSTRAP_REPS = 5_000
#: Methods: label -> (policy, p).
TABULAR_METHODS: dict[str, tuple[str, float]] = {
    "softmax": ("softmax", 2.0),
    "escort p=2": ("escort", 2.0),
    "escort p=4": ("escort", 4.0),
    "neurd": ("neurd", 2.0),
    "gnpg": ("gnpg", 2.0),
}
DEEP_METHODS: dict[str, tuple[str, float]] = {"softmax": ("softmax", 2.0), "escort p=2": ("escort", 2.0)}
#: Starts: label -> (init, pi0).
STARTS: dict[str, tuple[str, float]] = {
    "pi0=0.1": ("adversarial", 0.1),
    "pi0=0.01": ("adversarial", 0.01),
    "pi0=0.001": ("adversarial", 0.001),
    "pi0=0.0001": ("adversarial", 0.0001),
    "uniform": ("uniform", 0.01),
}
FOURROOMS_STARTS = ("pi0=0.1", "pi0=0.01", "pi0=0.001", "uniform")
#: Step-size grids: optimizer -> multiples of the YAML default (sgd) or absolute values (adam).
SGD_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)
ADAM_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
#: Deep algorithms: label -> (algo, extra hyperparameters).
DEEP_ALGOS: dict[str, tuple[str, dict[str, Any]]] = {
    "PPO": ("ppo", {}),
    "QAC all_actions": ("qac", {"actor_update": "all_actions"}),
    "QAC sampled": ("qac", {"actor_update": "sampled"}),
}
DEEP_STARTS = ("pi0=0.01", "uniform")


@dataclass(frozen=True)
class Setting:
    """One environment and objective with its budgets.

    :param key: part name.
    :param title: heading.
    :param env_id: Gymnasium id.
    :param rho: ``env`` or ``uniform`` start distribution of the objective (and of the sampled episodes).
    :param cap: iteration cap of a tabular run.
    :param check_every: iterations between two checks of the committal stop rule.
    :param tune_start: the start the step sizes are tuned at.
    :param optimizers: the optimizers run.
    :param starts: the starts run.
    :param fixed_factors: multiples of the YAML step size at which the final cells also run (SGD, untuned).
    """

    key: str
    title: str
    env_id: str
    rho: str
    cap: int
    check_every: int
    tune_start: str
    optimizers: tuple[str, ...]
    starts: tuple[str, ...]
    fixed_factors: tuple[float, ...] = ()


SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in (
        Setting("bandit", "Bandit-v0", "Bandit-v0", "env", 20_000, 10, "pi0=0.01", ("sgd", "adam"), tuple(STARTS), (3.0,)),
        Setting(
            "fourrooms", "FourRooms-v0, start cell", "FourRooms-v0", "env", 2_000, 50, "pi0=0.1", ("sgd",), FOURROOMS_STARTS
        ),
        Setting(
            "fourrooms_uniform",
            "FourRooms-v0, uniform start",
            "FourRooms-v0",
            "uniform",
            2_000,
            50,
            "pi0=0.1",
            ("sgd",),
            FOURROOMS_STARTS,
        ),
    )
}


@dataclass(frozen=True)
class DeepSetting:
    """One environment of the deep runs.

    :param key: part name.
    :param env_id: Gymnasium id.
    :param eval_every: environment steps between two exact evaluations of the network's policy.
    :param env_kwargs: the env's keyword arguments.
    """

    key: str
    env_id: str
    eval_every: int
    env_kwargs: dict[str, Any] = field(default_factory=dict)


DEEP_SETTINGS: dict[str, DeepSetting] = {
    s.key: s
    for s in (
        DeepSetting("deep_bandit", "Bandit-v0", 64),
        DeepSetting("deep_fourrooms", "FourRooms-v0", 1_024),
        DeepSetting("deep_fourrooms_uniform", "FourRooms-v0", 1_024, {"start_distribution": "uniform"}),
    )
}


@dataclass(frozen=True)
class TabularCell:
    """One tabular configuration (all but the seed).

    :param setting: key of :data:`SETTINGS`.
    :param method: key of :data:`TABULAR_METHODS`.
    :param start: key of :data:`STARTS`.
    :param optimizer: ``sgd`` or ``adam``.
    :param learning_rate: step size.
    :param gradient: ``sampled`` or ``exact``.
    """

    setting: str
    method: str
    start: str
    optimizer: str
    learning_rate: float
    gradient: str = "sampled"

    def key(self) -> str:
        """:return: a stable string key."""
        return f"tab|{self.setting}|{self.method}|{self.start}|{self.optimizer}|{self.learning_rate:.6g}|{self.gradient}"


@dataclass(frozen=True)
class DeepCell:
    """One deep configuration (all but the seed).

    :param setting: key of :data:`DEEP_SETTINGS`.
    :param algo: key of :data:`DEEP_ALGOS`.
    :param method: key of :data:`DEEP_METHODS`.
    :param start: key of :data:`STARTS`.
    """

    setting: str
    algo: str
    method: str
    start: str

    def key(self) -> str:
        """:return: a stable string key."""
        return f"deep|{self.setting}|{self.algo}|{self.method}|{self.start}"


# --------------------------------------------------------------------------------------------------- tabular runs


def tabular_hyperparams(env_id: str) -> dict[str, Any]:
    """:return: ``hyperparams/tabular.yml`` resolved for ``env_id``."""
    return load_hyperparams("tabular", env_id, "tabular", {})


def default_learning_rate(env_id: str, policy: str) -> float:
    """:return: the YAML step size of ``policy`` on ``env_id``."""
    lr = tabular_hyperparams(env_id)["learning_rate"]
    return float(lr[policy] if isinstance(lr, dict) else lr)


def learning_rate_grid(setting: Setting, method: str, optimizer: str) -> tuple[float, ...]:
    """:return: the step sizes tuned over."""
    if optimizer == "adam":
        return ADAM_GRID
    default = default_learning_rate(SETTINGS[setting.key].env_id, TABULAR_METHODS[method][0])
    return tuple(default * f for f in SGD_FACTORS)


def committal_threshold(start: str, n_actions: int) -> float:
    """:return: ``max(0.99, 1 - (1 - m0) / 10)``, ``m0`` the largest probability of the start's policy."""
    init, pi0 = STARTS[start]
    m0 = 1.0 / n_actions if init == "uniform" else 1.0 - pi0 - (n_actions - 2) * pi0**2
    return max(0.99, 1.0 - (1.0 - m0) / 10.0)


def make_agent(cell: TabularCell, seed: int) -> TabularPG:
    """:return: the TabularPG of ``cell`` with ``seed``."""
    setting = SETTINGS[cell.setting]
    hp = tabular_hyperparams(setting.env_id)
    policy, p = TABULAR_METHODS[cell.method]
    init, pi0 = STARTS[cell.start]
    env = gym.make(setting.env_id)
    n_actions = int(env.action_space.n)
    return TabularPG(
        env,
        policy=policy,
        p=p,
        gradient=cell.gradient,
        n_episodes=N_EPISODES,
        committal_threshold=committal_threshold(cell.start, n_actions),
        optimizer=cell.optimizer,
        learning_rate=cell.learning_rate,
        init=init,
        pi0=pi0,
        seed=seed,
        beta=float(hp["beta"]),
        escape=hp["escape"],
        escape_threshold=float(hp["escape_threshold"]),
        rho=setting.rho,
        state_weighting="visitation",
    )


def run_tabular(job: tuple[TabularCell, tuple[int, ...]]) -> list[dict[str, Any]]:
    """Run one tabular configuration on several seeds, each until its cap, its escape or its commitment.

    Sampled FourRooms-v0 runs learn together (``agents.tabular_pg.learn_together``: the same numbers as one at a time,
    with their episodes stepped in one batch); the others one after the other.

    :param job: the cell and its seeds.
    :return: one result row (JSON-able) per seed; ``wall`` is the seeds' shared wall time over their number.
    """
    cell, seeds = job
    setting = SETTINGS[cell.setting]
    agents = [make_agent(cell, seed) for seed in seeds]
    committed = [False] * len(agents)

    def stopper(k: int) -> Callable[[TabularPG], bool]:
        def stop(a: TabularPG) -> bool:
            if a.escape_time is not None:
                return False
            if a.num_iterations % setting.check_every == 0 and a.committal_failure():
                committed[k] = True
                return False
            return True

        return stop

    start = time.perf_counter()
    callbacks = [stopper(k) for k in range(len(agents))]
    if cell.gradient == "sampled" and setting.env_id == "FourRooms-v0":
        learn_together(agents, setting.cap, callbacks)
    else:
        for agent, callback in zip(agents, callbacks, strict=True):
            agent.learn(setting.cap, callback=callback)
    wall = (time.perf_counter() - start) / len(agents)
    return [
        {
            "key": cell.key(),
            "seed": seed,
            "cell": asdict(cell),
            "escape_time": agent.escape_time,
            "committed": committed[k] or (agent.escape_time is None and agent.committal_failure()),
            "iterations": agent.num_iterations,
            "cap": setting.cap,
            "final_pi_star": float(agent.history["pi_star"][-1]),
            "final_fraction": float(agent.history["value"][-1] / agent.optimal_value),
            "wall": wall,
        }
        for k, (seed, agent) in enumerate(zip(seeds, agents, strict=True))
    ]


# --------------------------------------------------------------------------------------------------- deep runs


class ExactEscape:
    """Every ``every`` steps, evaluate the network's stochastic policy exactly and record the first escape.

    Escape: the tabular criterion of ``hyperparams/tabular.yml`` (Bandit-v0: ``pi(a*|s0) >= 0.9``; FourRooms-v0:
    ``V(rho) >= 0.95 V*``).
    """

    def __init__(self, env_id: str, every: int, env_kwargs: dict[str, Any]) -> None:
        from stable_baselines3.common.callbacks import BaseCallback

        env = gym.make(env_id, **env_kwargs)
        base = env.unwrapped
        self.mdp, self.observations = base.transition_model(), base.observations()
        V, Q = value_iteration(self.mdp)
        # s0: the start cell (FourRooms-v0's, with no sub-goal collected, also under a uniform start distribution)
        self.start_state = int(base.cell_index[base.start]) if hasattr(base, "cell_index") else int(self.mdp.initial.argmax())
        self.a_star = int(Q[self.start_state].argmax())
        self.optimal = float(self.mdp.initial @ V)
        hp = tabular_hyperparams(env_id)
        self.criterion, self.threshold = ("action" if env_id == "Bandit-v0" else "value"), float(hp["escape_threshold"])
        self.every, self.escape_step, self.trace = every, None, []
        outer = self

        class _Callback(BaseCallback):
            def _on_step(self) -> bool:
                return outer.on_step(self.model)

        self.callback = _Callback()

    def probabilities(self, model: Any) -> np.ndarray:
        """:return: ``(S, A)`` the network's action probabilities in every state of the model."""
        import torch as th

        obs = th.as_tensor(self.observations, device=model.device)
        with th.no_grad():
            return model.policy.get_distribution(obs).distribution.probs.cpu().numpy().astype(np.float64)

    def measure(self, model: Any) -> tuple[float, float, np.ndarray]:
        """:return: ``V^pi(rho) / V*``, ``pi(a*|s0)`` and the probabilities."""
        pi = self.probabilities(model)
        pi = pi / pi.sum(axis=1, keepdims=True)
        value = float(self.mdp.initial @ policy_evaluation(self.mdp, pi)[0])
        return value / self.optimal, float(pi[self.start_state, self.a_star]), pi

    def critic(self, model: Any) -> list[float] | None:
        """:return: the critic's ``Q(s0, .)`` (QAC), or None for a model without one."""
        import torch as th

        if not hasattr(model.policy, "q_values"):
            return None
        obs = th.as_tensor(self.observations[self.start_state : self.start_state + 1], device=model.device)
        with th.no_grad():
            return [float(q) for q in model.policy.q_values(obs)[0].cpu().numpy()]

    def true_q(self, pi: np.ndarray) -> list[float]:
        """:return: the exact ``Q^pi(s0, .)``."""
        return [float(q) for q in policy_evaluation(self.mdp, pi)[1][self.start_state]]

    def escaped(self, fraction: float, pi_star: float) -> bool:
        """:return: whether the escape criterion holds."""
        return pi_star >= self.threshold if self.criterion == "action" else fraction >= self.threshold

    def on_step(self, model: Any) -> bool:
        """Record the policy every ``every`` steps; stop training at escape."""
        if model.num_timesteps % self.every >= model.n_envs:
            return True
        fraction, pi_star, _ = self.measure(model)
        self.trace.append((int(model.num_timesteps), fraction, pi_star))
        if self.escape_step is None and self.escaped(fraction, pi_star):
            self.escape_step = int(model.num_timesteps)
        return self.escape_step is None


def run_deep_one(job: tuple[DeepCell, int]) -> dict[str, Any]:
    """Train one deep configuration through the train.py code path, stopping at escape.

    :param job: the cell and the seed.
    :return: the result row (JSON-able).
    """
    import torch as th

    from agents.initial_policy import StartFitError, adversarial_start
    from experiments.config import RunConfig
    from experiments.run import resolve
    from experiments.sb3_run import build_model, make_envs
    from experiments.tabular_eval import greedy_report

    th.set_num_threads(1)
    cell, seed = job
    setting = DEEP_SETTINGS[cell.setting]
    algo, extra = DEEP_ALGOS[cell.algo]
    policy, p = DEEP_METHODS[cell.method]
    init, pi0 = STARTS[cell.start]
    config = RunConfig(algo=algo, env=setting.env_id, policy=policy, p=p, init=init, pi0=pi0 if init != "uniform" else None)
    config.env_kwargs = dict(setting.env_kwargs)
    config.seed, config.hyperparams, config.eval_freq, config.verbose = seed, dict(extra), 0, 0
    hp = resolve(config)
    train_env, eval_env = make_envs(config, hp, None)
    model = build_model(config, hp, train_env)
    base = {"key": cell.key(), "seed": seed, "cell": asdict(cell), "cap": int(hp["n_timesteps"])}
    if init == "adversarial":
        try:
            adversarial_start(model, gym.make(setting.env_id, **setting.env_kwargs), pi0, train_env)
        except StartFitError as err:
            return {**base, "fit_failed": str(err), "escape_time": None, "committed": False, "wall": 0.0}
    tracker = ExactEscape(setting.env_id, setting.eval_every, setting.env_kwargs)
    initial_fraction, initial_pi_star, _ = tracker.measure(model)
    initial_q = tracker.critic(model)
    start = time.perf_counter()
    model.learn(total_timesteps=hp["n_timesteps"], callback=tracker.callback)
    fraction, pi_star, pi = tracker.measure(model)
    report = greedy_report(model, setting.env_id, dict(setting.env_kwargs), eval_env)
    greedy = pi.argmax(axis=1)
    committed = report["fraction_of_optimal"] < 1 - 1e-6 and pi[tracker.start_state, greedy[tracker.start_state]] >= 0.99
    train_env.close()
    eval_env.close()
    return {
        **base,
        "escape_time": tracker.escape_step,
        "committed": bool(committed and tracker.escape_step is None),
        "iterations": int(model.num_timesteps),
        "initial_pi_star": initial_pi_star,
        "initial_fraction": initial_fraction,
        "final_pi_star": pi_star,
        "final_fraction": fraction,
        "greedy_fraction": float(report["fraction_of_optimal"]),
        "initial_q": initial_q,
        "final_q": tracker.critic(model),
        "final_true_q": tracker.true_q(pi),
        "a_star": tracker.a_star,
        "wall": time.perf_counter() - start,
    }


def run_deep(job: tuple[DeepCell, tuple[int, ...]]) -> list[dict[str, Any]]:
    """:param job: a deep cell and its seeds.
    :return: :func:`run_deep_one` of each seed."""
    cell, seeds = job
    return [run_deep_one((cell, seed)) for seed in seeds]


# --------------------------------------------------------------------------------------------------- cache and pool


class Cache:
    """Finished runs, one JSON line each in ``folder/results.jsonl``, keyed by ``(cell key, seed)``."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "results.jsonl"
        self.rows: dict[tuple[str, int], dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.rows[(row["key"], row["seed"])] = row

    def has(self, key: str, seed: int) -> bool:
        """:return: whether the run is cached."""
        return (key, seed) in self.rows

    def add(self, row: dict[str, Any]) -> None:
        """Append one finished run."""
        self.rows[(row["key"], row["seed"])] = row
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def cell(self, key: str) -> list[dict[str, Any]]:
        """:return: the cached runs of one cell, by seed."""
        return sorted((r for (k, _), r in self.rows.items() if k == key), key=lambda r: r["seed"])


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def chunks(jobs: list[tuple[Any, int]], size: int) -> list[tuple[Any, tuple[int, ...]]]:
    """:return: the jobs as (cell, seeds) groups of at most ``size`` seeds of one cell: the first group of every cell
    (cells in the order of their first job), then the second of every cell, ..., so that a partial run leaves every
    cell with a similar number of seeds."""
    groups: dict[str, tuple[Any, list[int]]] = {}
    for cell, seed in jobs:
        groups.setdefault(cell.key(), (cell, []))[1].append(seed)
    rounds = max(math.ceil(len(seeds) / size) for _, seeds in groups.values())
    return [
        (cell, tuple(seeds[i * size : (i + 1) * size]))
        for i in range(rounds)
        for cell, seeds in groups.values()
        if i * size < len(seeds)
    ]


def run_jobs(
    cache: Cache,
    jobs: list[tuple[Any, int]],
    fn: Callable[[Any], list[dict[str, Any]]],
    workers: int,
    chunk: int = 1,
) -> None:
    """Run the jobs not yet cached, ``chunk`` seeds of a cell per call of ``fn``, caching each result as it arrives."""
    todo = [j for j in jobs if not cache.has(j[0].key(), j[1])]
    print(f"{len(todo)} of {len(jobs)} runs to do", flush=True)
    if not todo:
        return
    groups = chunks(todo, chunk)
    if workers <= 1:
        for group in groups:
            for row in fn(group):
                cache.add(row)
        return
    with Pool(workers, initializer=_init_worker) as pool:
        for rows in pool.imap_unordered(fn, groups):
            for row in rows:
                cache.add(row)


# --------------------------------------------------------------------------------------------------- statistics


def escape_times(rows: list[dict[str, Any]]) -> np.ndarray:
    """:return: escape times, ``inf`` for runs that did not escape (censored at the cap)."""
    return np.array([math.inf if r["escape_time"] is None else float(r["escape_time"]) for r in rows])


def bootstrap_median_ci(times: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """:return: the 95% percentile-bootstrap interval of the median (``inf`` where the resampled median is censored)."""
    rng = np.random.default_rng(seed)
    samples = rng.choice(times, size=(BOOTSTRAP_REPS, len(times)), replace=True)
    medians = np.sort(samples, axis=1)[:, (len(times) - 1) // 2]
    return float(np.quantile(medians, 0.025, method="lower")), float(np.quantile(medians, 0.975, method="higher"))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """:return: the Wilson 95% interval of a fraction ``k / n``."""
    if n == 0:
        return math.nan, math.nan
    phat = k / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Summary:
    """The statistics of one cell."""

    n: int
    median: float
    ci: tuple[float, float]
    q1: float
    q3: float
    escaped: int
    committed: int
    cap: int


def summarise(rows: list[dict[str, Any]]) -> Summary:
    """:return: median (lower median; ``inf`` if at least half are censored), its CI, IQR, counts."""
    times = escape_times(rows)
    ordered = np.sort(times)
    n = len(times)
    return Summary(
        n=n,
        median=float(ordered[(n - 1) // 2]),
        ci=bootstrap_median_ci(times),
        q1=float(np.quantile(ordered, 0.25, method="lower")),
        q3=float(np.quantile(ordered, 0.75, method="higher")),
        escaped=int(np.isfinite(times).sum()),
        committed=int(sum(bool(r["committed"]) for r in rows)),
        cap=int(rows[0]["cap"]),
    )


def fmt_time(t: float, cap: int) -> str:
    """:return: an escape time, ``> cap`` when censored."""
    return f"> {cap:,}" if not math.isfinite(t) else f"{t:,.0f}"


def fmt_fraction(k: int, n: int) -> str:
    """:return: ``k/n (lo-hi)`` with the Wilson interval."""
    lo, hi = wilson(k, n)
    return f"{k}/{n} ({lo:.2f}-{hi:.2f})"


# --------------------------------------------------------------------------------------------------- tuning


def tuning_cells(setting: Setting) -> list[TabularCell]:
    """:return: every tuning cell of a setting."""
    return [
        TabularCell(setting.key, method, setting.tune_start, optimizer, lr)
        for optimizer in setting.optimizers
        for method in TABULAR_METHODS
        for lr in learning_rate_grid(setting, method, optimizer)
    ]


def tuning_score(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """:return: the selection key: (fraction escaped, -median escape time); larger is better."""
    times = escape_times(rows)
    return float(np.isfinite(times).mean()), -float(np.sort(times)[(len(times) - 1) // 2])


def tuning_rows(cache: Cache, cell: TabularCell, n_tune: int) -> list[dict[str, Any]]:
    """:return: the first ``n_tune`` tuning-seed runs of a cell."""
    return [r for r in cache.cell(cell.key()) if r["seed"] >= TUNING_SEED][:n_tune]


def select_learning_rates(cache: Cache, setting: Setting, n_tune: int) -> dict[tuple[str, str], float]:
    """:return: ``(method, optimizer) -> step size`` chosen on the tuning seeds."""
    chosen = {}
    for optimizer in setting.optimizers:
        for method in TABULAR_METHODS:
            grid = learning_rate_grid(setting, method, optimizer)
            reference = grid[len(grid) // 2]
            scored = []
            for lr in grid:
                rows = tuning_rows(cache, TabularCell(setting.key, method, setting.tune_start, optimizer, lr), n_tune)
                if rows:
                    scored.append((tuning_score(rows), -abs(math.log(lr / reference)), lr))
            if scored:
                chosen[(method, optimizer)] = max(scored)[2]
    return chosen


def final_cells(setting: Setting, chosen: dict[tuple[str, str], float]) -> list[TabularCell]:
    """:return: the final cells (sampled), with the chosen step sizes."""
    return [
        TabularCell(setting.key, method, start, optimizer, chosen[(method, optimizer)])
        for optimizer in setting.optimizers
        for method in TABULAR_METHODS
        for start in setting.starts
        if (method, optimizer) in chosen
    ]


def fixed_cells(setting: Setting) -> list[TabularCell]:
    """:return: the final cells at the fixed (untuned) SGD step sizes."""
    return [
        TabularCell(setting.key, method, start, "sgd", default_learning_rate(setting.env_id, TABULAR_METHODS[method][0]) * f)
        for f in setting.fixed_factors
        for method in TABULAR_METHODS
        for start in setting.starts
    ]


def exact_twin(cell: TabularCell) -> TabularCell:
    """:return: the same cell with exact gradients."""
    return TabularCell(cell.setting, cell.method, cell.start, cell.optimizer, cell.learning_rate, "exact")


def tabular_part(cache: Cache, setting: Setting, n_seeds: int, n_tune: int, workers: int) -> None:
    """Tune, then run the final and exact cells of one setting."""
    tune_jobs = [(c, TUNING_SEED + i) for c in tuning_cells(setting) for i in range(n_tune)]
    print(f"[{setting.key}] tuning", flush=True)
    run_jobs(cache, tune_jobs, run_tabular, workers, POOLED_SEEDS)
    cells = final_cells(setting, select_learning_rates(cache, setting, n_tune))
    print(f"[{setting.key}] exact", flush=True)
    run_jobs(cache, [(exact_twin(c), 0) for c in cells], run_tabular, workers)
    print(f"[{setting.key}] final", flush=True)
    # seed-major order, so that a partial run leaves every cell with a similar number of seeds
    run_jobs(cache, [(c, s) for s in range(n_seeds) for c in cells], run_tabular, workers, POOLED_SEEDS)
    if setting.fixed_factors:
        print(f"[{setting.key}] fixed step sizes", flush=True)
        fixed = fixed_cells(setting)
        run_jobs(cache, [(exact_twin(c), 0) for c in fixed], run_tabular, workers)
        run_jobs(cache, [(c, s) for s in range(n_seeds) for c in fixed], run_tabular, workers, POOLED_SEEDS)


def deep_cells(
    setting: DeepSetting, algos: Iterable[str] = tuple(DEEP_ALGOS), starts: Iterable[str] = DEEP_STARTS
) -> list[DeepCell]:
    """:return: the deep cells of a setting for ``algos`` and ``starts``."""
    return [DeepCell(setting.key, a, m, s) for a in algos for m in DEEP_METHODS for s in starts]


def deep_part(
    cache: Cache, setting: DeepSetting, n_seeds: int, algos: list[str], workers: int, starts: Iterable[str] = DEEP_STARTS
) -> None:
    """Run the deep cells of one setting for ``algos`` and ``starts``."""
    print(f"[{setting.key}]", flush=True)
    run_jobs(cache, [(c, s) for s in range(n_seeds) for c in deep_cells(setting, algos, starts)], run_deep, workers)


# --------------------------------------------------------------------------------------------------- report


def tabular_table(cache: Cache, cells: list[TabularCell]) -> list[str]:
    """:return: the Markdown table of final cells."""
    lines = [
        "| optimizer | method | eta | start | runs | median escape (95% CI) | IQR | escaped (95% CI) | committed (95% CI) "
        "| exact escape |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        rows = [r for r in cache.cell(cell.key()) if r["seed"] < TUNING_SEED]
        if not rows:
            continue
        s = summarise(rows)
        exact = cache.cell(exact_twin(cell).key())
        exact_text = fmt_time(escape_times(exact)[0], s.cap) if exact else "n/a"
        if exact and exact[0]["committed"]:
            exact_text += " (committed)"
        lines.append(
            f"| {cell.optimizer} | {cell.method} | {cell.learning_rate:.3g} | {cell.start} | {s.n} | "
            f"{fmt_time(s.median, s.cap)} ({fmt_time(s.ci[0], s.cap)} - {fmt_time(s.ci[1], s.cap)}) | "
            f"{fmt_time(s.q1, s.cap)} - {fmt_time(s.q3, s.cap)} | {fmt_fraction(s.escaped, s.n)} | "
            f"{fmt_fraction(s.committed, s.n)} | {exact_text} |"
        )
    return lines


def tuning_table(cache: Cache, setting: Setting, n_tune: int) -> list[str]:
    """:return: the Markdown table of the tuning runs (fraction escaped and median, per step size)."""
    chosen = select_learning_rates(cache, setting, n_tune)
    lines = ["| optimizer | method | step sizes: escaped / median escape (chosen in bold) |", "|---|---|---|"]
    for optimizer in setting.optimizers:
        for method in TABULAR_METHODS:
            parts = []
            for lr in learning_rate_grid(setting, method, optimizer):
                rows = tuning_rows(cache, TabularCell(setting.key, method, setting.tune_start, optimizer, lr), n_tune)
                if not rows:
                    continue
                s = summarise(rows)
                text = f"{lr:.3g}: {s.escaped}/{s.n}, {fmt_time(s.median, s.cap)}, committed {s.committed}"
                parts.append(f"**{text}**" if chosen.get((method, optimizer)) == lr else text)
            if parts:
                lines.append(f"| {optimizer} | {method} | {'; '.join(parts)} |")
    return lines


def sensitivity_figure(cache: Cache, setting: Setting, n_tune: int) -> str | None:
    """Plot the fraction escaped and the median escape time (censored: the cap) on the tuning seeds against the step
    size; :return: the file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(setting.optimizers)
    fig, axes = plt.subplots(2, n, figsize=(max(7, 5 * n), 6), squeeze=False, sharex="col")
    drawn = False
    for col, optimizer in enumerate(setting.optimizers):
        for method in TABULAR_METHODS:
            points = []
            for lr in learning_rate_grid(setting, method, optimizer):
                rows = tuning_rows(cache, TabularCell(setting.key, method, setting.tune_start, optimizer, lr), n_tune)
                if rows:
                    s = summarise(rows)
                    points.append((lr, s.escaped / s.n, min(s.median, s.cap)))
            if points:
                drawn = True
                lrs, fractions, medians = zip(*points)
                axes[0][col].plot(lrs, fractions, marker="o", label=method)
                axes[1][col].plot(lrs, medians, marker="o", label=method)
        axes[0][col].set(xscale="log", ylabel="fraction escaped", title=optimizer, ylim=(-0.05, 1.05))
        axes[1][col].set(xscale="log", yscale="log", xlabel="step size", ylabel="median escape (cap if censored)")
        axes[0][col].legend(fontsize=7)
    fig.suptitle(f"{setting.title}: sensitivity on the tuning seeds at {setting.tune_start}")
    fig.tight_layout()
    name = f"gravity_well_sampled_{setting.key}_sensitivity.png"
    if drawn:
        fig.savefig(DOCS / name, dpi=110)
    plt.close(fig)
    return name if drawn else None


def escape_figure(cache: Cache, setting: Setting, n_tune: int) -> str | None:
    """Plot the empirical CDF of the escape time per method and start, one row per optimizer; :return: the file
    name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = select_learning_rates(cache, setting, n_tune)
    starts, optimizers = setting.starts, setting.optimizers
    fig, axes = plt.subplots(
        len(optimizers), len(starts), figsize=(4 * len(starts), 3.3 * len(optimizers)), squeeze=False, sharey=True
    )
    drawn = False
    for row, optimizer in zip(axes, optimizers):
        for ax, start in zip(row, starts):
            for method in TABULAR_METHODS:
                if (method, optimizer) not in chosen:
                    continue
                cell = TabularCell(setting.key, method, start, optimizer, chosen[(method, optimizer)])
                rows = [r for r in cache.cell(cell.key()) if r["seed"] < TUNING_SEED]
                if not rows:
                    continue
                drawn = True
                times = np.sort(escape_times(rows))
                finite = times[np.isfinite(times)]
                # the curve runs on to the cap at the fraction escaped within it
                steps = np.append(np.arange(len(finite) + 1), len(finite)) / len(times)
                xs = np.concatenate([[1], finite, [setting.cap]])
                ax.step(xs, steps, where="post", label=f"{method} ({len(times)} runs)")
            ax.set(xscale="log", xlabel="iteration", title=f"{start}, {optimizer}", xlim=(1, setting.cap))
        row[0].set_ylabel("fraction escaped")
        row[-1].legend(fontsize=7)
    fig.suptitle(f"{setting.title}, sampled gradients: escape-time CDF (cap {setting.cap:,} iterations)")
    fig.tight_layout()
    name = f"gravity_well_sampled_{setting.key}_escape.png"
    if drawn:
        fig.savefig(DOCS / name, dpi=110)
    plt.close(fig)
    return name if drawn else None


def deep_table(cache: Cache, setting: DeepSetting) -> list[str]:
    """:return: the Markdown table of one deep setting."""
    lines = [
        "| algorithm | method | start | runs | pi(a*) after fit | median escape step (95% CI) | escaped (95% CI) "
        "| committed | greedy fraction of V* (min-max) | final V/V* (median) | critic Q(s0, a*) at the end: median "
        "(true) | start fit failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in deep_cells(setting):
        every = cache.cell(cell.key())
        rows = [r for r in every if "fit_failed" not in r]
        if not rows:
            continue
        s = summarise(rows)
        greedy = [r["greedy_fraction"] for r in rows]
        lines.append(
            f"| {cell.algo} | {cell.method} | {cell.start} | {s.n} | {np.median([r['initial_pi_star'] for r in rows]):.3g} | "
            f"{fmt_time(s.median, s.cap)} ({fmt_time(s.ci[0], s.cap)} - {fmt_time(s.ci[1], s.cap)}) | "
            f"{fmt_fraction(s.escaped, s.n)} | {s.committed}/{s.n} | {min(greedy):.3f}-{max(greedy):.3f} | "
            f"{np.median([r['final_fraction'] for r in rows]):.3f} | {critic_text(rows)} | {len(every) - len(rows)} |"
        )
    return lines


def critic_text(rows: list[dict[str, Any]]) -> str:
    """:return: the median of the critic's final ``Q(s0, a*)`` and of the true one, over the runs that recorded it."""
    pairs = [(r["final_q"][r["a_star"]], r["final_true_q"][r["a_star"]]) for r in rows if r.get("final_q")]
    if not pairs:
        return "n/a"
    critic, true = np.median(pairs, axis=0)
    return f"{critic:.3f} ({true:.3f}), {len(pairs)} runs"


def git_describe() -> str:
    """:return: ``git describe --always --dirty``."""
    out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def headline(cache: Cache, args: argparse.Namespace) -> list[str]:
    """:return: bullet lines comparing softmax and escort p=2 on every tabular setting, optimizer and adversarial
    start."""
    lines = []
    for setting in SETTINGS.values():
        chosen = select_learning_rates(cache, setting, tune_seeds(args, setting))
        for optimizer, start in itertools.product(setting.optimizers, setting.starts):
            if STARTS[start][0] == "uniform":
                continue
            parts = []
            for method in ("softmax", "escort p=2"):
                if (method, optimizer) not in chosen:
                    continue
                rows = cache.cell(TabularCell(setting.key, method, start, optimizer, chosen[(method, optimizer)]).key())
                rows = [r for r in rows if r["seed"] < TUNING_SEED]
                if rows:
                    s = summarise(rows)
                    parts.append(
                        f"{method}: median {fmt_time(s.median, s.cap)} (CI {fmt_time(s.ci[0], s.cap)} - "
                        f"{fmt_time(s.ci[1], s.cap)}), escaped {s.escaped}/{s.n}, committed {s.committed}/{s.n}"
                    )
            if parts:
                lines.append(
                    f"- {setting.title}, {start}, {'SGD' if optimizer == 'sgd' else 'Adam'}: " + "; ".join(parts) + "."
                )
    lines.append(
        "- Bandit-v0: median iteration at which the start policy first samples `a*` in one of its 16 episodes "
        "(geometric, `1 - (1 - pi0)^16` per iteration): "
        + ", ".join(
            f"{start} {discovery_median(pi0, N_EPISODES)}" for start, (init, pi0) in STARTS.items() if init != "uniform"
        )
        + "."
    )
    return lines


def discovery_median(pi0: float, n: int) -> int:
    """:return: the median number of iterations until one of ``n`` episodes per iteration samples ``a*`` at ``pi0``."""
    return math.ceil(math.log(0.5) / (n * math.log1p(-pi0)))


def write_doc(cache: Cache, args: argparse.Namespace, meta: dict[str, Any], notes: str) -> None:
    """Write ``docs/gravity_well_sampled.md`` from the cache."""
    n_runs = len(cache.rows)
    wall = sum(r["wall"] for r in cache.rows.values())
    out = [
        "# The gravity well with sampled gradients and learned critics",
        "",
        f"Generated by `python benchmarks/gravity_well_sampled.py --load --out {args.out} --seeds {args.seeds} "
        f"--fourrooms-seeds {args.fourrooms_seeds} --tune-seeds {args.tune_seeds} --fourrooms-tune-seeds "
        f"{args.fourrooms_tune_seeds} --fourrooms-optimizers {' '.join(args.fourrooms_optimizers)}` (the seed counts "
        "shown per table) from the cache written by "
        + ", then ".join(f"`{c}`" for c in meta.get("commands", []))
        + f" at commit `{git_describe()}` on {time.strftime('%Y-%m-%d')}. "
        f"{n_runs:,} runs cached, {wall / 60:.1f} minutes of summed run time (single-threaded workers). "
        f"{meta.get('load', '')}",
        "",
        "The full grid: `python benchmarks/gravity_well_sampled.py --seeds 100 --fourrooms-seeds 100 "
        "--fourrooms-tune-seeds 20 --fourrooms-optimizers sgd adam --deep-seeds 20 --workers N --out DIR` (every part; a "
        "rerun skips the cached runs).",
        "",
        notes,
    ]
    for setting in SETTINGS.values():
        n_tune = tune_seeds(args, setting)
        table = tabular_table(cache, final_cells(setting, select_learning_rates(cache, setting, n_tune)))
        if len(table) <= 2:
            continue
        out += ["", f"## {setting.title}: sampled tabular PG (cap {setting.cap:,} iterations)", ""]
        out += [f"Tuning at {setting.tune_start}, {n_tune} tuning seeds per step size:", ""]
        out += tuning_table(cache, setting, n_tune)
        sens = sensitivity_figure(cache, setting, n_tune)
        if sens:
            out += ["", f"![{setting.title}: sensitivity]({sens})"]
        out += ["", "Final runs (seeds 0..N-1):", ""] + table
        esc = escape_figure(cache, setting, n_tune)
        if esc:
            out += ["", f"![{setting.title}: escape-time CDF]({esc})"]
        fixed = tabular_table(cache, fixed_cells(setting))
        if len(fixed) > 2:
            factors = ", ".join(f"{f:g}" for f in setting.fixed_factors)
            out += ["", f"The same cells at {factors} times the YAML step size (SGD, not tuned):", ""] + fixed
    for setting in DEEP_SETTINGS.values():
        table = deep_table(cache, setting)
        if len(table) > 2:
            start = " (uniform start distribution)" if setting.env_kwargs else ""
            out += ["", f"## {setting.env_id}{start}: deep runs (escape step in environment steps)", ""] + table
    out += ["", "## Headline (computed from the tables)", ""] + headline(cache, args)
    out += ["", FINDINGS]
    DOC.write_text("\n".join(out) + "\n")
    print(f"wrote {DOC}")


NOTES = """## Setup

- Sampled tabular PG: `agents.TabularPG(gradient="sampled", n_episodes=16)`, REINFORCE with a leave-one-out per-state
  baseline, `state_weighting="visitation"` for every method (the policy gradient itself; NeuRD's update is the
  visitation-weighted importance-corrected advantage, GNPG the normalised softmax estimate). The exact-gradient column
  is `gradient="exact"` with the same step size and cap (one run: it is deterministic).
- Starts: adversarial (`pi0` on `a*`, `pi0^2` on each other action but one, the rest on the best sub-optimal action),
  pi0 in {0.1, 0.01, 0.001} (Bandit-v0 also 0.0001), and the uniform policy. Bandit-v0 arms `[1.0, 0.9, 0.1]`.
- Escape: Bandit-v0 `pi(a*|s0) >= 0.9`; FourRooms-v0 `V(rho) >= 0.95 V*(rho)` (hyperparams/tabular.yml).
- Stop rule: a run stops at its cap, at its escape, or when committed, checked every 10 (Bandit) / 50 (FourRooms)
  iterations. Committed (`TabularPG.committal_failure`): the greedy policy is sub-optimal and every non-terminal state
  on its path from `rho` puts at least `max(0.99, 1 - (1 - m0)/10)` on its greedy action, `m0` the start's largest
  action probability (so the adversarial start itself is not yet committed: its off-greedy mass must fall tenfold).
  A run that reaches the cap is checked once more. Commitment is where a run stops, not a proof that it would never
  escape later: it is the event of Mei et al. (2021), observed, not its limit.
- Medians: the lower median of the escape times with the runs that did not escape set to infinity (censored at the
  cap): `> cap` when at least half did not escape. The 95% CI is the percentile bootstrap of that median (5,000
  resamples); an infinite bound is printed `> cap`. IQR: the lower quartile and the upper quartile, same convention.
  Fractions carry Wilson 95% intervals.
- Tuning: per method and optimizer, at one start (Bandit-v0: pi0 = 0.01; FourRooms-v0: pi0 = 0.1, the only adversarial
  start from which the exact gradient escapes within the cap), on tuning seeds 10,000 onwards, never used in the final
  runs; the grid is 0.1, 0.3, 1, 3 and 10 times the YAML step size for SGD and {0.01, 0.03, 0.1, 0.3, 1} for Adam; the
  choice maximises the fraction escaped within the cap, ties broken by the smaller median escape time, then by the
  step size nearest the middle of the grid. Plain SGD and Adam on every tabular setting, each tuned on its own
  grid (FourRooms-v0: `--fourrooms-optimizers sgd adam`).
- Deep runs: `train.py`'s code path (`experiments.sb3_run.make_envs`, `build_model`, `agents.initial_policy.adversarial_start`,
  `learn`), one torch thread, the hyperparameters of hyperparams/ppo.yml and qac.yml (not tuned here), with a callback
  that evaluates the network's stochastic policy exactly on the transition model every 64 (Bandit-v0) or 1,024
  (FourRooms-v0) environment steps and stops training at the first escape (same criterion as the tabular runs). The
  cap is the YAML `n_timesteps`. Deep committed: not escaped, the greedy policy sub-optimal and `pi(greedy|s0) >= 0.99`
  at the end. FourRooms-v0 with a uniform start distribution: the env's `start_distribution="uniform"` (every
  episode starts in a uniformly drawn non-terminal state; the model's `initial` is that distribution, so `V(rho)` is
  the same objective as the tabular `rho = uniform`)."""


def tune_seeds(args: argparse.Namespace, setting: Setting) -> int:
    """:return: the tuning seeds per step size of a setting."""
    return args.fourrooms_tune_seeds if setting.env_id != "Bandit-v0" else args.tune_seeds


def seeds_for(args: argparse.Namespace, setting: Setting) -> int:
    """:return: the final seeds per cell of a setting."""
    return args.fourrooms_seeds if setting.env_id != "Bandit-v0" else args.seeds


FINDINGS = """## What the numbers support and what they do not

Read with the tables above; the numbers quoted are from the runs recorded there.

- **Bandit-v0: softmax's gravity well survives sampling, unchanged.** Sampled softmax PG with SGD escapes at the same
  iteration as the exact gradient (at the tuned step 4: medians 158, 1,303 and 13,061 against exact 157, 1,289 and
  12,546 for pi0 = 1e-2, 1e-3, 1e-4), about ten times slower per decade of pi0: the `1/pi0` law, now with 100 seeds
  and tight CIs. It never committed (0/100 in every cell).
- **Escort's logarithmic escape does not survive sampling once pi0 is below about 1/N (N = 16 episodes per
  iteration).** With exact gradients escort p = 2 needs a few more iterations per decade of pi0; sampled, it cannot
  move toward `a*` before some episode draws `a*`, and the first draw takes a geometric number of iterations with
  median `ln 2 / (N pi0)` (44 at pi0 = 1e-3, 434 at 1e-4, Headline). The sampled escort medians sit just above it
  (47 and 541, SGD), and so do NeuRD's, GNPG's and Adam-softmax's: below `pi0 ~ 1/N` every method that escapes faster
  than softmax-SGD escapes at the discovery time, `~1/(N pi0)` iterations (`~1/pi0` episodes), linear in `1/pi0` with
  a constant about 24 times smaller than softmax-SGD's at these step sizes. So escort still beats softmax-SGD by an
  order of magnitude, but the claimed `log(1/pi0)` scaling is an exact-gradient property; with on-policy sampling the
  exploration of `a*`, not the parameterization, sets the escape time. GNPG is the exception in these tables (5
  iterations at 1e-4): its unit-norm step moves the policy even on batches without `a*`.
- **Escort sometimes commits to the wrong arm, softmax does not (Mei et al., 2021, observed).** At the tuned step
  (SGD 4, ten times the YAML step), escort p = 2 committed in 16/100 runs from pi0 = 0.1, 3/100 from 1e-2 and 4/100
  from the uniform start; escort p = 4 in 17/100 and 19/100 (pi0 = 0.1, uniform); softmax, NeuRD and GNPG in 0/100.
  At 3 times the YAML step (the untuned table) escort still commits at a few percent from the milder starts. The
  failure is at the mild starts; a plausible reading (not tested here): the sub-optimal arms are sampled often
  enough for an unlucky streak to drive
  `pi(a*)` toward 0, where escort's factor `pi^(1-1/p)` (not `pi`) lets one batch move it far. From pi0 <= 1e-3 no run
  committed in 100: the first draw of `a*` carries a huge importance weight `1/pi(a*)` and escort's factor turns it
  into a large step toward `a*`.
- **Tuning cannot see the failure.** At the tuning start (pi0 = 1e-2, 20 seeds) every method escaped 20/20 at every
  step size, so the rule (fraction escaped, then median) chose the largest step in the grid for every method and
  optimizer; in the sensitivity figure the fraction is flat at 1 and the median falls with the step. A commitment
  rate of a few percent needs about 100 seeds to see;
  the tuned step is at the edge of the grid and a larger one might be chosen by a larger grid. At that step the exact
  escort p = 2 gradient does not escape at all (it cycles at `pi(a*) ~ 0.64`: the step is past its stable range), so
  the exact column there is no reference; the untuned table at 3 times the YAML step is the like-for-like comparison.
- **Adam removes softmax's gravity well in the tabular case** (its per-coordinate normalisation cancels the
  `pi(a*)` factor): sampled Adam-softmax escapes at the discovery time too, as fast as Adam-escort.
- **FourRooms-v0 from the start cell (100 seeds, cap 2,000 iterations, steps tuned at pi0 = 0.1 on 3 seeds): the
  visitation-weighted gravity well is shared by every method, sampled or exact.** From pi0 <= 1e-2 no sampled run of
  any method escaped (0/100 in every cell), and no exact run either except GNPG's at 1e-2 (42 iterations; sampled GNPG
  0/100): the states whose action must change first are reached with probability of order `pi0^k`, so the sampled
  episodes do not visit them at all, whatever the parameterization. From pi0 = 0.1 escort escapes about three times
  faster than softmax: medians 113 (95% CI 76-157, escort p = 2) and 128 (109-149, escort p = 4) iterations against
  softmax's 337 (297-417), GNPG 139; softmax, escort p = 4 and GNPG escaped 100/100, escort p = 2 84/100 and
  committed in 13/100 (softmax 0/100, escort p = 4 0/100), NeuRD 58/100 (committed 21/100). So at pi0 = 0.1 the
  exact-gradient ranking survives sampling (exact: escort p = 2 11, p = 4 39, softmax 117), and escort p = 2 pays for
  its speed with commitments, p = 4 does not at its (smaller) tuned step.
- **FourRooms-v0 from the uniform policy: commitment is common, for every method** (100 seeds), while every exact run
  escaped (6 to 72 iterations): escaped / committed softmax 28/21, escort p = 2 45/46, escort p = 4 30/22, NeuRD
  20/20, GNPG 32/68 (the rest neither within the cap). The committed policies take a sub-optimal route family of
  docs/exact_pg.md (their final values mostly 0.72 V*, the shortest route, 0.85 or 0.90 V*; 8 of the 177 at 0, a
  policy that never reaches the goal). Escort p = 2 escapes most often and
  commits most often: a faster mover in both directions. The tuned steps are large (10 times the YAML step for
  softmax and escort p = 2, 3 times for NeuRD and GNPG), chosen at pi0 = 0.1 on 3 seeds; part of the commitment may
  be a step-size effect; smaller steps were not run on the final seeds.
- **FourRooms-v0 with the uniform start distribution (`rho` uniform over the non-terminal states, 100 seeds, cap
  2,000): within the cap this objective is hard for every method, and sampling makes it harder.** The exact gradient
  escapes from pi0 = 0.1 for softmax (1,005 iterations), escort p = 2 (1,323), escort p = 4 (1,750) and GNPG (23), and
  from the uniform policy for all but NeuRD (softmax 1,001, escort p = 2 516, escort p = 4 1,025, GNPG 18); sampled,
  only GNPG from pi0 = 0.1 (90/100, median 811, committed 10/100) and softmax from pi0 = 0.1 (75/100, median 1,543)
  escape in most runs, escort p = 4 in 31/100 and 8/100 (pi0 = 0.1, uniform policy), escort p = 2 in 1/100 and 1/100,
  NeuRD in none. From pi0 <= 1e-2 no sampled run of any method escaped (0/100 in every cell), while exact GNPG did
  (103 and 332 iterations). Every state weighs in `V(rho)`, so the adversarial start has to be undone in states that
  the sampled episodes reach only from a uniformly drawn start, a few times per iteration each. The tuning says
  little here: at pi0 = 0.1 on 3 seeds most grid points escaped 0/3, so several step sizes were picked by the tie
  rule (escort p = 2 and NeuRD: the middle of the grid); the escort p = 2 column is at a step that may simply be too
  small for this cap. GNPG from the uniform policy committed in 85/100; no other method committed here.
- **FourRooms-v0 from the start cell with Adam (100 seeds, tuned on its own grid at pi0 = 0.1, 3 seeds): no
  parameterization gap is left, and sampling still erases every escape from pi0 <= 1e-2.** From pi0 = 0.1 the medians
  are softmax 282 (95% CI 262-307), escort p = 2 249 (228-280), escort p = 4 45 (36-74), NeuRD 119 (114-133) and GNPG
  282 (259-317); every method escaped in 99/100 or 100/100 runs except escort p = 4 (85/100, committed 6/100, at the
  largest step of the grid). Softmax and escort p = 2 overlap: Adam's per-coordinate normalisation removes most of
  the softmax slowdown that SGD shows (SGD: 337 against escort p = 2's 113). From pi0 = 1e-2 the exact Adam gradient
  escapes for escort p = 2 (84 iterations), escort p = 4 (58), NeuRD (73) and GNPG (132) but not for softmax (> 2,000),
  which is escort's exact-gradient advantage again; sampled, 0/100 runs escaped in every cell, for the same reason as
  with SGD (the states that must change are not visited). From the uniform policy Adam avoids most of the commitments
  that SGD makes: escaped / committed softmax 95/0, escort p = 2 89/0, NeuRD 79/5 and GNPG 99/0 (SGD: 28/21, 45/46,
  20/20 and 32/68), escort p = 4 51/46 (again at the largest step). The tuning is flat for escort p = 2 (3/3 escaped
  at every step, medians 170-250), so its step, the smallest of the grid, was picked by the median of 3 runs.
- **FourRooms-v0 with the uniform start distribution and Adam (100 seeds): the exact gradient escapes from every
  start, the sampled one from almost none.** The exact Adam gradient escapes for every method from every start,
  pi0 = 1e-3 included, in 7 to 119 iterations. Sampled, only GNPG (78/100 from pi0 = 0.1, median 828, committed
  20/100) and softmax (59/100, median 1,764) escape in most runs from pi0 = 0.1; escort p = 2 in 11/100, escort p = 4
  in 3/100, NeuRD in 0/100. From the uniform policy: softmax 7/100, escort p = 2 7/100, escort p = 4 1/100, NeuRD
  0/100, GNPG 21/100 (committed 67/100). From pi0 <= 1e-2, 0/100 in every cell. The tuning saw little: at pi0 = 0.1
  every grid point escaped in at most 2 of 3 tuning runs, so the steps are weakly chosen (the tuning table). This is
  the setting where sampling costs the most: a 16-episode batch gives each state a few visits per iteration, and the
  noise of the per-state estimates, which Adam normalises per coordinate rather than averages away, dominates
  (a reading, not tested here).
- **Deep, Bandit-v0 (learned critics): the critic decides.** With PPO (a learned V baseline and sampled actions)
  escort p = 2 escaped from pi0 = 1e-2 in every run (median 3,392 steps) and softmax in none within 10,000 steps: the
  gravity well and the escort escape both show. With QAC (a learned Q) the ranking flips: softmax escaped in 19/19
  (all_actions) and 14/17 (sampled) runs, escort p = 2 committed to the 0.9 arm in 14/15 (all_actions) and 12/19
  (sampled). The critic column says why: at the end of the escort runs the critic's `Q(s0, a*)` has a median of 0.26
  (all_actions) and 0.83 (sampled) against the true 1.0, and 1.00 in the softmax runs (10 seeds each recorded it).
  QAC's critic learns `Q(s0, a)` only for the actions it samples; from pi0 = 1e-2 it learns the sub-optimal arm's 0.9
  before it has seen `a*` often, so its estimate says `a*` is worse. The all-actions update follows that wrong
  advantage, and escort, whose gradient at small `pi(a*)` is large, drives `pi(a*)` to 0 before `a*` is sampled enough
  to correct it; softmax's own gravity well (a gradient that vanishes with `pi(a*)`) keeps `a*` alive until the critic
  has learned it. From the uniform start every deep run escaped.
- **Deep, FourRooms-v0, PPO (20 seeds per cell, the preset's step size for both, 50,000 steps): the gravity well
  shows, and escort avoids the commitment that softmax makes.** From pi0 = 1e-2 softmax committed in 7/20 runs (a
  sub-optimal deterministic policy) and ended with a median stochastic value of 0.36 V* (greedy 0.26 V*); escort p = 2
  committed in 0/20 and ended at 0.79 V* (greedy 0.87 V*, 3/20 greedy policies at >= 0.95 V*). Escape by this report's
  criterion (the stochastic policy at 0.95 V*) was rare for both (softmax 2/20, escort 0/20): PPO's entropy bonus keeps
  the stochastic policy near 0.86 V* even from the uniform start, where both reach greedy 0.999 V* (13 and 14 of 20 at
  >= 0.95 V*) and neither commits. docs/choosing_p.md tunes the step size per method from this start (pi0 = 1e-2 in
  every state) and scores the greedy policy: tuned escort p = 3 0.932 against tuned softmax 0.298 (IQM of normalised
  scores, 10 seeds). With the uniform start distribution (`deep_fourrooms_uniform`) no run reached 0.95 V* (stochastic
  medians 0.84-0.90 V*); softmax from pi0 = 1e-2 committed in 2/20, escort in 0/20. The QAC cells are in the next bullet.
- **Deep, FourRooms-v0, QAC with the new critic (13 seeds per cell, from pi0 = 1e-2 only, the preset's step size,
  100,000 steps): softmax stays in the well in every run, escort leaves it in every run.** Softmax's greedy policy
  was still sub-optimal at the end of 13/13 runs with each actor update, with `pi(greedy|s0) >= 0.99` (committed by
  this report's deep rule; the start itself puts about 0.99 there): median greedy value 0.155 V* (all_actions) and 0.000 V*
  (sampled), best 0.371 V*. Escort p = 2 committed in 0/13 with each update; its greedy policy reached >= 0.95 V* in
  11/13 (all_actions) and 8/13 (sampled) runs, median 0.999 V*, worst 0.724 V*, and its stochastic policy ended at a
  median 0.919 and 0.903 V* (the entropy bonus keeps it under the 0.95 escape bar, so "escaped" is 0/13 for both
  methods; the greedy column is the one to read). The critic is not what separates them: at the end its
  `Q(s0, a*)` matches the true `Q^pi(s0, a*)` to three decimals in both (softmax 0.183 against 0.183, escort 1.085
  against 1.085, all_actions). With an accurate critic the remaining difference is the parameterization: the softmax
  gradient toward `a*` is scaled by `pi(a*) ~ 1e-2` in every state of the well, the escort one is not. This is the
  deep counterpart of the exact-gradient claim, and it survives here; it is the opposite of the deep Bandit-v0 QAC
  result, where the critic (the old preset, no replay) had not yet seen `a*` and escort committed. Not run: the
  QAC cells from the uniform start and with the uniform start distribution (`--deep-starts uniform`,
  `--parts deep_fourrooms_uniform`), and seeds 13-19; `benchmarks/qac_fourrooms.py --variants 'subgoals=[]'` already
  shows every policy at 1.000 V* from the uniform start on 5/5 seeds.
- **The critic's accuracy on FourRooms-v0** (`python benchmarks/qac_critic.py --seeds 3`: the actor frozen at a
  fixed policy, 80% optimal, 100k steps, against the exact `A^pi` on the states visited >= 100 times). The preset now
  replays the last 50 rollouts with one-step expected-SARSA targets, 200 critic steps per rollout: correlation of
  learned and exact advantages 0.933 (worst seed 0.905), sign agreement 96.7%, mean error 0.21 of the median
  `|A^pi|` (0.0106); the previous preset gave 0.62, 81% and 0.80. The learned argmax is an exact argmax in 76.6% of
  the states (worst seed 71.8%), 90.4% of those whose best action leads the second by more than a tenth of the median
  `|A^pi|`: the others are near-ties (within about 1e-3) below the critic's mean `|Q - Q^pi|` of 0.0026. So the
  critic now ranks actions right where it matters by more than its own error, and the bar of 90% argmax agreement
  over all states is not met because of the ties. `benchmarks/qac_fourrooms.py --variants 'subgoals=[]'`: 5/5 seeds
  at 1.000 V* within 100k steps for softmax, escort and NeuRD. What it means for the gravity well: on Bandit-v0 (its
  QAC preset unchanged) the failure of escort under QAC is a critic that has not yet seen `a*` (the deep Bandit-v0 bullet),
  which no accuracy on visited pairs can fix; on FourRooms-v0, with the new critic, the critic is right about
  `Q(s0, a*)` and softmax still stays in the well (the QAC bullet above).
- **The adversarial start fit fails for some seeds** (`agents.initial_policy.fit_actor` stops after 2,000 Adam steps;
  the column "start fit failed"), and not always for the same seeds when a run is repeated: those runs are left out
  of the deep statistics, so the seeds left differ between cells. The cause was an unchecked LAPACK least-squares
  answer (all zeros) in the action-head solve, replaced in commit 0b6e30f by checked normal equations; since then
  0 of 80 Bandit-v0 fits at pi0 = 0.01 failed (ppo and qac, softmax and escort, seeds 0-19). The failures did not
  depend on how a run would learn, so leaving them out removes runs at random rather than by outcome; a rerun of the
  deep parts with the fixed code fills the missing seeds.
- **Not run here (time):** QAC (all_actions and sampled) on FourRooms-v0 beyond seeds 0-12 from pi0 = 1e-2, from
  the uniform start, and with the uniform start distribution (about 155 s per run here); more than 3 tuning seeds
  per step size on FourRooms-v0; Bandit-v0 at the fixed step size from pi0 = 1e-4. The command at the top completes
  the QAC cells (a rerun skips the cached runs). The script gained the fifth step size of each grid, the start
  pi0 = 1e-4, the critic columns and the pooled FourRooms-v0 runs (`agents.tabular_pg.learn_together`, the same numbers
  as one run at a time: checked on cached runs and by `tests/test_tabular_pg.py`) between the invocations listed at the
  top; every cached run is keyed by its full configuration, so the tables hold only runs of the configurations they
  name, and the deep Bandit-v0 runs without a critic column are the ones run before it existed (the QAC pi0 = 1e-2
  runs of seeds 0-9 were removed from the cache and rerun to record it)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """:return: the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=[*SETTINGS, *DEEP_SETTINGS], choices=[*SETTINGS, *DEEP_SETTINGS])
    parser.add_argument("--seeds", type=int, default=100, help="final seeds per Bandit-v0 cell")
    parser.add_argument("--fourrooms-seeds", type=int, default=30, help="final seeds per FourRooms-v0 cell")
    parser.add_argument("--tune-seeds", type=int, default=20, help="tuning seeds per step size")
    parser.add_argument("--fourrooms-tune-seeds", type=int, default=5, help="tuning seeds per step size on FourRooms-v0")
    parser.add_argument("--deep-seeds", type=int, default=5, help="seeds per deep cell")
    parser.add_argument("--deep-algos", nargs="+", default=list(DEEP_ALGOS), choices=list(DEEP_ALGOS))
    parser.add_argument(
        "--deep-starts", nargs="+", default=list(DEEP_STARTS), choices=list(DEEP_STARTS), help="starts of the deep runs"
    )
    parser.add_argument(
        "--fourrooms-optimizers",
        nargs="+",
        default=["sgd"],
        choices=["sgd", "adam"],
        help="optimizers of the FourRooms-v0 tabular parts (each tuned on its own grid)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results cache folder (not in the repository)")
    parser.add_argument("--load", action="store_true", help="write the doc from the cache without running anything")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the parts asked for, then write the doc."""
    args = parse_args(argv)
    for key, setting in SETTINGS.items():
        if setting.env_id == "FourRooms-v0":
            SETTINGS[key] = replace(setting, optimizers=tuple(args.fourrooms_optimizers))
    cache = Cache(args.out)
    meta_path = args.out / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if not args.load:
        command = "python benchmarks/gravity_well_sampled.py " + " ".join(sys.argv[1:] if argv is None else argv)
        meta["commands"] = [*meta.get("commands", []), command]
        for part in args.parts:
            start = time.time()
            if part in SETTINGS:
                setting = SETTINGS[part]
                tabular_part(cache, setting, seeds_for(args, setting), tune_seeds(args, setting), args.workers)
            else:
                deep_part(cache, DEEP_SETTINGS[part], args.deep_seeds, args.deep_algos, args.workers, args.deep_starts)
            meta.setdefault("parts", {})[part] = {"wall_minutes": (time.time() - start) / 60, "load": os.getloadavg()[0]}
            meta["load"] = (
                "Load average during the runs: "
                + ", ".join(f"{k} {v['load']:.1f} ({v['wall_minutes']:.1f} min wall)" for k, v in meta["parts"].items())
                + f" ({os.cpu_count()} CPUs, {args.workers} workers)."
            )
            meta_path.write_text(json.dumps(meta))
    write_doc(cache, args, meta, NOTES)


if __name__ == "__main__":
    main()
