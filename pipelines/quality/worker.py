"""Validation in a worker process, so the quality gate runs beside ingest instead of inside it.

Great Expectations costs seconds of one core to import in each process, and validating a
delivery is pure Python and pandas work that holds the GIL. Ingest therefore hands each
decrypted delivery (its Parquet bytes, through a pipe: never to disk) to one worker process and, while it
is validated there, decrypts and checks the next file on the other core. The worker is started
(and imports Great Expectations) before Dagster loads its definitions in a headless run
(:func:`pipelines.orchestration.run.run_pipeline`), otherwise when ingest begins, before the first file is
opened; it is kept for the life of the process, so a second run in the same process starts warm.

The worker imports Great Expectations lean (:func:`_lean_imports`): the modules GX loads at
start-up only for Spark and SQL sources and for one expectation placelink never runs are left
out or deferred, which halves the import (~4 s to ~2 s of one core here, docs/quality.md).

Verdicts are the same as validating in the process itself: the worker calls the function it is
given, :func:`pipelines.quality.validate.validate_delivery` (which imports this module, so this
module does not import it back). If the worker cannot be started or dies,
validation falls back to this process (slower, never skipped) and says so in the log.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.machinery
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.util
import os
import sys
import threading
import time
import types
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.exchange.extract_file import dictionary_encoded_columns
from pipelines.governance.contracts import Contract

log = logging.getLogger(__name__)

# What validates one delivery: (rows, contract, dataset, file name, today, previous row count).
Validator = Callable[[pa.Table, Contract, str, str, dt.date, "int | None"], object]

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


# What Great Expectations imports at start-up that the worker never uses. It validates pandas
# frames only, so GX's Spark and SQL support is not needed: GX treats those libraries as
# optional and works without them when their import fails. scipy.stats (~1.2 s) and altair
# (~0.4 s) are imported by the KL-divergence expectation, which no contract uses; they are
# deferred, not removed, so if anything does read them they are imported then.
_LEFT_OUT = ("pyspark", "sqlalchemy")
_DEFERRED = ("scipy.stats", "altair")


class _Deferred(types.ModuleType):
    """Holds a module's place in ``sys.modules`` until an attribute of it is read, then
    imports the real module and answers from it. (``importlib.util.LazyLoader`` does not do
    this on Python 3.11: the import statement itself reads ``__spec__`` and loads the module.)"""

    def __getattr__(self, attribute: str):
        if (
            attribute.startswith("__") and attribute != "__path__"
        ):  # __path__: a submodule is imported
            raise AttributeError(attribute)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attribute)


def _exit_with_parent() -> None:
    """Runs first in the worker: end it the moment the process that started it ends.

    A ProcessPoolExecutor's worker waits for work for ever, so when ingest's process is killed
    (SIGKILL, the OOM killer: no clean-up runs) it would be left orphaned, holding memory and the
    killed run's output pipes. multiprocessing keeps a pipe from the parent open in every spawned
    child (``parent_process().sentinel``), which becomes readable when the parent dies, however it
    dies: a thread waits on it and exits the worker."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="placelink-exit-with-parent", daemon=True).start()


def _start_worker() -> None:
    _exit_with_parent()
    _lean_imports()


def _lean_imports() -> None:
    """Leave out and defer the modules above (not any already imported); runs first in the worker."""
    for name in _LEFT_OUT:
        sys.modules.setdefault(name, None)  # None in sys.modules: `import name` raises ImportError
    for name in _DEFERRED:
        if name not in sys.modules:
            stand_in = _Deferred(name)
            stand_in.__spec__ = importlib.machinery.ModuleSpec(name, None)
            sys.modules[name] = stand_in


def _warm_up() -> None:
    """Runs in the worker: import and set up Great Expectations once."""
    from pipelines.quality.gx_suite import _batch_definition

    _batch_definition()


class _Handed:
    """The decrypted Parquet handed to the worker, which takes it: the bytes are let go once the
    rows are read from them, while the call that carried them is still held by the worker's pool
    (at 10M people the largest delivery is 2 GB of Parquet)."""

    def __init__(self, data: bytes) -> None:
        self.data: bytes | None = data

    def take(self) -> bytes:
        data, self.data = self.data, None
        return data


def _validate(
    validate: Validator,
    rows: pa.Table | bytes | _Handed,
    contract: Contract,
    dataset: str,
    file_name: str,
    today: dt.date,
    previous_rows: int | None,
):
    if isinstance(rows, _Handed):
        rows = rows.take()
    if isinstance(rows, bytes):  # the decrypted Parquet, read as ingest reads it
        parquet = pq.ParquetFile(pa.BufferReader(rows))
        encoded = dictionary_encoded_columns(parquet.metadata, parquet.schema_arrow)
        rows = pq.ParquetFile(
            pa.BufferReader(rows), metadata=parquet.metadata, read_dictionary=encoded
        ).read()
        rows = rows.replace_schema_metadata(None)
        del parquet
    return validate(rows, contract, dataset, file_name, today, previous_rows)


def _shutdown(wait: bool = False) -> None:
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=wait, cancel_futures=True)


def stop() -> None:
    """Stop the worker and wait for it to exit (the next delivery starts a new one)."""
    _shutdown(wait=True)


def _worker() -> ProcessPoolExecutor | None:
    """The worker process, started (and warming up) on first use; None if it cannot start."""
    global _pool
    with _lock:
        if _pool is None:
            try:
                # spawn, not fork: ingest's process runs DuckDB and Dagster threads.
                _pool = ProcessPoolExecutor(
                    1, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker
                )
                _pool.submit(_warm_up)
                # Stop it when this process exits. A multiprocessing finalizer, not atexit: when
                # ingest runs in a multiprocessing child (Dagster's multiprocess executor, the
                # benchmarks), the child skips atexit and joins its children first, so the worker
                # would wait for work forever. Registered here, not at import: a spawned child
                # imports modules before it starts, and then clears the finalizers. Priority 100
                # runs it before the pool's own queues stop (priority 10), which it still needs.
                multiprocessing.util.Finalize(
                    _pool, _shutdown, kwargs={"wait": True}, exitpriority=100
                )
            except (OSError, RuntimeError) as exc:
                log.warning(
                    "quality checks run in the ingest process: no worker process (%s)",
                    type(exc).__name__,
                )
                return None
        return _pool


def start() -> None:
    """Start the worker (if it is not running) so it imports Great Expectations now."""
    _worker()


class PendingVerdict:
    """A delivery being validated; :meth:`result` waits for its verdict."""

    def __init__(self, future: Future | None, inline: tuple) -> None:
        self._future, self._inline = future, inline
        self.waited = 0.0  # seconds the caller spent waiting in result()

    def done(self) -> bool:
        """Whether the verdict is ready (validating here happens in result(): always ready)."""
        return self._future is None or self._future.done()

    def result(self):
        started = time.perf_counter()
        try:
            if self._future is not None:
                try:
                    return self._future.result()
                except BrokenProcessPool:
                    log.warning(
                        "the quality worker process stopped; validating in the ingest process"
                    )
                    _shutdown()
            return _validate(*self._inline)
        finally:
            self.waited = time.perf_counter() - started


def submit(
    validate: Validator,
    table: pa.Table | None,
    contract: Contract,
    dataset: str,
    file_name: str,
    today: dt.date,
    previous_rows: int | None,
    parquet: bytes | None = None,
) -> PendingVerdict:
    """Validate one delivery in the worker with ``validate`` (a module-level function, so that it
    is sent to the worker by name); the verdict (or the ``ExtractRejected`` raised for
    a contract rule placelink cannot run) comes from :meth:`PendingVerdict.result`.

    ``parquet``, the decrypted extract the table was read from, is what goes to the worker when
    given: a fraction of the decoded table's size (token columns repeat, and Parquet stores each
    distinct value once), so neither process holds a pickled copy of the table. At 1M people
    the largest delivery is 82 MB of Parquet and 1.26 GB of Arrow.
    """
    # The Parquet bytes are also what this process validates if the worker cannot: read as
    # the worker reads them, so the verdict is the same either way.
    rows = table if parquet is None else _Handed(parquet)
    arguments = (validate, rows, contract, dataset, file_name, today, previous_rows)
    pool = _worker()
    if pool is None:
        return PendingVerdict(None, arguments)
    try:
        return PendingVerdict(pool.submit(_validate, *arguments), arguments)
    except (BrokenProcessPool, RuntimeError):
        _shutdown()
        return PendingVerdict(None, arguments)
