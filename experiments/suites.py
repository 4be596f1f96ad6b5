"""Named benchmark suites: ``train.py --suite NAME [NAME ...]`` runs a declared list of envs, each with its budget and
env kwargs, as ``--env`` would run them; ``train.py --suite list`` prints the suites.

The suites are data, ``hyperparams/suites.yml``::

    suites:
      NAME:
        description: one line
        hardware: cpu | cluster        (cluster: too slow for a small CPU machine; run it with --cluster or on a GPU)
        envs:
          - env: Gymnasium id
            n_timesteps: budget of one run, in env steps
            env_kwargs: {k: v}        (optional)
            fps: PPO training steps per second measured on one CPU thread (the measurement is named in the file)

A suite combines with ``--algo``, ``--policy``, ``--p`` and ``--seeds`` like a list of ``--env``: every run of the
grid is made for every env of the suite, with the env's budget (``-n`` overrides it for every env) and its env kwargs
(``--env-kwargs`` adds to them, and wins). Budgets and env kwargs are grid fields of a study
(``experiments.study.spec.RUN_FIELDS``), so a command line's suites make one study; the run folders of an env's variants are
told apart by their env kwargs (``experiments.study.naming.run_key``: ``ppo_FourRooms-v0_escort-p2_s0_slip-0.1``), and the
report names them ``FourRooms-v0 (slip=0.1)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.config import RunConfig, load_yaml
from experiments.errors import UsageError
from experiments.hyperparams import HYPERPARAMS_DIR
from experiments.study.naming import env_label, run_key
from experiments.study.spec import shared_settings

SUITES_FILE = HYPERPARAMS_DIR / "suites.yml"
LIST = "list"
HARDWARE = ("cpu", "cluster")


@dataclass(frozen=True)
class SuiteEnv:
    """One env of a suite: its id, the budget of a run, its env kwargs and the measured PPO speed."""

    env: str
    n_timesteps: int
    env_kwargs: dict[str, Any]
    fps: float | None

    @property
    def label(self) -> str:
        """:return: the id, with its kwargs where it has some: ``FourRooms-v0 (slip=0.1)``"""
        return env_label(self.env, self.env_kwargs)

    @property
    def cpu_seconds(self) -> float | None:
        """:return: estimated seconds of one run on one CPU thread (None: no measured fps)"""
        return self.n_timesteps / self.fps if self.fps else None


@dataclass(frozen=True)
class Suite:
    """A named list of envs."""

    name: str
    description: str
    hardware: str
    envs: tuple[SuiteEnv, ...]

    @property
    def cpu_seconds(self) -> float | None:
        """:return: estimated seconds of one run per env (one policy, one seed) on one CPU thread"""
        seconds = [e.cpu_seconds for e in self.envs]
        return None if any(s is None for s in seconds) else sum(s for s in seconds if s is not None)


def load_suites(path: Path = SUITES_FILE) -> tuple[dict[str, Suite], str]:
    """:param path: the suites file
    :return: the suites by name, and the file's note on how the fps were measured
    :raises UsageError: naming the first malformed entry"""
    data = load_yaml(Path(path).read_text()) or {}
    suites = {name: _suite(name, spec, path) for name, spec in (data.get("suites") or {}).items()}
    return suites, str(data.get("fps_measured", ""))


def _suite(name: str, spec: dict[str, Any], path: Path) -> Suite:
    hardware = spec.get("hardware", "cpu")
    if hardware not in HARDWARE or not spec.get("envs"):
        raise UsageError(f"{path}: suite {name} needs envs and a hardware of {', '.join(HARDWARE)}")
    return Suite(name, str(spec.get("description", "")), hardware, tuple(_suite_env(name, e, path) for e in spec["envs"]))


def _suite_env(suite: str, spec: dict[str, Any], path: Path) -> SuiteEnv:
    budget = spec.get("n_timesteps")
    if not isinstance(spec.get("env"), str) or isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 1:
        raise UsageError(f"{path}: every env of suite {suite} needs an id (env) and a budget (n_timesteps >= 1): {spec}")
    fps = spec.get("fps")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0):
        raise UsageError(f"{path}: the fps of {spec['env']} in suite {suite} must be a number > 0 (got {fps!r})")
    return SuiteEnv(spec["env"], int(budget), dict(spec.get("env_kwargs") or {}), float(fps) if fps else None)


def select(names: Sequence[str], suites: dict[str, Suite]) -> list[Suite]:
    """:param names: suite names as given to ``--suite``
    :param suites: the declared suites
    :return: those suites, in the order given
    :raises UsageError: for an unknown name, listing the known ones"""
    unknown = [n for n in names if n not in suites]
    if unknown:
        raise UsageError(f"unknown suite '{unknown[0]}': choose from {', '.join(suites)} (python train.py --suite list)")
    return [suites[n] for n in dict.fromkeys(names)]


def apply_suites(
    configs: Sequence[RunConfig], names: Sequence[str] | None, argv: Sequence[str], path: Path = SUITES_FILE
) -> list[RunConfig]:
    """Make every run of the grid once per env of the suites (none given: the runs unchanged).

    :param configs: the runs of the command line (after ``expand_seeds``), all on one env
    :param names: the suites (``--suite``), or None
    :param argv: the command line, to refuse ``--env`` next to ``--suite``
    :param path: the suites file
    :return: the runs, suite env by suite env (an env with the same kwargs in several suites once)
    :raises UsageError: for an unknown suite, ``--env`` next to ``--suite``, or an env with the same kwargs and other
        budgets in two of the suites (without ``-n``)
    """
    if not names:
        return list(configs)
    if any(arg == "--env" or arg.startswith("--env=") for arg in argv):
        raise UsageError("--suite and --env both name the envs: give one of them")
    suites, _ = load_suites(path)
    runs: dict[str, RunConfig] = {}
    for suite_env in (e for suite in select(names, suites) for e in suite.envs):
        for config in configs:
            run = suite_run(config, suite_env)
            first = runs.setdefault(run_key(run), run)
            if first.n_timesteps != run.n_timesteps:
                raise UsageError(
                    f"{suite_env.label} has budgets {first.n_timesteps:,} and {run.n_timesteps:,} in the suites "
                    f"{', '.join(dict.fromkeys(names))}: give -n, or run those suites apart"
                )
    return list(runs.values())


def suite_run(config: RunConfig, suite_env: SuiteEnv) -> RunConfig:
    """:param config: a run of the command line
    :param suite_env: an env of a suite
    :return: the run on that env: its budget unless ``-n`` was given, its kwargs under those of ``--env-kwargs``"""
    budget = config.n_timesteps if config.n_timesteps is not None else suite_env.n_timesteps
    kwargs = {**suite_env.env_kwargs, **config.env_kwargs}
    return dataclasses.replace(config, env=suite_env.env, n_timesteps=budget, env_kwargs=kwargs)


def study_groups(configs: Sequence[RunConfig], name: str | None) -> list[tuple[list[RunConfig], str | None]]:
    """The studies of a command line's runs: one, since its runs share every setting but the grid fields (budgets and
    env kwargs included).

    :param configs: the runs
    :param name: the ``--study`` name, or None (``experiments.study.naming.default_name``)
    :return: (runs, study name) per study
    :raises ValueError: for runs that do not share their settings (no command line makes them)
    """
    if len({json.dumps(shared_settings(c), sort_keys=True, default=str) for c in configs}) > 1:
        raise ValueError("the runs of one command line share every setting but the grid fields")
    return [(list(configs), name)]


def format_duration(seconds: float | None) -> str:
    """:param seconds: a duration, or None
    :return: ``2h05m``, ``13m20s``, ``45s`` (``?``: unknown)"""
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


def format_suites(suites: Iterable[Suite], fps_note: str = "") -> str:
    """The table of ``train.py --suite list``: per suite its envs, budgets, kwargs and estimated CPU time.

    :param suites: the suites
    :param fps_note: how the fps were measured
    :return: the text
    """
    lines = []
    for suite in suites:
        where = "" if suite.hardware == "cpu" else " [cluster or GPU suite: too slow for a small CPU machine]"
        lines += [f"{suite.name}: {suite.description}{where}", f"  {'env':<48} {'budget':>12} {'PPO fps':>9} {'CPU time':>9}"]
        for e in suite.envs:
            fps = f"{e.fps:,.0f}" if e.fps else "?"
            lines.append(f"  {e.label:<48} {e.n_timesteps:>12,} {fps:>9} {format_duration(e.cpu_seconds):>9}")
        lines += [
            f"  {'total per policy and seed':<48} {sum(e.n_timesteps for e in suite.envs):>12,} {'':>9} "
            f"{format_duration(suite.cpu_seconds):>9}",
            "",
        ]
    lines.append(
        "CPU time: budget / fps, one run after another on one core, for one policy and one seed (a study of P policies "
        "and S seeds takes P x S times as long, divided by its workers); escort and QAC runs are slower than PPO's "
        f"softmax. {fps_note}".rstrip()
    )
    return "\n".join(lines)


class ListSuites(argparse.Action):
    """``--suite list`` prints the suites and exits, as ``--help`` does; other values are stored."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        if LIST in values:
            if len(values) > 1:
                raise UsageError("--suite list prints the suites: give it alone")
            suites, note = load_suites()
            print(format_suites(suites.values(), note))
            parser.exit(0)
        setattr(namespace, self.dest, values)


def add_suite_argument(parser: Any) -> None:
    """:param parser: the parser (or argument group) of ``train.py``"""
    parser.add_argument(
        "--suite",
        nargs="+",
        action=ListSuites,
        default=None,
        metavar="NAME",
        dest="suite",
        help="run the envs of these named suites (hyperparams/suites.yml), each with its budget and env kwargs, instead "
        "of --env; combines with --algo, --policy, --p and --seeds ('--suite list' prints them with budgets and CPU time)",
    )
