"""The report of a study: learning curves, aggregate scores, probability of improvement and performance profiles (rliable).

Every number with an interval comes from rliable's stratified bootstrap (``rly.get_interval_estimates``) over runs, so
the conclusions carry 95% confidence intervals. Cross-env aggregates use each run's ``normalized_score`` from
``results.csv``, which ``experiments.study.storage.run_rows`` computes from the run alone (``experiments.reference``: V* and
the uniform policy's value on the transition model, or the random and target scores of ``reference_scores.yml``), so a
run's score is the same whatever else the study holds. An env whose runs have no reference is shown in the per-env
table and the curves, named as such, and left out of every aggregate. Every score is labelled with the policy it
evaluates: greedy or stochastic (``experiments.reference.score_policy``). An env is a task of its own per env kwargs,
named with them in every table and figure (``FourRooms-v0 (slip=0.1)``), so a suite's variants of an env stay apart.

A tuned study (``experiments.study.tuning``) adds a section on its tuning from ``selected.yml``: the selected values of
each group with their tuning scores, and a sensitivity plot per env; every other section compares the final runs alone
(the tuning runs stay in ``tuning/``, a study with its own report, whose policies are labelled with their grid point).

The modules, each importing only the ones before it: ``tables`` (results, final scores, score matrices), ``estimates``
(bootstrap intervals and curves), ``figures``, ``sections`` (Markdown), ``tuning`` (the tuning section) and ``write``
(``write_report``). The report reads a study folder; it imports nothing that runs a study (no runner, no Dask).
"""

from experiments.report.estimates import (
    AGGREGATES,
    CURVE_METRICS,
    CURVE_POINTS,
    aggregate_estimates,
    curve_metric,
    curves,
    improvement_estimates,
    interval_estimates,
    profile_estimates,
)
from experiments.report.figures import (
    AGGREGATES_PNG,
    CURVES_PNG,
    IMPROVEMENT_PNG,
    PALETTE_ORDER,
    PROFILES_PNG,
    SENSITIVITY_PNG,
)
from experiments.report.tables import (
    BASELINE,
    EPISODE_METRICS,
    METRIC_NAMES,
    REFERENCE_COLUMNS,
    RUN_KEYS,
    final_scores,
    load_table,
    ordered_labels,
    run_policies,
    score_label,
    score_matrices,
)
from experiments.report.write import REPORT_FILE, write_report

__all__ = [
    "AGGREGATES",
    "AGGREGATES_PNG",
    "BASELINE",
    "CURVES_PNG",
    "CURVE_METRICS",
    "CURVE_POINTS",
    "EPISODE_METRICS",
    "IMPROVEMENT_PNG",
    "METRIC_NAMES",
    "PALETTE_ORDER",
    "PROFILES_PNG",
    "REFERENCE_COLUMNS",
    "REPORT_FILE",
    "RUN_KEYS",
    "SENSITIVITY_PNG",
    "aggregate_estimates",
    "curve_metric",
    "curves",
    "final_scores",
    "improvement_estimates",
    "interval_estimates",
    "load_table",
    "ordered_labels",
    "profile_estimates",
    "run_policies",
    "score_label",
    "score_matrices",
    "write_report",
]
