"""The command line of ``train.py``: flags built from the documented fields of ``RunConfig`` and ``StudyOptions``.

One combination of ``--algo/--env/--policy/--p`` and seed is a run; several (or ``--study``/``--cluster``) make a study,
run on Dask (``experiments.study``). ``train.py report STUDY_FOLDER`` rewrites a study's table and report. Errors are
one line and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from experiments.config import TABULAR_ALGOS, RunConfig, parse_key_values
from experiments.errors import UsageError
from experiments.study.options import StudyOptions
from experiments.suites import add_suite_argument, apply_suites, study_groups

#: Short flags, as rl-zoo3 spells them.
SHORT_FLAGS = {"n_timesteps": "-n", "log_folder": "-f", "progress": "-P", "conf_file": "-conf", "hyperparams": "-params"}
#: Fields that take several values on the command line; more than one combination makes a study.
GRID_FIELDS = ("algo", "env", "policy", "p")
KEY_VALUE_FIELDS = ("hyperparams", "env_kwargs", "eval_env_kwargs")
#: Key-value fields whose absence differs from an empty mapping (None: take the default, see ``RunConfig``).
OPTIONAL_FIELDS = ("eval_env_kwargs",)
#: Element type of the fields that take a list.
LIST_TYPES = {"list[int] | None": int, "list[int]": int, "list[str]": str}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see python train.py --help)")


def build_parser() -> argparse.ArgumentParser:
    """:return: the parser; its help text is the documentation of the fields of ``RunConfig`` and ``StudyOptions``"""
    parser = _Parser(
        prog="train.py",
        description="Train softmax, escort and NeuRD policies with PPO, A2C, QAC or tabular (exact or sampled) policy "
        "gradient.",
        epilog="Saved runs and studies: 'train.py --eval RUN_FOLDER [--video]' evaluates a run folder and records an "
        "episode (see train.py --eval --help); 'train.py report STUDY_FOLDER' rewrites a study's table and report.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_fields(parser, RunConfig)
    _add_fields(parser.add_argument_group("studies (several runs, on Dask)"), StudyOptions)
    add_suite_argument(parser)
    return parser


def _add_fields(parser: Any, cls: type) -> None:
    for f in dataclasses.fields(cls):
        flags = [f"--{f.name.replace('_', '-')}"]
        if f.name in SHORT_FLAGS:
            flags.insert(0, SHORT_FLAGS[f.name])
        kwargs: dict[str, Any] = {"help": f.metadata["help"], "dest": f.name}
        if f.name in KEY_VALUE_FIELDS:
            kwargs.update(nargs="*", default=None if f.name in OPTIONAL_FIELDS else [], metavar="KEY=VALUE")
        elif f.type == "bool":
            kwargs.update(action="store_true", default=f.default)
        elif f.name in GRID_FIELDS:
            kwargs.update(nargs="+", type=float if f.name == "p" else str, default=[f.default])
        elif str(f.type) in LIST_TYPES:
            default = [] if f.default is dataclasses.MISSING else f.default
            kwargs.update(nargs="+", type=LIST_TYPES[str(f.type)], default=default)
        else:
            kwargs.update(type=_field_type(f), default=f.default)
        parser.add_argument(*flags, **kwargs)


def _field_type(f: dataclasses.Field) -> type:
    return {"int": int, "int | None": int, "float": float, "float | None": float, "str": str, "str | None": str}[str(f.type)]


def parse_command(argv: Sequence[str]) -> tuple[list[RunConfig], StudyOptions]:
    """Parse the command line into the runs it asks for (one, or a grid with its seeds) and the study options.

    :param argv: arguments without the program name
    :return: one ``RunConfig`` per run (grid x seeds, identical runs once), and the options
    """
    from experiments.study.spec import expand_seeds

    args = vars(build_parser().parse_args(list(argv)))
    options = StudyOptions(**{f.name: args.pop(f.name) for f in dataclasses.fields(StudyOptions)})
    suites = args.pop("suite")
    for name in KEY_VALUE_FIELDS:
        if args[name] is not None:
            args[name] = parse_key_values(args[name], f"--{name.replace('_', '-')}")
    grid = [{}]
    for name in GRID_FIELDS:
        grid = [{**g, name: value} for g in grid for value in dict.fromkeys(args[name])]
    configs = [RunConfig(**{**args, **g}) for g in grid]
    return apply_suites(expand_seeds(configs, options.seeds), suites, argv), options


def parse_configs(argv: Sequence[str]) -> list[RunConfig]:
    """:param argv: arguments without the program name
    :return: the runs the command line asks for (one per combination of the grid fields and seeds)"""
    return parse_command(argv)[0]


def is_study(configs: Sequence[RunConfig], options: StudyOptions) -> bool:
    """:param configs: the runs
    :param options: the study options
    :return: whether the command runs a study: several runs, or a study name, a cluster or --tune given"""
    return len(configs) > 1 or options.study is not None or options.cluster is not None or bool(options.tune)


def main(argv: Sequence[str] | None = None) -> int:
    """Run what the command line asks for.

    :param argv: arguments without the program name (default: ``sys.argv[1:]``)
    :return: exit status: 0 done, 1 some runs of a study failed, 2 bad input, 130 interrupted
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["report"]:
            return _report(argv[1:])
        if any(arg == "--eval" or arg.startswith("--eval=") for arg in argv):
            from experiments.evaluate import main as evaluate_main

            return evaluate_main(argv)
        configs, options = parse_command(argv)
        if is_study(configs, options):
            return _studies(configs, options)
        return _train(configs[0])
    except UsageError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("train.py: interrupted", file=sys.stderr)
        return 130


def _train(config: RunConfig) -> int:
    from experiments.run import run

    check_checkpoint_flags(config)
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
        who = "policy" if config.algo in TABULAR_ALGOS else "greedy policy"
        lines.append(f"{who} reaches {100 * summary['fraction_of_optimal']:.1f}% of V* (start state)")
    if "initial_pi_star_median" in summary:
        lines.append(
            f"adversarial start: pi(a*|s) median {summary['initial_pi_star_median']:.4g} (min "
            f"{summary['initial_pi_star_min']:.4g}, max {summary['initial_pi_star_max']:.4g}) over the non-terminal "
            f"states, fitted in {summary['initial_fit_steps']} steps ({summary['initial_fit_time']:.2f} s)"
        )
    if summary.get("subgoals_collected") is not None:
        lines.append(f"sub-goals collected by the greedy policy: {summary['subgoals_collected'] or 'none'}")
    if summary.get("escape_time") is not None:
        lines.append(f"escape time: {summary['escape_time']} iterations")
    elif config.algo in TABULAR_ALGOS:
        lines.append(f"did not escape within {summary.get('iterations', 'the')} iterations")
    if "test_accuracy" in summary:
        lines.append(f"test accuracy: {100 * summary['test_accuracy']:.2f}%")
    if "normalized_score" in summary:
        lines.append(
            f"normalized score: {summary['normalized_score']:.3f} (0: random {summary['reference_random']:.4g}, "
            f"1: target {summary['reference_target']:.4g})"
        )
    return "\n".join(lines)


def check_checkpoint_flags(config: RunConfig) -> None:
    """``--checkpoint-freq`` and ``--resume`` need an SB3 algorithm; ``--resume`` needs a checkpoint.

    :param config: the run
    """
    if not (config.resume or config.checkpoint_freq > 0):
        return
    from experiments.checkpoints import checkpoint_dir, latest_checkpoint
    from experiments.sb3_run import SB3_ALGOS

    if config.algo not in SB3_ALGOS:
        raise UsageError(f"--checkpoint-freq and --resume work with {', '.join(SB3_ALGOS)}, not --algo {config.algo}")
    if config.resume and latest_checkpoint(checkpoint_dir(config)) is None:
        raise UsageError(
            f"no checkpoint of this run in {checkpoint_dir(config)}: start it without --resume "
            "(with --checkpoint-freq N to save checkpoints)"
        )


def _study(configs: list[RunConfig], options: StudyOptions) -> int:
    from experiments.study.launch import run_study
    from experiments.study.progress import summary_line
    from experiments.study.spec import make_study

    if any(c.resume or c.checkpoint_freq > 0 for c in configs):
        raise UsageError("a study resumes by running the same command again: leave out --resume and --checkpoint-freq")
    study = make_study(configs, options.study, options.tune)
    where = options.cluster or f"a local Dask cluster ({min(options.workers, len(configs))} workers)"
    header = f"study {study.name}: {len(configs)} runs in {study.folder}, on {where}" if configs[0].verbose else None
    outcome = run_study(study, options, header=header)
    print(summary_line(outcome), flush=True)
    if outcome.interrupted:
        return 130
    return 1 if outcome.failed else 0


def _studies(configs: list[RunConfig], options: StudyOptions) -> int:
    """One study, or one per group of runs with their own settings (a suite's envs with other budgets or kwargs)."""
    status = 0
    for group, name in study_groups(configs, options.study):
        status = max(status, _study(group, dataclasses.replace(options, study=name)))
        if status == 130:
            break
    return status


def build_report_parser() -> argparse.ArgumentParser:
    """:return: the parser of ``train.py report``"""
    parser = _Parser(
        prog="train.py report",
        description="Rewrite a study's results.csv from its run folders, then its report.md and plots (rliable).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("folder", help="the study folder (<log-folder>/studies/NAME)")
    parser.add_argument("--reps", type=int, default=StudyOptions.reps, help="bootstrap replications per confidence interval")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    return parser


def _report(argv: Sequence[str]) -> int:
    from pathlib import Path

    from experiments.report import write_report
    from experiments.study.spec import load_spec
    from experiments.study.storage import write_results

    args = build_report_parser().parse_args(list(argv))
    if args.reps < 10:
        raise UsageError(f"--reps must be >= 10 (got {args.reps}); 2000 is usual")
    folder = Path(args.folder)
    load_spec(folder)
    write_results(folder)
    print(f"report: {write_report(folder, reps=args.reps, seed=args.seed)}")
    return 0
