"""What a study shows while it runs (``StudyProgress``: runs done, running and failed, and an ETA) and when it ends
(``summary_line``)."""

from __future__ import annotations

import time
from typing import IO, Any

from experiments.study.layout import FAILED_DIR
from experiments.study.spec import StudyOutcome


class StudyProgress:
    """Runs done / running / failed and an ETA: a live rich display on a terminal, one plain line per event otherwise."""

    def __init__(self, total: int, done: int, stream: IO[str], live: bool | None = None) -> None:
        """:param total: runs in the grid
        :param done: runs complete before this launch
        :param stream: where to write
        :param live: rich display (default: when ``stream`` is a terminal)"""
        self.total, self.done0, self.stream = total, done, stream
        self.start = time.perf_counter()
        self.live = stream.isatty() if live is None else live
        self._progress: Any = None
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(file=stream),
            )
            self._task = self._progress.add_task("", total=total, completed=done)
            self._progress.start()

    def update(self, done: int, running: int, failed: int) -> None:
        """:param done: complete runs of the grid
        :param running: runs executing now
        :param failed: runs that failed for good"""
        text = f"{done} done, {running} running, {failed} failed, ETA {self._eta(done + failed)}"
        if self._progress is not None:
            self._progress.update(self._task, completed=done + failed, description=text)
            return
        print(f"[{time.strftime('%H:%M:%S')}] {done + failed}/{self.total} runs: {text}", file=self.stream, flush=True)

    def _eta(self, finished: int) -> str:
        new = finished - self.done0
        if new <= 0:
            return "?"
        seconds = (time.perf_counter() - self.start) / new * (self.total - finished)
        return format_duration(seconds)

    def close(self) -> None:
        """Stop the live display."""
        if self._progress is not None:
            self._progress.stop()


def format_duration(seconds: float) -> str:
    """:param seconds: a duration
    :return: ``1h02m03s``, ``2m03s`` or ``3.4s``"""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{sec:02d}s" if hours else f"{minutes}m{sec:02d}s"


def summary_line(outcome: StudyOutcome) -> str:
    """:param outcome: a finished (or interrupted) study
    :return: one line: runs complete and failed (of the tuning grid, then the final runs, for a tuned study), time,
        and where the report (or the folder) is"""
    study = outcome.study
    grid = outcome.tuning
    if grid is None:
        text = f"study {study.name}: {_counts(outcome)}"
    elif outcome.selected is None:
        text = f"study {study.name}: tuning {_counts(grid)}; the final runs start once every tuning run is complete"
    else:
        text = f"study {study.name}: tuning {_counts(grid)}; selected: {outcome.selected}; final {_counts(outcome)}"
    text += f", {format_duration(outcome.wall_time)}"
    if outcome.interrupted:
        return f"{text}; interrupted: run the same command again to resume ({study.folder})"
    failed = grid if grid is not None and grid.failed else outcome
    if failed.failed:
        text += f"; errors in {failed.study.folder / FAILED_DIR}"
    where = outcome.report if outcome.report is not None else study.folder
    return f"{text}; report: {where}" if outcome.report is not None else f"{text}; folder: {where}"


def _counts(outcome: StudyOutcome) -> str:
    return (
        f"{outcome.n_complete}/{len(outcome.study.configs)} runs complete ({len(outcome.completed)} new, "
        f"{outcome.skipped} already done), {len(outcome.failed)} failed"
    )
