"""How a study is launched (``StudyOptions``: the study flags of ``train.py``), and the check of those options."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from experiments.errors import UsageError
from experiments.study import tuning


@dataclass
class StudyOptions:
    """How a grid of runs is launched: its seeds, where it runs, where it is stored and how it is reported."""

    seeds: list[int] | None = field(
        default=None,
        metadata={"help": "N: seeds 0..N-1; several values: these seeds (replaces --seed); more than one run makes a study"},
    )
    study: str | None = field(
        default=None, metadata={"help": "study name, stored in <log-folder>/studies/NAME; default: derived from the grid"}
    )
    workers: int = field(
        default=os.cpu_count() or 1,
        metadata={"help": "worker processes of the local Dask cluster (one thread each); ignored with --cluster"},
    )
    cluster: str | None = field(
        default=None,
        metadata={"help": "address of a running Dask scheduler (tcp://HOST:PORT) to run the study on; default: a local one"},
    )
    retries: int = field(default=1, metadata={"help": "how many times a run that raised is tried again"})
    no_report: bool = field(default=False, metadata={"help": "do not write the report at the end of a study"})
    reps: int = field(default=2000, metadata={"help": "bootstrap replications of the report's confidence intervals"})
    tune: list[str] = field(
        default_factory=list,
        metadata={
            "help": "tune then test: KEY=V1,V2,... (values as YAML, e.g. learning_rate=1e-4,3e-4,1e-3 optimizer=sgd,adam): "
            "every grid point runs on the tuning seeds for each (algo, env, policy, p), the best by --tune-metric is "
            "selected, and the final runs use it on the --seeds seeds; see experiments/study/tuning.py"
        },
    )
    tune_seeds: int = field(
        default=3,
        metadata={
            "help": f"tuning seeds per grid point: {tuning.TUNING_SEED_BASE}, {tuning.TUNING_SEED_BASE + 1}, ... (final "
            f"seeds stay below {tuning.TUNING_SEED_BASE}, so the two never overlap)"
        },
    )
    tune_metric: str = field(
        default="auc",
        metadata={
            "help": "what a grid point is scored by, as the IQM over its tuning runs: auc (area under the normalised "
            "evaluation curve) or final (final normalised score)"
        },
    )
    tune_across_envs: bool = field(
        default=False,
        metadata={
            "help": "select one setting per (algo, policy, p) for all envs, by the IQM of normalised scores over tuning "
            "seeds and envs (otherwise one selection per env)"
        },
    )


def check_options(options: StudyOptions) -> None:
    """:param options: study options; bad values raise ``UsageError``"""
    if options.workers < 1:
        raise UsageError(f"--workers must be >= 1 (got {options.workers})")
    if options.retries < 0:
        raise UsageError(f"--retries must be >= 0 (got {options.retries})")
    if options.reps < 10:
        raise UsageError(f"--reps must be >= 10 (got {options.reps}); 2000 is usual")
