"""The tuning section of a tuned study's report, from its ``selected.yml``: each group's selected values with their
tuning scores, and the sensitivity plot (the tuning score against each tuned value, one line per policy, per env)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from experiments.report.figures import _colors, _save
from experiments.report.sections import _ci
from experiments.report.tables import BASELINE
from experiments.study.layout import SELECTED_FILE
from experiments.study.naming import point_text, policy_label, value_text


def _tuning_section(selected: dict[str, Any], png: Path) -> list[str]:
    groups = sorted(selected.get("groups") or [], key=lambda g: (_env_name(g), g["policy"] != BASELINE))
    grid = selected.get("grid") or {}
    seeds = selected.get("tuning_seeds") or []
    n_points = int(np.prod([len(v) for v in grid.values()])) if grid else 0
    values = "; ".join(f"{k} in {{{', '.join(value_text(v) for v in vs)}}}" for k, vs in grid.items())
    per = (
        "one setting per (algo, policy, p) for all envs was selected by the IQM over tuning seeds and envs of"
        if selected.get("across_envs")
        else "one setting per (algo, env, policy, p) was selected by the IQM over the tuning seeds of"
    )
    lines = [
        "## Tuning",
        "",
        f"Tune then test: every grid point ({values}: {n_points} points) ran on {len(seeds)} tuning seed(s) "
        f"({_seed_range(seeds)}), disjoint from the final seeds; {per} each run's "
        f"{selected.get('metric_description', selected.get('metric'))}, with a 95% CI; rule: {selected.get('rule')}. "
        f"Every other section compares the final runs alone, with the selected values. Every grid point's score: "
        f"`{SELECTED_FILE}`; the tuning runs and their own report: `tuning/`.",
        "",
        "| env | policy | selected | tuning score | other points whose CI overlaps |",
        "| --- | --- | --- | --- | --- |",
    ]
    several = len({g["algo"] for g in groups}) > 1
    for group in groups:
        best = next(s for s in group["scores"] if s["point"] == group["selected"])
        overlap = sum(s["ci"][1] >= best["ci"][0] and s["ci"][0] <= best["ci"][1] for s in group["scores"]) - 1
        score = _ci(best["iqm"], *best["ci"]) + ("" if group["normalised"] else " (raw)")
        lines.append(
            f"| {_env_name(group)} | {_group_label(group, several)} | {point_text(group['selected'])} | {score} | "
            f"{overlap} of {len(group['scores']) - 1} |"
        )
    if not all(g["normalised"] for g in groups):
        lines += ["", "(raw): the env has no reference for this metric, so its tuning scores are not normalised; the "
                  "ranking within a group is the same as with normalised ones."]  # fmt: skip
    if groups and grid:
        _plot_sensitivity(groups, grid, png)
        lines += [
            "",
            "Sensitivity: the tuning score (IQM over the tuning runs, 95% CI) against each tuned value, one line per "
            "policy; with several tuned keys, each value's score is that of its best grid point; a star marks the "
            "selected value.",
            "",
            f"![sensitivity]({png.name})",
        ]
    return [*lines, ""]


def _seed_range(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _env_name(group: dict[str, Any]) -> str:
    env = group["env"]
    return f"all envs ({', '.join(env)})" if isinstance(env, list) else str(env)


def _group_label(group: dict[str, Any], several_algos: bool) -> str:
    return (f"{group['algo']}/" if several_algos else "") + policy_label(group["policy"], float(group["p"]))


def _value_scores(scores: list[dict[str, Any]], key: str, value: Any) -> tuple[float, float, float]:
    """:return: IQM and CI of the best grid point with ``key = value``"""
    best = max((s for s in scores if s["point"].get(key) == value), key=lambda s: s["iqm"])
    return best["iqm"], best["ci"][0], best["ci"][1]


def _positions(values: list[Any]) -> tuple[list[float], str]:
    """:return: x positions of tuned values and the axis scale: the values (log when positive and spanning 10x or
    more), or 0, 1, ... for values that are not numbers"""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        numbers = [float(v) for v in values]
        wide = min(numbers) > 0 and max(numbers) >= 10 * min(numbers)
        return numbers, "log" if wide else "linear"
    return [float(i) for i in range(len(values))], "linear"


def _plot_sensitivity(groups: list[dict[str, Any]], grid: dict[str, list[Any]], png: Path) -> None:
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(_env_name(g) for g in groups))
    several = len({g["algo"] for g in groups}) > 1
    colors = _colors(list(dict.fromkeys(_group_label(g, several) for g in groups)))
    fig, axes = plt.subplots(len(envs), len(grid), figsize=(4.5 * len(grid), 3.3 * len(envs)), squeeze=False)
    for row, env in enumerate(envs):
        for col, (key, values) in enumerate(grid.items()):
            ax = axes[row][col]
            xs, scale = _positions(values)
            for group in (g for g in groups if _env_name(g) == env):
                label = _group_label(group, several)
                iqm, low, high = np.array([_value_scores(group["scores"], key, v) for v in values]).T
                ax.errorbar(xs, iqm, yerr=[iqm - low, high - iqm], color=colors[label], label=label, marker="o", capsize=3)
                chosen = values.index(group["selected"][key])
                ax.plot(xs[chosen], iqm[chosen], marker="*", markersize=14, color=colors[label], linestyle="none")
            ax.set_xscale(scale)
            ax.set_xticks(xs, [value_text(v) for v in values])
            ax.minorticks_off()
            ax.set_title(env, fontsize="medium")
            ax.set_xlabel(key)
            ax.set_ylabel("tuning score (IQM)", fontsize="small")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    _save(fig, png)
