"""The command line of ``train.py``: flags built from ``RunConfig``'s documented fields, errors as one line."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from experiments.config import RunConfig, parse_key_values
from experiments.errors import UsageError

#: Short flags, as rl-zoo3 spells them.
SHORT_FLAGS = {"n_timesteps": "-n", "log_folder": "-f", "progress": "-P"}
#: Fields that take several values on the command line; more than one combination makes a study.
GRID_FIELDS = ("algo", "env", "policy", "p")
KEY_VALUE_FIELDS = ("hyperparams", "env_kwargs")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see python train.py --help)")


def build_parser() -> argparse.ArgumentParser:
    """:return: the parser; its help text is the documentation of ``RunConfig``'s fields"""
    parser = _Parser(
        prog="train.py",
        description="Train softmax, escort and NeuRD policies with PPO, A2C, QAC or exact policy gradient.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in dataclasses.fields(RunConfig):
        flags = [f"--{f.name.replace('_', '-')}"]
        if f.name in SHORT_FLAGS:
            flags.insert(0, SHORT_FLAGS[f.name])
        kwargs: dict[str, Any] = {"help": f.metadata["help"], "dest": f.name}
        if f.name in KEY_VALUE_FIELDS:
            kwargs.update(nargs="*", default=[], metavar="KEY=VALUE")
        elif f.type == "bool":
            kwargs.update(action="store_true", default=f.default)
        elif f.name in GRID_FIELDS:
            kwargs.update(nargs="+", type=float if f.name == "p" else str, default=[f.default])
        else:
            kwargs.update(type=_field_type(f), default=f.default)
        parser.add_argument(*flags, **kwargs)
    return parser


def _field_type(f: dataclasses.Field) -> type:
    return {"int": int, "int | None": int, "float": float, "str": str}[str(f.type)]


def parse_configs(argv: Sequence[str]) -> list[RunConfig]:
    """Parse the command line into the runs it asks for (one, or a grid).

    :param argv: arguments without the program name
    :return: one ``RunConfig`` per combination of the grid fields
    """
    args = vars(build_parser().parse_args(list(argv)))
    for name in KEY_VALUE_FIELDS:
        args[name] = parse_key_values(args[name], f"--{name.replace('_', '-')}")
    grid = [{}]
    for name in GRID_FIELDS:
        grid = [{**g, name: value} for g in grid for value in dict.fromkeys(args[name])]
    return [RunConfig(**{**args, **g}) for g in grid]


def main(argv: Sequence[str] | None = None) -> int:
    """Run what the command line asks for.

    :param argv: arguments without the program name (default: ``sys.argv[1:]``)
    :return: exit status: 0 done, 2 bad input, 130 interrupted
    """
    try:
        configs = parse_configs(sys.argv[1:] if argv is None else argv)
        if len(configs) > 1:
            raise UsageError("several values of --algo/--env/--policy/--p make a grid; run them one at a time")
        return _train(configs[0])
    except UsageError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("train.py: interrupted", file=sys.stderr)
        return 130


def _train(config: RunConfig) -> int:
    from experiments.run import run

    summary = run(config)
    if config.verbose:
        print(format_summary(config, summary))
    return 130 if summary.get("interrupted") else 0


def format_summary(config: RunConfig, summary: dict[str, Any]) -> str:
    """:param config: the run
    :param summary: what ``run`` returned
    :return: a few lines for the terminal"""
    lines = [f"run folder: {summary['run_dir']}"]
    if summary.get("interrupted"):
        lines.append(f"interrupted after {summary.get('timesteps', 0)} steps; model and evaluations so far are saved")
    if "final_return" in summary:
        lines.append(f"final evaluation return: {summary['final_return']:.3f} +- {summary.get('final_return_std', 0.0):.3f}")
    if "fraction_of_optimal" in summary:
        lines.append(f"greedy policy reaches {100 * summary['fraction_of_optimal']:.1f}% of V* (start state)")
    if summary.get("subgoals_collected") is not None:
        lines.append(f"sub-goals collected by the greedy policy: {summary['subgoals_collected'] or 'none'}")
    if summary.get("escape_time") is not None:
        lines.append(f"escape time: {summary['escape_time']} iterations")
    if "test_accuracy" in summary:
        lines.append(f"test accuracy: {100 * summary['test_accuracy']:.2f}%")
    return "\n".join(lines)
