"""Progress of long work, for a person watching a command: bars on a terminal, plain lines otherwise.

Library code marks long work with ``task = progress.task("ingest: deliveries", total=7,
unit="files")`` and ``task.advance()``; every outermost :func:`pipelines.core.stages.stage` (ingest,
linkage, SQL models...; with the stage running inside it) and every step of the partner kit is shown as a step of its own.
Nothing is shown unless a command turns it on with :func:`showing` (``placelink run``,
``placelink partner prepare``, ``placelink bench stages``), so tests, the Dagster UI and library
callers see nothing, and each mark costs a function call.

On a terminal, ``rich`` draws the bars on standard error. Elsewhere (CI, a log file, a pipe) a
plain line lists the work still running once every ``interval`` seconds (30 by default): a
quick run prints nothing, a long one a line every half-minute, never one per file or row, and
standard output stays as it was for whatever reads it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

INTERVAL = 30.0  # seconds between plain lines when standard error is not a terminal

_reporter: Reporter | None = None


@dataclass
class Task:
    """One piece of long work being shown; ``total`` None for work whose size is not known."""

    description: str
    total: int | None
    unit: str
    started: float
    completed: int = 0
    finished: bool = False
    _reporter: Reporter | None = field(default=None, repr=False)
    _bar: int | None = field(default=None, repr=False)

    def advance(self, n: int = 1) -> None:
        self.completed += n
        if self._reporter is not None:
            self._reporter.changed(self)

    def done(self) -> None:
        if self.total is not None:
            self.completed = self.total
        self.finished = True
        if self._reporter is not None:
            self._reporter.changed(self)

    def line(self, now: float) -> str:
        elapsed = f"{now - self.started:,.0f} s"
        if self.total is None:
            return f"{self.description}: running for {elapsed}"
        share = f" ({100 * self.completed / self.total:.0f}%)" if self.total else ""
        return f"{self.description}: {self.completed:,} of {self.total:,} {self.unit}{share} after {elapsed}"


class _Unshown(Task):
    """What :func:`task` hands back when nothing is shown: every call does nothing."""

    def __init__(self) -> None:
        super().__init__("", None, "", 0.0)

    def advance(self, n: int = 1) -> None:
        pass

    def done(self) -> None:
        pass


_UNSHOWN = _Unshown()


class Reporter:
    """Shows the open tasks on ``stream``: a rich live display if ``terminal``, else :meth:`tick`
    writes one plain line of every unfinished task once ``interval`` seconds have passed since
    the last (a background thread calls it unless ``background`` is false, as in tests)."""

    def __init__(
        self,
        stream: IO[str],
        terminal: bool,
        interval: float = INTERVAL,
        timer: Callable[[], float] = time.monotonic,
        background: bool = True,
    ) -> None:
        self.stream, self.terminal, self.interval, self.timer = stream, terminal, interval, timer
        self.tasks: list[Task] = []
        self._last = timer()
        self._open: list[str] = []  # stages open now, outermost first: one task shows them
        self._stages: list[Task] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = None
        if terminal:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            # Two refreshes a second: the display's thread must not take the work's time.
            self._live = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(file=stream),
                refresh_per_second=2,
            )
        elif background:
            self._thread = threading.Thread(target=self._tick_until_stopped, daemon=True)

    def __enter__(self) -> Reporter:
        if self._live is not None:
            self._live.start()
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._live is not None:
            self._live.stop()

    def task(self, description: str, total: int | None, unit: str = "") -> Task:
        task = Task(description, total, unit, self.timer(), _reporter=self)
        with self._lock:
            self.tasks.append(task)
        if self._live is not None:
            task._bar = self._live.add_task(description, total=total)
        return task

    def changed(self, task: Task) -> None:
        if self._live is not None and task._bar is not None:
            self._live.update(task._bar, completed=task.completed)
            if task.finished and task.total is None:
                self._live.update(task._bar, total=1, completed=1)
        if task.finished:
            with self._lock:
                if task in self.tasks:
                    self.tasks.remove(task)

    def stage_started(self, name: str) -> None:
        self._open.append(name)
        if len(self._open) == 1:
            self._stages.append(self.task(name, None))
        else:
            self._describe()

    def stage_finished(self) -> None:
        self._open.pop()
        if not self._open and self._stages:
            self._stages.pop().done()
        elif self._open:
            self._describe()

    def _describe(self) -> None:
        """The outermost stage's task names the stage running inside it now (training runs
        inside "linkage: person keys and QA", the quality gate inside ingest)."""
        if not self._stages:
            return
        shown = self._stages[-1]
        shown.description = self._open[0] + ("" if len(self._open) == 1 else f" › {self._open[-1]}")
        if self._live is not None and shown._bar is not None:
            self._live.update(shown._bar, description=shown.description)

    def tick(self) -> str | None:
        """Write (and return) the line of unfinished tasks if ``interval`` has passed since the last."""
        now = self.timer()
        if self.terminal or now - self._last < self.interval:
            return None
        self._last = now
        with self._lock:
            open_tasks = [t for t in self.tasks if not t.finished]
        if not open_tasks:
            return None
        text = "progress: " + "; ".join(t.line(now) for t in open_tasks)
        print(text, file=self.stream, flush=True)
        return text

    def _tick_until_stopped(self) -> None:
        while not self._stop.wait(min(self.interval, 1.0)):
            self.tick()


@contextmanager
def showing(stream: IO[str] | None = None, interval: float = INTERVAL) -> Iterator[Reporter]:
    """Show progress of the work inside the block on ``stream`` (standard error): bars if it is a
    terminal, a plain line every ``interval`` seconds if not."""
    global _reporter
    stream = stream or sys.stderr
    terminal = hasattr(stream, "isatty") and stream.isatty()
    with Reporter(stream, terminal, interval) as reporter:
        before, _reporter = _reporter, reporter
        try:
            yield reporter
        finally:
            _reporter = before


def task(description: str, total: int | None, unit: str = "") -> Task:
    """A task to advance as work is done; shown only inside :func:`showing`."""
    return _UNSHOWN if _reporter is None else _reporter.task(description, total, unit)


def stage_started(name: str) -> None:
    if _reporter is not None:
        _reporter.stage_started(name)


def stage_finished() -> None:
    if _reporter is not None:
        _reporter.stage_finished()
