"""Softmax against escort p = 2 with PPO on the ``minatar`` suite: a study, its rliable report, and ``docs/suite_minatar.md``.

Run from the repository root::

    python benchmarks/suite_minatar.py [--seeds 5] [-n 1000000] [--workers 2] [--folder /tmp/suite_minatar]

The runs are one study of ``train.py`` (``--suite minatar --algo ppo --policy softmax escort --p 2``, the ``minatar``
preset of ``hyperparams/ppo.yml``), so the study machinery makes them crash-safe and resumable: running the command
again skips the finished runs, and a larger ``--seeds`` adds seeds to the same study. A larger ``-n`` is another
budget and so another study (``--study`` names it after the budget). Evaluation: every ``--eval-freq`` steps,
``--eval-episodes`` episodes of the stochastic policy (MinAtar's preset samples, as gymnax-blines evaluates) on
``--n-eval-envs`` copies. Once the study is complete, the script copies its report (``report.md`` and figures) into
``docs/suite_minatar.md`` and ``docs/suite_minatar_*.png``, after a header with the command, the commit, the budget
against the published 10M-step figures, the training speed, and a per-game comparison computed here from the study's
``results.csv`` (the difference of the mean final returns, escort minus softmax, with a 95% percentile-bootstrap CI over
seeds, from ``scipy.stats.bootstrap``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.stats import bootstrap

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repository root, for a checkout not pip-installed

from benchmarks.provenance import after_runs, header, run_commits, run_dates  # noqa: E402

DOCS = ROOT / "docs"
DOC = DOCS / "suite_minatar.md"
#: gymnax-blines' PPO returns at 10M steps (gymnax README); none published for Seaquest.
PUBLISHED = {"Asterix": 15.0, "Breakout": 28.0, "Freeway": 58.0, "SpaceInvaders": 131.0}
POLICIES = ("softmax", "escort")


def study_name(n_timesteps: int) -> str:
    """:return: the study's name for a budget"""
    return f"minatar_ppo_softmax-vs-escort-p2_n{n_timesteps}"


def train_command(args: argparse.Namespace) -> list[str]:
    """:return: the ``train.py`` command of the study"""
    return [
        sys.executable,
        str(ROOT / "train.py"),
        "--suite",
        "minatar",
        "--algo",
        "ppo",
        "--policy",
        *POLICIES,
        "--p",
        "2",
        "--seeds",
        str(args.seeds),
        "-n",
        str(args.n_timesteps),
        "--eval-freq",
        str(args.eval_freq),
        "--eval-episodes",
        str(args.eval_episodes),
        "--n-eval-envs",
        str(args.n_eval_envs),
        "--workers",
        str(args.workers),
        "-f",
        str(args.folder),
        "--study",
        study_name(args.n_timesteps),
    ]


def game(env_id: str) -> str:
    """:return: ``Breakout`` for ``MinAtar/Breakout-v1``"""
    return env_id.split("/")[-1].split("-")[0]


def final_returns(results: pd.DataFrame) -> pd.DataFrame:
    """:return: one row per run: env, policy, seed and its final return"""
    final = results[results["metric"] == "final_return"]
    return final[["env", "policy", "seed", "value"]].reset_index(drop=True)


def comparison_table(final: pd.DataFrame) -> list[str]:
    """:return: the Markdown table of the per-game comparison, escort minus softmax"""
    lines = [
        "| game | softmax: mean final return (s.e.) | escort p=2 | escort - softmax (95% CI) | reading | published, 10M |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for env_id, rows in final.groupby("env", sort=True):
        by = {p: rows[rows["policy"] == p].sort_values("seed")["value"].to_numpy(float) for p in POLICIES}
        if any(len(v) < 2 for v in by.values()):
            continue
        ci = bootstrap(
            (by["escort"], by["softmax"]),
            lambda a, b, axis=-1: np.mean(a, axis=axis) - np.mean(b, axis=axis),
            n_resamples=10_000,
            confidence_level=0.95,
            method="percentile",
            random_state=0,
        ).confidence_interval
        reading = "escort higher" if ci.low > 0 else ("softmax higher" if ci.high < 0 else "no difference shown")
        cells = [f"{v.mean():.2f} ({v.std(ddof=1) / np.sqrt(len(v)):.2f}), {len(v)} seeds" for v in by.values()]
        diff = by["escort"].mean() - by["softmax"].mean()
        published = PUBLISHED.get(game(str(env_id)))
        lines.append(
            f"| {game(str(env_id))} | {cells[0]} | {cells[1]} | {diff:+.2f} ({ci.low:+.2f} to {ci.high:+.2f}) | {reading} "
            f"| {published if published is not None else '-'} |"
        )
    return lines


def speeds(study: Path) -> pd.DataFrame:
    """:return: the training fps, median over runs, per game (rows) and policy (columns), from each run's summary.json"""
    rows = []
    for summary in sorted(study.glob("runs/*/summary.json")):
        config = yaml.safe_load((summary.parent / "config.yml").read_text())
        rows.append((game(config["env"]), config["policy"], json.loads(summary.read_text())["fps"]))
    frame = pd.DataFrame(rows, columns=["game", "policy", "fps"])
    return frame.groupby(["game", "policy"])["fps"].median().unstack()


def ten_million_hours(study: Path) -> float:
    """:return: the CPU hours of one 10M-step run per game, summed over the games, at softmax's median speeds"""
    return float((10_000_000 / speeds(study)["softmax"]).sum() / 3600)


def speed_lines(study: Path) -> list[str]:
    """:return: the Markdown table of the training speeds"""
    table = speeds(study)
    lines = ["| game | softmax fps | escort p=2 fps |", "| --- | --- | --- |"]
    lines += [
        f"| {g} | {row.get('softmax', float('nan')):,.0f} | {row.get('escort', float('nan')):,.0f} |"
        for g, row in table.iterrows()
    ]
    return lines


def copy_report(study: Path) -> str:
    """Copy the study's figures into ``docs/`` as ``suite_minatar_<name>.png``.

    :return: the report's Markdown with its image links pointing at the copies
    """
    text = (study / "report.md").read_text()
    for image in study.glob("*.png"):
        shutil.copyfile(image, DOCS / f"suite_minatar_{image.name}")
        text = text.replace(f"]({image.name})", f"](suite_minatar_{image.name})")
    return text.replace("\n# ", "\n## ").replace("\n## ", "\n### ").lstrip("#").lstrip()


def write_doc(args: argparse.Namespace, study: Path, provenance: str) -> None:
    """Write ``docs/suite_minatar.md`` from the complete study."""
    final = final_returns(pd.read_csv(study / "results.csv"))
    budget = args.n_timesteps / 10_000_000
    out = [
        "# MinAtar: softmax against escort p = 2 with PPO",
        "",
        "Generated by the command below, from the study it runs (commit, date and load as printed):",
        "",
        "```",
        provenance,
        "```",
        "",
        f"The study: `{' '.join(Path(c).name if i < 2 else c for i, c in enumerate(train_command(args)))}` "
        "(resumable: the same command skips finished runs; `--seeds 10` adds seeds, `-n 10000000` starts the 10M-step "
        f"study, about {ten_million_hours(study):.1f} CPU hours per policy and seed for the five games at the median "
        "speeds below).",
        "",
        f"The runs trained at commit {run_commits(study)} (from their `config.yml`), between "
        f"{run_dates(study)}; a rerun of the command finds them done and rewrites this doc.",
        "",
        f"**Budget.** {args.n_timesteps:,} steps per run, {budget:.1%} of the 10M steps behind the published PPO "
        "figures (gymnax-blines, on gymnax's JAX MinAtar, which has no sticky actions; here MinAtar itself with sticky "
        "actions 0.1 and difficulty ramping, the network of MinAtar's paper, and gymnax-blines' PPO hyperparameters). "
        "The returns below are early-training returns and are not comparable with the published column except as a "
        "scale.",
        "",
        "## Per game: escort minus softmax",
        "",
        "Final return: the mean over the final evaluation's episodes (stochastic policy) of each run; mean and standard "
        "error over seeds; the difference's 95% percentile-bootstrap CI over seeds (10,000 resamples).",
        "",
        *comparison_table(final),
        "",
        "## Training speed (environment steps per second, median over runs, one torch thread per run)",
        "",
        *speed_lines(study),
        "",
        "## What the numbers support and what they do not",
        "",
        "- They compare the two parameterizations at one budget, with the softmax preset's hyperparameters for both "
        "(not tuned per method: `--tune` does that) and a handful of seeds: a game marked `no difference shown` has a "
        "CI that includes 0, which at this number of seeds does not rule out differences of that CI's size.",
        "- They say nothing about 10M-step performance or about Atari; the published column is the scale reached "
        f"with {1 / budget:.0f} times this budget on a variant of the games without sticky actions.",
        "- Per-game CIs are not corrected for testing five games: with five independent 95% intervals, one excluding 0 "
        "by chance happens about one time in four when there is no difference anywhere. The cross-game aggregates of "
        "the report (IQM, probability of improvement, with stratified-bootstrap CIs) are the one test of the suite.",
        "- The speeds were measured on a shared 2-core machine with two runs at a time and other work alongside; "
        "differences between the policies' columns reflect what ran beside each run, not the parameterization "
        "(BENCHMARKS.md measures that side by side).",
        "- Seaquest has no published PPO figure and so no target: it appears per game and is left out of the "
        "cross-game aggregates of the report below.",
        "",
        "## The study's report",
        "",
        copy_report(study),
    ]
    DOC.write_text("\n".join(out) + "\n")
    print(f"wrote {DOC}")


def main(argv: list[str] | None = None) -> None:
    """Run (or resume) the study, then write the doc."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per game and policy")
    parser.add_argument("-n", "--n-timesteps", type=int, default=1_000_000, help="env steps per run")
    parser.add_argument("--eval-freq", type=int, default=100_000, help="env steps between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation")
    parser.add_argument("--n-eval-envs", type=int, default=10, help="evaluation env copies")
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/suite_minatar"), help="log folder of the study")
    args = parser.parse_args(argv)
    provenance = header()
    print(provenance, flush=True)
    status = subprocess.run(train_command(args), cwd=ROOT).returncode
    if status != 0:
        sys.exit(f"the study did not complete (exit {status}); run the command again to resume it")
    write_doc(args, args.folder / "studies" / study_name(args.n_timesteps), f"{provenance}\n{after_runs()}")


if __name__ == "__main__":
    main()
