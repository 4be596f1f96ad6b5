"""The Dask side of a study: the client (an existing scheduler, or a LocalCluster on 127.0.0.1), the hook each local
worker runs as it starts, and the warm-up that has every worker import the training code before the runs arrive."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Any

from experiments.errors import UsageError
from experiments.study.options import StudyOptions

#: Environment of local worker processes: one thread per run.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@contextlib.contextmanager
def dask_client(options: StudyOptions, n_runs: int) -> Iterator[Any]:
    """A Dask client: to the scheduler at ``options.cluster``, or to a new LocalCluster on 127.0.0.1.

    :param options: study options (``cluster``, ``workers``)
    :param n_runs: runs to execute (no more local workers are started)
    """
    from distributed import Client, LocalCluster

    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    cluster = None
    try:
        if options.cluster:
            try:
                client = Client(options.cluster, timeout="20s")
            except (OSError, TimeoutError, ValueError) as err:
                raise UsageError(
                    f"cannot reach the Dask scheduler at {options.cluster} ({err}): start one with `dask scheduler` "
                    "or leave out --cluster"
                ) from None
        else:
            cluster = LocalCluster(
                n_workers=max(1, min(options.workers, n_runs)),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                # without a dashboard the scheduler still serves its HTTP routes, by default on port 8787: take any free one
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                silence_logs=logging.ERROR,
                env=WORKER_ENV,
                preload=[__name__],
            )
            client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    finally:
        quiet.setLevel(level)


def dask_setup(worker: Any) -> None:
    """Dask's preload hook, run in each local worker process as it starts: Ctrl-C in the terminal reaches the whole
    process group, and only the launching process should act on it (it cancels the runs and closes the cluster).

    :param worker: the Dask worker
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Cluster:
    """The Dask client of one launch, started on first need and shared by its studies (a tuning grid, its final runs)."""

    def __init__(self, options: StudyOptions, stack: contextlib.ExitStack) -> None:
        """:param options: where to run (``cluster``, ``workers``)
        :param stack: what closes the client (and a local cluster) at the latest"""
        self.options = options
        self.stack = stack.enter_context(contextlib.ExitStack())
        self._client: Any = None
        self._warm: list[Any] = []

    def start(self, n_runs: int) -> Any:
        """Connect (or start a local cluster), and have its workers import the training code.

        :param n_runs: runs to execute (no more local workers are started)
        :return: the client
        """
        if self._client is None:
            self._client = self.stack.enter_context(dask_client(self.options, max(n_runs, 1)))
            self._warm = warm_up(self._client)
        return self._client

    def close(self) -> None:
        """Close the client and a local cluster (a later ``start`` connects again)."""
        self._warm = []
        self._client = None
        self.stack.close()


def warm_up(client: Any) -> list[Any]:
    """Have every worker import the training code now (keep the returned futures until the runs are submitted).

    :param client: a Dask client
    :return: one future per worker
    """
    return [
        client.submit(import_training_code, workers=[address], allow_other_workers=False, pure=False)
        for address in client.scheduler_info()["workers"]
    ]


def import_training_code() -> bool:
    """Import what the first run of a process would otherwise import on the way: torch (with the ``torch._dynamo`` that
    its optimizers load lazily), TensorBoard's writer, SB3 and the runners.

    :return: True
    """
    import torch._dynamo  # noqa: F401
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    import experiments.run
    import experiments.sb3_run  # noqa: F401

    return experiments.run.ALGOS is not None
