"""Reproduce the softmax gravity well and the escort escape with exact gradients; write ``docs/exact_pg.md`` and plots.

Run from the repository root: ``python benchmarks/exact_pg_escape.py [--workers N] [--quick] [--save F] [--load F]``.

For ``pi0(a*)`` in {1e-1, 1e-2, 1e-3, 1e-4} and the adversarial initial policy, it runs softmax PG, escort PG (p = 2 and
p = 4, with and without renormalisation), NeuRD (threshold 2 and none) and GNPG on Bandit-v0, on FourRooms-v0 and on
FourRooms-v0 with a uniform start distribution, with the step sizes and escape thresholds of ``hyperparams/exact.yml``.
On FourRooms every method runs with both state weightings (``visitation``: ``d(s) / (1 - gamma)``, the policy gradient;
``uniform``: 1); on the one-state bandit the two are the same algorithm, so it runs the default only. It reports the
escape times (the first iteration with ``pi(a*|s0) >= 0.9`` on the bandit, ``V(rho) >= escape_threshold * V*(rho)`` on
FourRooms), the optimality-gap curves, and the values of FourRooms' route families that the threshold separates. A run
stops at its iteration cap or some time after it escaped. The report records the command, the commit and the run time.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repository root, for a checkout not pip-installed

import envs  # noqa: E402,F401  (registers the envs)
from agents.exact_mdp import best_value_avoiding, uniform_start  # noqa: E402
from agents.exact_pg import ExactPG  # noqa: E402
from envs.make import env_family  # noqa: E402
from envs.tabular import TabularMDP, policy_evaluation, value_iteration  # noqa: E402
from experiments.exact_run import AGENT_KEYS, curve_indices, learning_rate_for  # noqa: E402
from experiments.hyperparams import load_hyperparams  # noqa: E402

PI0S = (1e-1, 1e-2, 1e-3, 1e-4)
WEIGHTINGS = ("visitation", "uniform")
#: A looser value threshold, recorded too: just above FourRooms' best route that misses a sub-goal (0.897 V*).
LOOSE_THRESHOLD = 0.9
DOCS = ROOT / "docs"
CURVE_POINTS = 400
#: Where a change alters the results: a change here (committed or not) is named in the report.
RESULT_PATHS = (
    "agents/exact_pg.py",
    "agents/exact_mdp.py",
    "agents/tabular_policies.py",
    "envs/tabular.py",
    "envs/four_rooms.py",
    "envs/bandit.py",
    "experiments/exact_run.py",
    "experiments/hyperparams.py",
    "hyperparams/exact.yml",
    "benchmarks/exact_pg_escape.py",
)


@dataclass(frozen=True)
class Method:
    """One parameterization with its options."""

    label: str
    policy: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    p: float = 2.0


@dataclass(frozen=True)
class Setting:
    """One environment and objective, its iteration cap, how long a run continues after escaping, and the state
    weightings run."""

    key: str
    title: str
    env_id: str
    rho: str
    cap: int
    tail: int
    weightings: tuple[str, ...] = WEIGHTINGS


METHODS = (
    Method("SPG (softmax)", "softmax"),
    Method("EPG p=2", "escort", {"normalize": True}, p=2.0),
    Method("EPG p=2, unnormalised", "escort", {"normalize": False}, p=2.0),
    Method("EPG p=4", "escort", {"normalize": True}, p=4.0),
    Method("EPG p=4, unnormalised", "escort", {"normalize": False}, p=4.0),
    Method("NeuRD (beta=2)", "neurd", {"beta": 2.0}),
    Method("NeuRD (no threshold)", "neurd", {"beta": math.inf}),
    Method("GNPG", "gnpg"),
)
SPG, EPG2, EPG4, NEURD, NEURD_FREE = (METHODS[i].label for i in (0, 1, 3, 5, 6))


@dataclass(frozen=True)
class Result:
    """What one run left: its escape time (None: not within its iterations), iterations run and a thinned gap curve."""

    setting: str
    method: str
    weighting: str
    pi0: float
    escape_time: int | None
    loose_escape_time: int | None
    final_greedy_fraction: float
    iterations: int
    seconds: float
    curve_t: np.ndarray
    curve_gap: np.ndarray
    optimal_value: float
    learning_rate: float


def env_hyperparams(env_id: str) -> dict[str, Any]:
    """:param env_id: the env.
    :return: its resolved block of ``hyperparams/exact.yml``."""
    return load_hyperparams("exact", env_id, env_family(env_id))


def agent_kwargs(setting: Setting, method: Method, weighting: str) -> dict[str, Any]:
    """
    :param setting: env and objective.
    :param method: parameterization.
    :param weighting: state weighting.
    :return: ``ExactPG`` arguments: ``hyperparams/exact.yml`` for the env, then the method's options.
    """
    hp = env_hyperparams(setting.env_id)
    kwargs = {key: hp[key] for key in AGENT_KEYS if key in hp}
    kwargs["learning_rate"] = learning_rate_for(kwargs["learning_rate"], method.policy)
    run = {"rho": setting.rho, "p": method.p, "policy": method.policy, "state_weighting": weighting}
    return {**kwargs, **method.kwargs, **run}


def run_one(task: tuple[Setting, Method, str, float]) -> Result:
    """
    :param task: setting, method, state weighting and ``pi0``.
    :return: the run's result.
    """
    setting, method, weighting, pi0 = task
    kwargs = agent_kwargs(setting, method, weighting)
    agent = ExactPG(gym.make(setting.env_id), **{**kwargs, "pi0": pi0})

    def keep_going(a: ExactPG) -> bool:
        return a.escape_time is None or a.num_iterations < min(setting.cap, setting.tail * max(a.escape_time, 1) + 200)

    start = time.perf_counter()
    agent.learn(setting.cap, callback=keep_going)
    seconds = time.perf_counter() - start
    gap = agent.history["gap"]
    keep = curve_indices(len(gap), CURVE_POINTS)
    return Result(
        setting.key,
        method.label,
        weighting,
        pi0,
        agent.escape_time,
        first_at_least(agent.history["value"], LOOSE_THRESHOLD * agent.optimal_value) if agent.escape == "value" else None,
        greedy_fraction(agent.mdp, agent.policy(), agent.optimal_value),
        agent.num_iterations,
        seconds,
        keep,
        gap[keep],
        agent.optimal_value,
        kwargs["learning_rate"],
    )


def first_at_least(values: np.ndarray, level: float) -> int | None:
    """:param values: a curve.
    :param level: a level.
    :return: the first index at which the curve reaches ``level`` (None: never)."""
    hits = np.flatnonzero(values >= level)
    return int(hits[0]) if len(hits) else None


def run_all(settings: tuple[Setting, ...], workers: int) -> list[Result]:
    """
    :param settings: the settings to run.
    :param workers: processes.
    :return: one result per (setting, state weighting, method, pi0).
    """
    tasks = [(s, m, w, pi0) for s in settings for w in s.weightings for m in METHODS for pi0 in PI0S]
    tasks.sort(key=lambda t: (t[1].policy != "softmax", t[1].policy != "escort", t[3]))
    if workers <= 1:
        return [run_one(t) for t in tasks]
    with Pool(workers) as pool:
        return pool.map(run_one, tasks, chunksize=1)


def code_version() -> str:
    """:return: ``git rev-parse --short HEAD``, with the files under ``RESULT_PATHS`` that differ from it, if any."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return result.stdout.rstrip("\n") if result.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = [line[3:] for line in git("status", "--porcelain", "--", *RESULT_PATHS).splitlines()]
    if not changed:
        return f"commit `{commit}`"
    return f"commit `{commit}`, with uncommitted changes to {', '.join(f'`{name}`' for name in changed)}"


def get(results: list[Result], setting: str, method: str, pi0: float, weighting: str = WEIGHTINGS[0]) -> Result:
    """:return: the run of (setting, method, pi0, state weighting)."""
    return next(r for r in results if (r.setting, r.method, r.pi0, r.weighting) == (setting, method, pi0, weighting))


def row_of(results: list[Result], setting: str, method: str, weighting: str = WEIGHTINGS[0]) -> list[Result]:
    """:return: the runs of (setting, method, state weighting), by ``pi0`` as in ``PI0S``."""
    return [get(results, setting, method, pi0, weighting) for pi0 in PI0S]


def escape_cell(result: Result) -> str:
    """:param result: one run.
    :return: its escape time, or ``> N`` when it did not escape within its N iterations."""
    return f"{result.escape_time:,}" if result.escape_time is not None else f"> {result.iterations:,}"


def escape_table(results: list[Result], setting: Setting) -> str:
    """:param results: all runs.
    :param setting: the setting whose table to write.
    :return: a Markdown table, methods and state weightings by ``pi0``, with the log-log slope of escape time against
        ``1/pi0``."""
    head = "| method | weighting | eta | " + " | ".join(f"pi0 = {pi0:g}" for pi0 in PI0S) + " | slope | slope, pi0 <= 1e-2 |"
    lines = [head, "|" + "---|" * (len(PI0S) + 5)]
    for method in METHODS:
        for weighting in setting.weightings:
            row = row_of(results, setting.key, method.label, weighting)
            cells = " | ".join(escape_cell(r) for r in row)
            small = [r for r in row if r.pi0 <= 1e-2]
            eta = f"{row[0].learning_rate:.3g}"
            lines.append(f"| {method.label} | {weighting} | {eta} | {cells} | {slope_text(row)} | {slope_text(small)} |")
    return "\n".join(lines)


def slope(row: list[Result]) -> float | None:
    """:param row: one method's runs, by ``pi0``.
    :return: least-squares slope of log escape time against log(1/pi0) over the escaped runs (None: fewer than 2)."""
    points = [(math.log(1 / r.pi0), math.log(max(r.escape_time, 1))) for r in row if r.escape_time is not None]
    if len(points) < 2:
        return None
    x, y = np.array(points).T
    return float(np.polyfit(x, y, 1)[0])


def slope_text(row: list[Result]) -> str:
    """:param row: one method's runs.
    :return: the slope, marked as a lower bound when some runs did not escape."""
    value = slope(row)
    if value is None:
        return "n/a"
    return f"{value:.2f}" + (" (escaped only)" if any(r.escape_time is None for r in row) else "")


def line_style(method: Method) -> str:
    """:param method: a method.
    :return: dashed for unnormalised escort, solid otherwise."""
    return "--" if method.kwargs.get("normalize") is False else "-"


def panels(settings: tuple[Setting, ...]) -> list[tuple[Setting, str]]:
    """:param settings: the settings run.
    :return: every (setting, state weighting) pair, in order."""
    return [(setting, weighting) for setting in settings for weighting in setting.weightings]


def panel_title(setting: Setting, weighting: str) -> str:
    """:return: the setting's title, with the state weighting when the setting runs more than one."""
    return setting.title if len(setting.weightings) == 1 else f"{setting.title}, {weighting} weighting"


def curve_file(setting: Setting, weighting: str) -> str:
    """:return: the PNG name of the setting's gap curves under one state weighting."""
    suffix = "" if len(setting.weightings) == 1 else f"_{weighting}_weighting"
    return f"exact_pg_{setting.key}{suffix}_curves.png"


def plot_escape_times(results: list[Result], settings: tuple[Setting, ...], path: Path) -> None:
    """Escape time against ``1/pi0`` (log-log), one panel per setting and weighting; open markers: did not escape.

    :param results: all runs.
    :param settings: the settings run.
    :param path: PNG file.
    """
    import matplotlib.pyplot as plt

    pairs = panels(settings)
    columns = 3
    n_rows = math.ceil(len(pairs) / columns)
    fig, axes = plt.subplots(n_rows, columns, figsize=(5.2 * columns, 4.4 * n_rows), squeeze=False, sharey=True)
    for ax, (setting, weighting) in zip(axes.flat, pairs):
        for k, method in enumerate(METHODS):
            row = sorted(row_of(results, setting.key, method.label, weighting), key=lambda r: -r.pi0)
            x = [1 / r.pi0 for r in row]
            y = [r.escape_time if r.escape_time is not None else r.iterations for r in row]
            color = f"C{k}"
            ax.plot(x, y, line_style(method), color=color, alpha=0.6, label=method.label)
            for xi, yi, r in zip(x, y, row):
                ax.plot(xi, max(yi, 1), "o", color=color, mfc=color if r.escape_time is not None else "none")
        ax.set(xscale="log", yscale="log", xlabel="1 / pi0(a*)", ylabel="escape time (iterations)")
        ax.set_title(panel_title(setting, weighting), fontsize=10)
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(pairs) :]:
        ax.set_visible(False)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle("Escape time from the adversarial start (open marker: did not escape within the iterations shown)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_curves(results: list[Result], setting: Setting, weighting: str, path: Path) -> None:
    """Optimality gap ``V* - V(rho)`` against iterations (log-log), one panel per ``pi0``.

    :param results: all runs.
    :param setting: the setting.
    :param weighting: the state weighting.
    :param path: PNG file.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PI0S), figsize=(4.6 * len(PI0S), 4.0), sharey=True)
    for ax, pi0 in zip(axes, PI0S):
        for k, method in enumerate(METHODS):
            r = get(results, setting.key, method.label, pi0, weighting)
            gap = np.maximum(r.curve_gap, 1e-12)
            ax.plot(r.curve_t + 1, gap, line_style(method), color=f"C{k}", label=method.label, lw=1.2)
        ax.set(xscale="log", yscale="log", xlabel="iteration + 1", title=f"pi0(a*) = {pi0:g}")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("optimality gap V* - V(rho)")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{panel_title(setting, weighting)}: exact gradients from the adversarial start")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def ratio_text(results: list[Result], setting: str, slow: str, fast: str, pi0: float) -> str:
    """:return: how many times fewer iterations ``fast`` needed than ``slow`` (a bound when ``slow`` did not escape)."""
    a, b = get(results, setting, slow, pi0), get(results, setting, fast, pi0)
    if b.escape_time is None:
        return f"{fast} did not escape within {b.iterations:,} iterations"
    if a.escape_time is None:
        return f"more than {a.iterations / max(b.escape_time, 1):,.0f}x ({slow} did not escape within {a.iterations:,})"
    return f"{a.escape_time / max(b.escape_time, 1):,.1f}x"


def measure_speed(iterations: int = 1000, repeats: int = 3) -> str:
    """Time ``ExactPG`` (escort, p = 2) on FourRooms-v0 alone, after the grid.

    :param iterations: iterations per timing.
    :param repeats: timings (the best counts).
    :return: a sentence with iterations per second of wall-clock and of CPU time, and the machine's load.
    """
    env = gym.make("FourRooms-v0")
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        agent = ExactPG(env, policy="escort", learning_rate=1.0, pi0=0.1)
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        agent.learn(iterations)
        wall = min(wall, time.perf_counter() - start_wall)
        cpu = min(cpu, time.process_time() - start_cpu)
    return (
        f"ExactPG (escort, p = 2) on FourRooms-v0 ({agent.mdp.n_states} states): {iterations / wall:.0f} iterations per "
        f"second of wall-clock time, {iterations / cpu:.0f} per second of CPU time (best of {repeats} x {iterations}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs). `python benchmarks/exact_pg_speed.py` times "
        "every parameterization and the policy evaluation alone."
    )


def optimal_ends(mdp: TabularMDP, Q: np.ndarray) -> np.ndarray:
    """
    :param mdp: a deterministic MDP whose optimal policy reaches a terminal state from every state.
    :param Q: its optimal action values.
    :return: ``(S,)`` the terminal state the greedy policy of ``Q`` ends in, from every state.
    """
    successor = mdp.P[np.arange(mdp.n_states), Q.argmax(axis=1)].argmax(axis=1)
    for _ in range(math.ceil(math.log2(mdp.n_states)) + 1):
        successor = successor[successor]
    return successor


def greedy_fraction(mdp: TabularMDP, pi: np.ndarray, optimal_value: float) -> float:
    """
    :param mdp: the MDP.
    :param pi: ``(S, A)`` a policy.
    :param optimal_value: ``V*(rho)``.
    :return: ``V(rho)`` of the policy's greedy (most likely) actions over ``V*(rho)``: on FourRooms from the start
        cell, which route family the policy concentrates on (1, 0.897, 0.851, 0.724, or 0 if it never reaches the goal).
    """
    greedy = np.eye(mdp.n_actions)[pi.argmax(axis=1)]
    return float(mdp.initial @ policy_evaluation(mdp, greedy)[0]) / optimal_value


def route_values(env_id: str) -> tuple[list[tuple[str, float]], float, float]:
    """
    The route families of a FourRooms env: the best value from the start of a policy that ends its episode with a
    given set of sub-goals collected (the terminal state of that mask), found by :func:`best_value_avoiding` with every
    other terminal state avoided.

    :param env_id: a FourRooms id.
    :return: ``(label, value)`` per family from the start cell, best first; for the uniform start, ``E_rho[V_other]``
        (at each state the best value of a policy that does not end where the optimal one does) and ``V*(rho)``.
    """
    env = gym.make(env_id).unwrapped
    mdp = env.transition_model()
    s0 = int(mdp.initial.argmax())
    terminals = np.flatnonzero(mdp.terminal)
    families = []
    for t in terminals:
        avoid = mdp.terminal.copy()
        avoid[t] = False
        collected = [f"({r}, {c})" for i, (r, c, _) in enumerate(env.subgoals) if (t // env.n_cells) >> i & 1]
        families.append(
            (" and ".join(collected) or "none (the shortest route)", float(best_value_avoiding(mdp, avoid)[0][s0]))
        )
    V, Q = value_iteration(mdp)
    ends = optimal_ends(mdp, Q)
    avoiding = {int(t): best_value_avoiding(mdp, np.arange(mdp.n_states) == t)[0] for t in terminals}
    live = np.flatnonzero(~mdp.terminal)
    other = np.array([avoiding[int(ends[s])][s] for s in live])
    uniform = uniform_start(mdp)
    return sorted(families, key=lambda f: -f[1]), float(uniform.initial[live] @ other), float(uniform.initial @ V)


def route_section(env_id: str) -> str:
    """:param env_id: a FourRooms id.
    :return: the report's section on the escape threshold: the route families' values and what the threshold implies."""
    families, other_uniform, optimal_uniform = route_values(env_id)
    threshold = float(env_hyperparams(env_id)["escape_threshold"])
    optimal = families[0][1]
    best_other = families[1][1] / optimal
    lines = [
        "## The escape threshold on FourRooms-v0",
        "",
        f"Escape on FourRooms-v0 is `V(rho) >= {threshold:g} V*(rho)` (`escape_threshold` in `hyperparams/exact.yml`). The",
        "route families, each the best value from the start cell of a policy that ends its episode with the given",
        "sub-goals collected (`agents.exact_mdp.best_value_avoiding` with every other terminal state avoided):",
        "",
        "| sub-goals collected | V(start) | fraction of V* |",
        "|---|---|---|",
        *(f"| {label} | {value:.4f} | {value / optimal:.3f} |" for label, value in families),
        "",
        f"The best policy off the optimal route family reaches {best_other:.3f} V*; the threshold lies about halfway "
        f"between it and 1 (halfway: {(1 + best_other) / 2:.4f}). No trajectory off the optimal family returns more than "
        f"{best_other:.3f} V*, so `V >= {threshold:g} V*` needs at least "
        f"{(threshold - best_other) / (1 - best_other):.0%} of the episodes on the optimal family. A threshold of 0.9 V* "
        f"would sit only {0.9 - best_other:.3f} V* above the best other route: a policy that took that route in "
        f"{1 - (0.9 - best_other) / (1 - best_other):.0%} of its episodes would count as escaped. With the uniform start "
        "distribution the same threshold is applied to `V(rho)`: taking, from "
        f"every state, the best route that does not end where the optimal one does gives {other_uniform:.4f} = "
        f"{other_uniform / optimal_uniform:.3f} V*(rho) (V*(rho) = {optimal_uniform:.4f}).",
        "",
    ]
    return "\n".join(lines)


def write_report(results: list[Result], settings: tuple[Setting, ...], record: dict[str, Any]) -> Path:
    """Write ``docs/exact_pg.md`` and its plots.

    :param results: all runs.
    :param settings: the settings run.
    :param record: ``command``, ``wall`` (seconds), ``version`` (commit) and ``settings`` of the run.
    :return: the Markdown file.
    """
    DOCS.mkdir(exist_ok=True)
    plot_escape_times(results, settings, DOCS / "exact_pg_escape_times.png")
    for setting, weighting in panels(settings):
        plot_curves(results, setting, weighting, DOCS / curve_file(setting, weighting))
    head = REPORT_HEAD.format(
        command=record["command"],
        version=record["version"],
        wall=record["wall"] / 60,
        speed=measure_speed(),
        bandit_threshold=env_hyperparams("Bandit-v0")["escape_threshold"],
        threshold=env_hyperparams("FourRooms-v0")["escape_threshold"],
    )
    sections = [head, route_section("FourRooms-v0"), "## Escape times\n"]
    for setting in settings:
        sections.append(f"### {setting.title} (cap: {setting.cap:,} iterations)\n\n{escape_table(results, setting)}\n")
        for weighting in setting.weightings:
            title = panel_title(setting, weighting)
            sections.append(f"![{title}: optimality gap]({curve_file(setting, weighting)})\n")
    sections.append("![Escape time against 1/pi0](exact_pg_escape_times.png)\n")
    sections.append(findings(results, settings))
    sections.append(REPORT_TAIL)
    path = DOCS / "exact_pg.md"
    path.write_text("\n".join(sections))
    return path


def bandit_gap() -> float:
    """:return: the gap between the best and the second-best arm of Bandit-v0."""
    rewards = sorted(gym.make("Bandit-v0").unwrapped.rewards, reverse=True)
    return rewards[0] - rewards[1]


def escaped(results: list[Result], setting: str, method: str, weighting: str = WEIGHTINGS[0]) -> list[float]:
    """:return: the pi0 at which ``method`` escaped within its cap."""
    return [r.pi0 for r in row_of(results, setting, method, weighting) if r.escape_time is not None]


def pi0_set(values: list[float]) -> str:
    """:return: ``{0.1, 0.01}``, or ``{}`` for none."""
    return "{" + ", ".join(f"{pi0:g}" for pi0 in values) + "}"


def bandit_findings(results: list[Result]) -> list[str]:
    """:param results: all runs.
    :return: the bandit's measured claims, with the two-arm predictions."""
    eta, gap = get(results, "bandit", SPG, 1e-2).learning_rate, bandit_gap()
    spg, epg2, epg4 = (row_of(results, "bandit", label) for label in (SPG, EPG2, EPG4))
    measured = ", ".join(f"{escape_cell(r)} (predicted {1 / (2 * eta * gap * r.pi0):,.0f})" for r in spg)
    steps = np.diff([r.escape_time if r.escape_time is not None else np.nan for r in epg2])
    per_decade = math.log(10) / (4 * eta * gap)
    ratio = ratio_text(results, "bandit", SPG, EPG2, 1e-2)
    spg_t, epg_t = spg[1].escape_time, epg2[1].escape_time
    met = spg_t is not None and epg_t is not None and spg_t >= 10 * epg_t
    return [
        f"- Bandit-v0, SPG escape times: {measured}; slope for pi0 <= 1e-2: {slope_text(spg[1:])} (theory: 1).",
        f"- Bandit-v0, EPG p=2: {', '.join(escape_cell(r) for r in epg2)}; extra iterations per decade of pi0: "
        f"{', '.join(f'{d:.0f}' for d in steps)} (predicted {per_decade:.1f}); EPG p=4 slope for pi0 <= 1e-2: "
        f"{slope_text(epg4[1:])} (predicted 0.5).",
        f"- Bandit-v0, pi0 = 1e-2: EPG p=2 escapes {ratio} faster than SPG ({'at least' if met else 'NOT'} 10x).",
    ]


def weighting_findings(results: list[Result], setting: Setting) -> list[str]:
    """:param results: all runs.
    :param setting: a setting run with both weightings.
    :return: per weighting, where SPG and EPG escaped and who escaped everywhere; per method, the effect of the
        weighting; and what explains NeuRD's escape."""
    lines = []
    for weighting in setting.weightings:
        everywhere = [m.label for m in METHODS if len(escaped(results, setting.key, m.label, weighting)) == len(PI0S)]
        lines.append(
            f"- {setting.title}, {weighting} weighting: SPG escaped at pi0 in "
            f"{pi0_set(escaped(results, setting.key, SPG, weighting))}, EPG p=2 at "
            f"{pi0_set(escaped(results, setting.key, EPG2, weighting))}; escaped at every pi0: "
            f"{', '.join(everywhere) or 'no method'}."
        )
    changes = []
    for method in METHODS:
        counts = [len(escaped(results, setting.key, method.label, w)) for w in setting.weightings]
        changes.append(f"{method.label} {' -> '.join(map(str, counts))}")
    lines.append(
        f"- {setting.title}, pi0 values escaped from (of {len(PI0S)}), "
        f"{' -> '.join(setting.weightings)} weighting: {'; '.join(changes)}."
    )
    lines.append(f"- {setting.title}: {neurd_explanation(results, setting)}")
    lines.append(f"- {setting.title}: {loose_escapes(results, setting)}")
    return lines


def loose_escapes(results: list[Result], setting: Setting) -> str:
    """:param results: all runs.
    :param setting: a FourRooms setting.
    :return: the runs that reached ``LOOSE_THRESHOLD * V*`` but not the escape threshold, with when."""
    runs = [r for r in results if r.setting == setting.key and r.escape_time is None and r.loose_escape_time is not None]
    listed = "; ".join(
        f"{r.method}, {r.weighting}, pi0 = {r.pi0:g} (at {r.loose_escape_time:,}; greedy {r.final_greedy_fraction:.3f})"
        for r in runs
    )
    threshold = env_hyperparams(setting.env_id)["escape_threshold"]
    return (
        f"runs that reached {LOOSE_THRESHOLD:g} V* but not {threshold:g} V* within the cap (when they reached "
        f"{LOOSE_THRESHOLD:g} V*; the value of their final policy's greedy actions over V*(rho)): "
        f"{listed or 'none'}."
    )


def slope_comparison(results: list[Result], setting: Setting, weighting: str) -> str:
    """:param results: all runs.
    :param setting: a FourRooms setting.
    :param weighting: its state weighting to compare with the bandit.
    :return: the slopes for pi0 <= 1e-2 of each method on the setting and on Bandit-v0."""
    pairs = []
    for method in METHODS:
        here, bandit = (
            row_of(results, key, method.label, w)[1:] for key, w in ((setting.key, weighting), ("bandit", WEIGHTINGS[0]))
        )
        pairs.append(f"{method.label} {slope_text(here)} vs {slope_text(bandit)}")
    return f"- Slope for pi0 <= 1e-2, {setting.title} with {weighting} weighting vs Bandit-v0: {'; '.join(pairs)}."


def neurd_explanation(results: list[Result], setting: Setting) -> str:
    """:param results: all runs.
    :param setting: a setting run with both weightings.
    :return: whether NeuRD's escape comes from its state weighting or its parameterization, as the runs say."""
    visitation, uniform = setting.weightings
    neurd_v, neurd_u = (escaped(results, setting.key, NEURD, w) for w in (visitation, uniform))
    best_pg = max(len(escaped(results, setting.key, m, visitation)) for m in (SPG, EPG2))
    numbers = (
        f"NeuRD (beta=2) escapes at pi0 in {pi0_set(neurd_v)} with the visitation weight and {pi0_set(neurd_u)} without "
        f"it; SPG with the visitation weight at {pi0_set(escaped(results, setting.key, SPG, visitation))}, EPG p=2 at "
        f"{pi0_set(escaped(results, setting.key, EPG2, visitation))}."
    )
    if len(neurd_u) > len(neurd_v) and len(neurd_v) <= best_pg:
        return f"NeuRD's escape came from dropping the visitation weight, not from its parameterization: {numbers}"
    if len(neurd_v) > best_pg:
        return f"NeuRD escapes where SPG and EPG do not under the same (visitation) weighting: {numbers}"
    return f"the weighting does not separate NeuRD from the policy gradients here: {numbers}"


def findings(results: list[Result], settings: tuple[Setting, ...]) -> str:
    """:param results: all runs.
    :param settings: the settings run.
    :return: the measured claims of the report, computed from the runs."""
    lines = ["## Findings (computed from the runs above)", "", *bandit_findings(results)]
    for setting in settings:
        if len(setting.weightings) > 1:
            lines += weighting_findings(results, setting)
    lines.append(slope_comparison(results, settings[1], WEIGHTINGS[1]))
    return "\n".join(lines) + "\n"


REPORT_HEAD = """# Exact policy gradient: the softmax gravity well and the escort escape

Generated by `{command}` at {version} (the runs took {wall:.1f} minutes).

Speed: {speed}

## Setup

- `agents.ExactPG` with exact gradients: every iteration solves for `Q^pi` and the discounted visitation `d^pi_rho`
  (sparse LU of `I - gamma P_pi`). The policy gradient is `dV(rho)/dtheta_s = w(s) * f(theta_s) * A(s,.)` with the
  state weight `w(s) = d(s)/(1-gamma)` and the parameterization's factor `f` (softmax `pi`; escort
  `(p/||theta_s||_p) sign(theta) pi^(1-1/p)`). Plain gradient ascent (`optimizer: sgd`), the step sizes of
  `hyperparams/exact.yml` (column `eta`): on Bandit-v0 the softmax smoothness step 2/5 for SPG, EPG and NeuRD and 1/6
  for GNPG; on FourRooms-v0 1.0 for every method. The same step size for SPG and EPG means the same `eta`, not the
  same step length: at the uniform policy of `A` actions the escort gradient of a unit-norm `theta` is `p * A^(1/p)`
  times the softmax one (4x for p=2 on 4 actions).
- State weighting (`state_weighting`, the same rule for every method): `visitation` weights state `s` by
  `d(s)/(1-gamma)` (SPG and EPG follow the policy gradient, GNPG normalises it, NeuRD steps
  `theta_s += eta d(s)/(1-gamma) A(s,.)`); `uniform` weights every state by 1 (SPG and EPG follow `f(theta_s) A(s,.)`,
  GNPG normalises that, NeuRD steps `eta A(s,.)`, OpenSpiel's update). FourRooms-v0 runs both. Bandit-v0 has one
  non-terminal state with `d(s0)/(1-gamma) = 1`, so there the two weightings are the same algorithm, step for step
  (`tests/test_exact_pg.py` checks it): it runs the default only.
- Adversarial start, the same policy for every parameterization: in every state `pi0` on `a* = argmax Q*`, `pi0^2` on
  each other action but one, and the rest on the best strictly sub-optimal action (Bandit-v0, arms `[1.0, 0.9, 0.1]`:
  `pi = (pi0, 1 - pi0 - pi0^2, pi0^2)`, the near-deterministic policy on the 0.9 arm).
- EPG: escort `pi = |theta|^p / ||theta||_p^p`, computed exactly in float64 (no floor), `theta0 = pi0^(1/p)`;
  "unnormalised" skips the renormalisation of `theta` to unit p-norm after each step (the normalised step equals an
  unnormalised one of size `eta ||theta||_p^2`).
- NeuRD: mean-centred logits, OpenSpiel's threshold (a logit rises only below `beta` and falls only above `-beta`);
  "no threshold" is `beta = inf`. GNPG: the (weighted) softmax gradient over its L2 norm.
- Escape time: first iteration with `pi(a*|s0) >= {bandit_threshold:g}` (Bandit-v0) or
  `V(rho) >= {threshold:g} V*(rho)` (FourRooms-v0, see the next section). `> N`: not within the N iterations run (the
  cap). The slope is the least-squares slope of log(escape time) against log(1/pi0), over all four pi0 and over
  pi0 <= 1e-2 (closer to the asymptotic regime); theory for SPG: 1.
- FourRooms-v0 is run with its own start distribution (the start cell) and with `rho` uniform over the non-terminal
  states (`rho: uniform`), the full-support start distribution that the MDP convergence rates of softmax and escort
  policy gradients assume; escape is then measured on `V(rho)` for that `rho`. One run per cell: the runs are
  deterministic (exact gradients, a fixed initial policy), so there is no seed noise to average over.
"""

REPORT_TAIL = """
## What the numbers support and what they do not

- **Matches: the bandit gravity well and the escort escape.** SPG's escape time grows like 1/pi0: its gradient is
  bounded by `pi(a*) * gap`. A two-arm approximation by an ODE (derived for this report, not quoted from a paper:
  `theta_{a*} - theta_b` grows at rate `2 eta gap pi(a*)` while `pi(b)` is near 1) predicts `T ~ 1 / (2 eta gap pi0)`,
  within 25% of the measured times for pi0 <= 1e-2 and closer as pi0 shrinks; at pi0 = 0.1, where `pi(b)` is not near
  1 for long, it is off by a factor of about 3. For normalised EPG the same approximation gives
  `d theta_{a*} / dt ~ eta p gap theta_{a*}^(p-1)`: for p = 2 `theta_{a*}` grows geometrically and
  `T ~ ln(1/pi0) / (4 eta gap)`, a constant number of extra iterations per decade of pi0; for p > 2,
  `T ~ pi0^-(1 - 2/p)` (slope 0.5 for p = 4). Both match the measured escape times (Findings).
- **Renormalisation barely matters at these step sizes.** The escort gradient is orthogonal to `theta`, so plain
  ascent grows `||theta||` only by the squared step lengths; the normalised and unnormalised runs take nearly the same
  number of iterations.
- **NeuRD's threshold is a gravity well of its own.** From the adversarial start the logits lie far outside
  `[-beta, beta]`; the logit of `a*` stops rising at `beta` and then gains only through the mean-centring, as the
  sub-optimal logit falls at a rate proportional to `pi(a*) * gap`: a slope near 1 again. Bounded logits also leave a
  floor in the optimality gap (the policy cannot become deterministic). Without the threshold the logit of `a*` rises
  by about `eta * gap` per iteration, `T ~ ln(1/pi0) / (eta gap)`.
- **FourRooms-v0: the state weighting decides whether a method escapes at all; the parameterization decides how fast
  once the weighting lets it.** With the visitation weight (the policy gradient itself) no method escapes from the
  start cell once pi0 <= 1e-3, and only GNPG at 1e-2. A state's gradient carries `d(s)`, and states `k` steps off the
  current path are reached with probability about `pi0^k`; the states that must change first, those whose successors
  already lead to the goal, are the ones the adversarial policy never reaches. Escort removes the `pi(a*|s)` factor of
  each state's gradient, not the visitation factor, so the exponentially slow behaviour of softmax policy gradient on
  chains (Li, Wei, Chi, Gu and Chen, 2021) is shared by escort here. Weighting every state by 1 removes the visitation
  factor for every method alike, and then the MDP behaves state by state like the bandit: EPG escapes at every pi0 with
  log-log slopes close to the bandit's (last Findings line), SPG still only from the milder starts, and NeuRD with the
  threshold with a slope close to its bandit slope.
- **NeuRD's escape on FourRooms-v0 came from dropping the visitation weight, not from its parameterization.** Under the
  same weighting as SPG and EPG, NeuRD (either threshold) is as stuck as they are; under uniform weighting every method
  escapes from more starts, EPG p=2 from every one and sooner than either NeuRD. Unthresholded NeuRD with uniform
  weighting is the tabular natural policy gradient of softmax: NPG steps `theta_s += eta/(1-gamma) A(s,.)` (Agarwal,
  Kakade, Lee and Mahajan, 2021), NeuRD's `eta A(s,.)` with another step size.
- **With uniform weighting the update does not depend on `rho`** (`f` and `A` are per-state quantities), so the two
  FourRooms settings then run the same iterates and differ only in the objective on which escape is measured. With the
  visitation weight a uniform `rho` bounds the weight below, `d(s)/(1-gamma) >= rho(s) = 1/412` (derived from
  `d >= (1-gamma) rho`), instead of letting it fall like `pi0^k`: it helps EPG and GNPG part of the way and SPG not at
  all within the cap.
- **The threshold, from the start cell and from a uniform start.** From the start cell no run reached 0.9 V* without
  going on to 0.95 V* (Findings): there the threshold only has to separate the route families of the table above.
  With the uniform start `V(rho)` averages over 412 start states, and many visitation-weighted runs sit between
  0.9 V*(rho) and 0.95 V*(rho) for thousands of iterations, their greedy actions worth 0.70 to 0.94 V*(rho) at the cap
  (Findings). That is a worse route from some start states or a slow approach (detours) from many; `V(rho)` alone
  does not tell the two apart, and these runs count as not escaped.
- **Not tested here:** sampled gradients (escort's advantages are proven for exact gradients only; with sampling,
  aggressive updates can commit to sub-optimal actions, Mei et al. 2021), step sizes tuned per method, and comparisons
  at equal step length rather than equal `eta`.
"""


def without_save(argv: list[str]) -> list[str]:
    """:param argv: command-line arguments.
    :return: them without ``--save PATH``."""
    kept, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--save="):
            skip = False
            continue
        skip = arg == "--save"
        if not skip:
            kept.append(arg)
    return kept


def make_settings(bandit_cap: int, fourrooms_cap: int) -> tuple[Setting, ...]:
    """:param bandit_cap: iteration cap on Bandit-v0.
    :param fourrooms_cap: iteration cap on FourRooms-v0.
    :return: the three settings: the bandit (default weighting), FourRooms from its start cell and from a uniform start."""
    return (
        Setting("bandit", "Bandit-v0", "Bandit-v0", "env", bandit_cap, tail=10, weightings=WEIGHTINGS[:1]),
        Setting("fourrooms", "FourRooms-v0", "FourRooms-v0", "env", fourrooms_cap, tail=3),
        Setting("fourrooms_uniform_start", "FourRooms-v0, uniform start", "FourRooms-v0", "uniform", fourrooms_cap, tail=3),
    )


def main() -> None:
    """Run the grid, print the tables, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all CPUs)")
    parser.add_argument("--quick", action="store_true", help="small caps (a smoke test; the report is then not the real one)")
    parser.add_argument("--bandit-cap", type=int, default=1_000_000, help="iteration cap on Bandit-v0")
    parser.add_argument("--fourrooms-cap", type=int, default=10_000, help="iteration cap on FourRooms-v0")
    parser.add_argument("--save", type=Path, help="also pickle the results to this file")
    parser.add_argument("--load", type=Path, help="write the report from results pickled by --save instead of running")
    args = parser.parse_args()
    if args.load:
        results, record = pickle.loads(args.load.read_bytes())
    else:
        settings = make_settings(*((20_000, 300) if args.quick else (args.bandit_cap, args.fourrooms_cap)))
        command = " ".join(["python benchmarks/exact_pg_escape.py", *without_save(sys.argv[1:])])
        version = code_version()
        start = time.perf_counter()
        results = run_all(settings, args.workers)
        record = {"command": command, "version": version, "wall": time.perf_counter() - start, "settings": settings}
    if args.save:
        args.save.write_bytes(pickle.dumps((results, record)))
    settings = record["settings"]
    for setting in settings:
        print(f"\n{setting.title}\n{escape_table(results, setting)}")
    print("\n" + findings(results, settings))
    print(f"wrote {write_report(results, settings, record)} ({record['wall']:.0f} s)")


if __name__ == "__main__":
    main()
