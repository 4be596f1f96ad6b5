"""The figures of a report (matplotlib, through rliable's plot helpers where it has one): aggregate scores,
probability of improvement, performance profiles and learning curves, each captioned with what it aggregates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from experiments.report.estimates import AGGREGATES
from experiments.report.tables import load_table

CURVES_PNG = "curves.png"
AGGREGATES_PNG = "aggregates.png"
IMPROVEMENT_PNG = "improvement.png"
PROFILES_PNG = "profiles.png"
SENSITIVITY_PNG = "sensitivity.png"
#: Seaborn's colorblind palette in an order where neighbours differ most (its orange and vermillion, 1 and 3, far apart).
PALETTE_ORDER = (0, 1, 2, 4, 9, 7, 5, 3, 8, 6)


def _figure_caption(folder: Path) -> str:
    """:param folder: a study folder
    :return: what a figure of it aggregates: the number of runs and seeds and the budget of each run"""
    table = load_table(folder)
    runs = table.groupby(["env", "algo", "policy", "p", "seed"])["timesteps"].max()
    low, high = int(runs.min()), int(runs.max())
    budget = f"{low:,}" if low == high else f"{low:,} to {high:,}"
    return f"{len(runs)} runs, {table['seed'].nunique()} seeds; budget {budget} steps (iterations, epochs) per run"


def _taus(matrices: dict[str, np.ndarray]) -> np.ndarray:
    values = np.concatenate([m.ravel() for m in matrices.values()])
    return np.linspace(min(0.0, float(values.min())), max(1.0, float(values.max())), 81)


def _save(fig: Any, png: Path) -> None:
    import matplotlib.pyplot as plt

    fig.text(0.5, 0.0, _figure_caption(png.parent), ha="center", va="top", fontsize="small", color="0.3")
    fig.savefig(png, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _colors(labels: list[str]) -> dict[str, Any]:
    import seaborn as sns

    if len(labels) > len(PALETTE_ORDER):
        return dict(zip(labels, sns.color_palette("husl", len(labels))))
    palette = sns.color_palette("colorblind", n_colors=10)
    colors = [palette[i] for i in PALETTE_ORDER]
    return dict(zip(labels, colors))


def _plot_aggregates(points: dict, intervals: dict, labels: list[str], png: Path) -> None:
    from rliable import plot_utils

    fig, _ = plot_utils.plot_interval_estimates(
        points,
        intervals,
        metric_names=list(AGGREGATES),
        algorithms=labels,
        colors=_colors(labels),
        xlabel="Normalised score",
        row_height=0.7,
        subfigure_width=3.6,
        xlabel_y_coordinate=-0.2 - 0.4 / len(labels),
    )
    _save(fig, png)


def _plot_improvement(points: dict, intervals: dict, png: Path) -> None:
    from rliable import plot_utils

    ax = plot_utils.plot_probability_of_improvement(points, intervals, figsize=(4.5, 0.6 + 0.5 * len(points)))
    _save(ax.figure, png)


def _plot_profiles(profiles: dict, cis: dict, taus: np.ndarray, png: Path) -> None:
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    fig, ax = plt.subplots(figsize=(6, 4))
    plot_utils.plot_performance_profiles(
        profiles,
        taus,
        performance_profile_cis=cis,
        colors=_colors(list(profiles)),
        xlabel=r"Normalised score ($\tau$)",
        ax=ax,
        labelsize="medium",
        ticklabelsize="medium",
    )
    ax.legend(loc="upper right")
    _save(fig, png)


def _plot_curves(panels: list[tuple[str, str, dict]], labels: list[str], png: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    colors = _colors(labels)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (env, name, data) in zip(axes[0], panels):
        for label, (t, iqm, low, high) in data.items():
            ax.plot(t, iqm, color=colors[label], label=label, marker="o" if len(t) == 1 else None)
            ax.fill_between(t, low, high, color=colors[label], alpha=0.2)
        ax.set_title(env)
        ax.set_xlabel("timesteps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_ylabel(f"{name}, IQM over seeds", fontsize="small")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    _save(fig, png)
