"""Reproduce the softmax gravity well and the escort escape with exact gradients; write ``docs/exact_pg.md`` and plots.

Run from the repository root: ``python benchmarks/exact_pg_escape.py [--workers N] [--quick]``.

For ``pi0(a*)`` in {1e-1, 1e-2, 1e-3, 1e-4} and the adversarial initial policy, it runs softmax PG, escort PG (p = 2 and
p = 4, with and without renormalisation), NeuRD (threshold 2 and none) and GNPG on Bandit-v0, on FourRooms-v0 and on
FourRooms-v0 with a uniform start distribution, with the step sizes of ``hyperparams/exact.yml``, and reports the
escape times (the first iteration with ``pi(a*|s0) >= 0.9`` on the bandit, ``V(rho) >= 0.9 V*(rho)`` on FourRooms) and
the optimality-gap curves. A run stops at its iteration cap or some time after it escaped.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
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
from agents.exact_pg import ExactPG  # noqa: E402
from envs.make import env_family  # noqa: E402
from experiments.exact_run import AGENT_KEYS, curve_indices, learning_rate_for  # noqa: E402
from experiments.hyperparams import load_hyperparams  # noqa: E402

PI0S = (1e-1, 1e-2, 1e-3, 1e-4)
DOCS = ROOT / "docs"
CURVE_POINTS = 400


@dataclass(frozen=True)
class Method:
    """One parameterization with its options."""

    label: str
    policy: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    p: float = 2.0


@dataclass(frozen=True)
class Setting:
    """One environment and objective, with its iteration cap and how long a run continues after escaping."""

    key: str
    title: str
    env_id: str
    rho: str
    cap: int
    tail: int


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


@dataclass(frozen=True)
class Result:
    """What one run left: its escape time (None: not within its iterations), iterations run and a thinned gap curve."""

    setting: str
    method: str
    pi0: float
    escape_time: int | None
    iterations: int
    seconds: float
    curve_t: np.ndarray
    curve_gap: np.ndarray
    optimal_value: float
    learning_rate: float


def agent_kwargs(setting: Setting, method: Method) -> dict[str, Any]:
    """
    :param setting: env and objective.
    :param method: parameterization.
    :return: ``ExactPG`` arguments: ``hyperparams/exact.yml`` for the env, then the method's options.
    """
    hp = load_hyperparams("exact", setting.env_id, env_family(setting.env_id))
    kwargs = {key: hp[key] for key in AGENT_KEYS if key in hp}
    kwargs["learning_rate"] = learning_rate_for(kwargs["learning_rate"], method.policy)
    return {**kwargs, **method.kwargs, "rho": setting.rho, "p": method.p, "policy": method.policy}


def run_one(task: tuple[Setting, Method, float]) -> Result:
    """
    :param task: setting, method and ``pi0``.
    :return: the run's result.
    """
    setting, method, pi0 = task
    kwargs = agent_kwargs(setting, method)
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
        pi0,
        agent.escape_time,
        agent.num_iterations,
        seconds,
        keep,
        gap[keep],
        agent.optimal_value,
        kwargs["learning_rate"],
    )


def run_all(settings: tuple[Setting, ...], workers: int) -> list[Result]:
    """
    :param settings: the settings to run.
    :param workers: processes.
    :return: one result per (setting, method, pi0).
    """
    tasks = [(s, m, pi0) for s in settings for m in METHODS for pi0 in PI0S]
    tasks.sort(key=lambda t: (t[1].policy != "softmax", t[1].policy != "escort", t[2]))
    if workers <= 1:
        return [run_one(t) for t in tasks]
    with Pool(workers) as pool:
        return pool.map(run_one, tasks, chunksize=1)


def escape_cell(result: Result) -> str:
    """:param result: one run.
    :return: its escape time, or ``> N`` when it did not escape within its N iterations."""
    return f"{result.escape_time:,}" if result.escape_time is not None else f"> {result.iterations:,}"


def escape_table(results: list[Result], setting: Setting) -> str:
    """:param results: all runs.
    :param setting: the setting whose table to write.
    :return: a Markdown table, methods by ``pi0``, with the log-log slope of escape time against ``1/pi0``."""
    by = {(r.method, r.pi0): r for r in results if r.setting == setting.key}
    head = "| method | eta | " + " | ".join(f"pi0 = {pi0:g}" for pi0 in PI0S) + " | slope | slope, pi0 <= 1e-2 |"
    lines = [head, "|" + "---|" * (len(PI0S) + 4)]
    for method in METHODS:
        row = [by[(method.label, pi0)] for pi0 in PI0S]
        cells = " | ".join(escape_cell(r) for r in row)
        small = [r for r in row if r.pi0 <= 1e-2]
        lines.append(f"| {method.label} | {row[0].learning_rate:.3g} | {cells} | {slope_text(row)} | {slope_text(small)} |")
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


def plot_escape_times(results: list[Result], settings: tuple[Setting, ...], path: Path) -> None:
    """Escape time against ``1/pi0`` (log-log), one panel per setting; open markers: did not escape (at the cap).

    :param results: all runs.
    :param settings: panels.
    :param path: PNG file.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(settings), figsize=(5.2 * len(settings), 4.4), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        for k, method in enumerate(METHODS):
            row = sorted((r for r in results if r.setting == setting.key and r.method == method.label), key=lambda r: -r.pi0)
            x = [1 / r.pi0 for r in row]
            y = [r.escape_time if r.escape_time is not None else r.iterations for r in row]
            color = f"C{k}"
            ax.plot(x, y, line_style(method), color=color, alpha=0.6, label=method.label)
            for xi, yi, r in zip(x, y, row):
                ax.plot(xi, max(yi, 1), "o", color=color, mfc=color if r.escape_time is not None else "none")
        spg = [r for r in results if r.setting == setting.key and r.method == METHODS[0].label and r.escape_time]
        if spg:
            ref = min(spg, key=lambda r: abs(math.log(r.pi0 / 1e-2)))
            xs = np.array([1 / p for p in PI0S])
            ax.plot(xs, ref.escape_time * xs * ref.pi0, "k:", label="slope 1 (1/pi0)")
        ax.set(xscale="log", yscale="log", xlabel="1 / pi0(a*)", ylabel="escape time (iterations)", title=setting.title)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle("Escape time from the adversarial start (open marker: did not escape within the iterations shown)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(results: list[Result], setting: Setting, path: Path) -> None:
    """Optimality gap ``V* - V(rho)`` against iterations (log-log), one panel per ``pi0``.

    :param results: all runs.
    :param setting: the setting.
    :param path: PNG file.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PI0S), figsize=(4.6 * len(PI0S), 4.0), sharey=True)
    for ax, pi0 in zip(axes, PI0S):
        for k, method in enumerate(METHODS):
            r = next(r for r in results if r.setting == setting.key and r.method == method.label and r.pi0 == pi0)
            gap = np.maximum(r.curve_gap, 1e-12)
            ax.plot(r.curve_t + 1, gap, line_style(method), color=f"C{k}", label=method.label, lw=1.2)
        ax.set(xscale="log", yscale="log", xlabel="iteration + 1", title=f"pi0(a*) = {pi0:g}")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("optimality gap V* - V(rho)")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{setting.title}: exact gradients from the adversarial start")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def get(results: list[Result], setting: str, method: str, pi0: float) -> Result:
    """:return: the run of (setting, method, pi0)."""
    return next(r for r in results if r.setting == setting and r.method == method and r.pi0 == pi0)


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


def write_report(results: list[Result], settings: tuple[Setting, ...], command: str, wall: float) -> Path:
    """Write ``docs/exact_pg.md`` and its plots.

    :param results: all runs.
    :param settings: the settings run.
    :param command: the command line, for the record.
    :param wall: total seconds.
    :return: the Markdown file.
    """
    DOCS.mkdir(exist_ok=True)
    plot_escape_times(results, settings, DOCS / "exact_pg_escape_times.png")
    for setting in settings:
        plot_curves(results, setting, DOCS / f"exact_pg_{setting.key}_curves.png")
    sections = [REPORT_HEAD.format(command=command, wall=wall / 60, speed=measure_speed())]
    for setting in settings:
        sections.append(f"### {setting.title} (cap: {setting.cap:,} iterations)\n\n{escape_table(results, setting)}\n")
        sections.append(f"![{setting.title}: optimality gap](exact_pg_{setting.key}_curves.png)\n")
    sections.append("![Escape time against 1/pi0](exact_pg_escape_times.png)\n")
    sections.append(findings(results))
    sections.append(REPORT_TAIL)
    path = DOCS / "exact_pg.md"
    path.write_text("\n".join(sections))
    return path


def bandit_gap() -> float:
    """:return: the gap between the best and the second-best arm of Bandit-v0."""
    rewards = sorted(gym.make("Bandit-v0").unwrapped.rewards, reverse=True)
    return rewards[0] - rewards[1]


def escaped_at(results: list[Result], setting: str, method: str) -> str:
    """:return: the pi0 at which ``method`` escaped within its cap, as text."""
    hits = [f"{pi0:g}" for pi0 in PI0S if get(results, setting, method, pi0).escape_time is not None]
    return ", ".join(hits) if hits else "none"


def findings(results: list[Result]) -> str:
    """:param results: all runs.
    :return: the measured claims of the report, with the two-arm predictions, computed from the runs."""
    spg, epg2, epg4 = METHODS[0].label, METHODS[1].label, METHODS[3].label
    eta, gap = get(results, "bandit", spg, 1e-2).learning_rate, bandit_gap()
    row = {m.label: [get(results, "bandit", m.label, pi0) for pi0 in PI0S] for m in METHODS}
    lines = ["## Findings (computed from the runs above)", ""]
    measured = ", ".join(f"{escape_cell(r)} (predicted {1 / (2 * eta * gap * r.pi0):,.0f})" for r in row[spg])
    lines.append(f"- Bandit-v0, SPG escape times: {measured}; slope for pi0 <= 1e-2: {slope_text(row[spg][1:])} (theory: 1).")
    steps = np.diff([r.escape_time if r.escape_time is not None else np.nan for r in row[epg2]])
    per_decade = math.log(10) / (4 * eta * gap)
    lines.append(
        f"- Bandit-v0, EPG p=2: {', '.join(escape_cell(r) for r in row[epg2])}; extra iterations per decade of pi0: "
        f"{', '.join(f'{d:.0f}' for d in steps)} (predicted {per_decade:.1f}); EPG p=4 slope for pi0 <= 1e-2: "
        f"{slope_text(row[epg4][1:])} (predicted 0.5)."
    )
    ratio = ratio_text(results, "bandit", spg, epg2, 1e-2)
    spg_t, epg_t = row[spg][1].escape_time, row[epg2][1].escape_time
    met = spg_t is not None and epg_t is not None and spg_t >= 10 * epg_t
    lines.append(f"- Bandit-v0, pi0 = 1e-2: EPG p=2 escapes {ratio} faster than SPG ({'at least' if met else 'NOT'} 10x).")
    for key, title in (("fourrooms", "FourRooms-v0"), ("fourrooms_uniform", "FourRooms-v0, uniform start")):
        everywhere = [m.label for m in METHODS if all(get(results, key, m.label, pi0).escape_time for pi0 in PI0S)]
        lines.append(
            f"- {title}: SPG escaped at pi0 in {{{escaped_at(results, key, spg)}}}, EPG p=2 at "
            f"{{{escaped_at(results, key, epg2)}}}; escaped at every pi0: {', '.join(everywhere) or 'no method'}."
        )
    return "\n".join(lines) + "\n"


REPORT_HEAD = """# Exact policy gradient: the softmax gravity well and the escort escape

Generated by `{command}` (the runs took {wall:.1f} minutes).

Speed: {speed}

## Setup

- `agents.ExactPG` with exact gradients: every iteration solves for `Q^pi` and the discounted visitation `d^pi_rho`
  (sparse LU of `I - gamma P_pi`) and steps along `dV(rho)/dtheta_s = d(s)/(1-gamma) * sum_a dpi(a|s)/dtheta_s Q(s,a)`.
  Plain gradient ascent (`optimizer: sgd`), the step sizes of `hyperparams/exact.yml` (column `eta`): on Bandit-v0
  the softmax smoothness step 2/5 for SPG, EPG and NeuRD and 1/6 for GNPG; on FourRooms-v0 1.0 for every method. The
  same step size for SPG and EPG means the same `eta`, not the same step length: at the uniform policy of `A` actions
  the escort gradient of a unit-norm `theta` is `p * A^(1/p)` times the softmax one (4x for p=2 on 4 actions).
- Adversarial start, the same policy for every parameterization: in every state `pi0` on `a* = argmax Q*`, `pi0^2` on
  each other action but one, and the rest on the best strictly sub-optimal action (Bandit-v0, arms `[1.0, 0.9, 0.1]`:
  `pi = (pi0, 1 - pi0 - pi0^2, pi0^2)`, the near-deterministic policy on the 0.9 arm).
- EPG: escort `pi = |theta|^p / ||theta||_p^p`, `theta0 = pi0^(1/p)`; "unnormalised" skips the renormalisation of
  `theta` to unit p-norm after each step (the normalised step equals an unnormalised one of size `eta ||theta||_p^2`).
- NeuRD: `theta_s += eta (Q(s,.) - V(s))` in every state (no visitation weight), mean-centred logits, OpenSpiel's
  threshold (a logit rises only below `beta` and falls only above `-beta`); "no threshold" is `beta = inf`.
  GNPG: the softmax gradient over its L2 norm.
- Escape time: first iteration with `pi(a*|s0) >= 0.9` (Bandit-v0) or `V(rho) >= 0.9 V*(rho)` (FourRooms-v0).
  `> N`: not within the N iterations run (the cap). The slope is the least-squares slope of log(escape time) against
  log(1/pi0), over all four pi0 and over pi0 <= 1e-2 (closer to the asymptotic regime); theory for SPG: 1.
- FourRooms-v0 is run twice: with its own start distribution (the start cell) and with `rho` uniform over the
  non-terminal states (`rho: uniform`), the full-support start distribution that the MDP convergence rates of softmax
  and escort policy gradients assume; escape is then measured on `V(rho)` for that `rho`.

## Escape times
"""

REPORT_TAIL = """
## What matches theory and what does not

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
- **Does not transfer to FourRooms-v0 with its single start cell.** From the adversarial start, neither SPG nor EPG
  (any p, either normalisation) escapes within the cap once pi0 <= 1e-2. The policy gradient of a state carries the
  factor `d(s)`, and states `k` steps beyond the current path are reached with probability about `pi0^k`; meanwhile
  the advantage of `a*` in a state stays small as long as the states after it are still adversarial. Escort removes
  the `pi(a*|s)` factor of each state's gradient, not the visitation factor: the exponentially slow behaviour of
  softmax policy gradient on chains (Li, Wei, Chi, Gu and Chen, 2021) is shared by escort here. The convergence rates
  of both methods in MDPs assume a start distribution with full support (a finite distribution mismatch coefficient
  `||d^pi*_rho / rho||_inf`), which a single start cell violates. NeuRD without the threshold, which has no visitation
  weight, propagates the goal's value backwards state by state and escapes at every pi0; GNPG's normalised step helps
  down to a smaller pi0 than SPG and EPG but not to the smallest.
- **With a uniform start distribution EPG's advantage returns in the MDP.** EPG p = 2 escapes at every pi0 and its
  escape time grows slowly with 1/pi0, while SPG escapes only from the mildest start within the cap. EPG p = 4 escapes
  where SPG does not, but its escape time grows about like 1/pi0 here, not like the bandit's pi0^-0.5: in the MDP the
  advantage of `a*` is itself small until the states after it have escaped, and the one-state approximation does not
  give the rate. We have no derivation for the MDP rates.
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
    bandit_cap, fourrooms_cap = (20_000, 300) if args.quick else (args.bandit_cap, args.fourrooms_cap)
    settings = (
        Setting("bandit", "Bandit-v0", "Bandit-v0", "env", bandit_cap, tail=10),
        Setting("fourrooms", "FourRooms-v0", "FourRooms-v0", "env", fourrooms_cap, tail=3),
        Setting("fourrooms_uniform", "FourRooms-v0, uniform start", "FourRooms-v0", "uniform", fourrooms_cap, tail=3),
    )
    if args.load:
        results, wall, command = pickle.loads(args.load.read_bytes())
    else:
        start = time.perf_counter()
        results = run_all(settings, args.workers)
        wall = time.perf_counter() - start
        command = " ".join(["python benchmarks/exact_pg_escape.py", *without_save(sys.argv[1:])])
    if args.save:
        args.save.write_bytes(pickle.dumps((results, wall, command)))
    for setting in settings:
        print(f"\n{setting.title}\n{escape_table(results, setting)}")
    print("\n" + findings(results))
    print(f"wrote {write_report(results, settings, command, wall)} ({wall:.0f} s)")


if __name__ == "__main__":
    main()
