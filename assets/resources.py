"""The resource every asset takes: the hub's :class:`~pipelines.core.settings.Settings`, and what the
assets open with them (the warehouse, the audit log, the contracts).

The code location gives it the settings it was built with (``placelink_definitions(settings)``,
pipelines/orchestration/definitions.py), so a run reads the home, contracts and clock its graph
was made from, never the process's environment. Only one built without settings (a test's
``dg.materialize``, a script) reads the environment, as :meth:`Settings.from_env` does, with its
fields over it.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from pipelines.core.run_lock import RunLockBusy, run_lock
from pipelines.core.settings import Settings
from pipelines.core.stages import stage
from pipelines.core.warehouse import (
    WAREHOUSE_CLOSE,
    connect,
    database_error_action,
    describe_database_error,
)
from pipelines.governance.approvals import load_hub_contracts
from pipelines.governance.audit import AuditLog, hub_audit_log, run_actor
from pipelines.governance.contracts import Contract, ContractError


@contextmanager
def dagster_run_lock(settings: Settings, run_id: str, log) -> Iterator[None]:
    """The hub's run lock for Dagster run ``run_id``, waiting up to the settings' wait and saying so
    in ``log``; a run that cannot have it fails with the holder named (pipelines/core/run_lock.py).
    The resource takes it in each process that executes steps, the executor in the run's own."""

    def waiting(holder) -> None:
        log.warning(
            f"waiting for the hub's run lock: {holder.describe() if holder else 'another run'} "
            f"holds it (up to {settings.run_lock_wait_seconds:.0f} s)"
        )

    try:
        with run_lock(
            settings.home,
            "dagster run",
            run_id=run_id,
            wait=settings.run_lock_wait_seconds,
            on_wait=waiting,
        ):
            yield
    except RunLockBusy as exc:
        raise dg.Failure(description=str(exc)) from None


class PlacelinkResource(dg.ConfigurableResource):
    """Where the hub keeps its files and how it runs: ``hub`` (the settings the code location was
    built with) if given, else the environment's, with the fields below in place of theirs."""

    # Not configuration: an object handed over whole (Dagster keeps it as a nested resource), so
    # secrets in it (the hub key's passphrase, SMTP password) never show as config in the UI.
    # (No `from __future__ import annotations` in this module: Dagster reads this annotation.)
    hub: dg.ResourceDependency[Settings | None] = None
    # Only without ``hub``: PLACELINK_HOME, PLACELINK_CONTRACTS and PLACELINK_AS_OF (an ISO date
    # or date-time, pipelines.core.clock) for this resource; empty: the environment's.
    home: str = ""
    contracts_dir: str = ""
    as_of: str = ""

    def settings(self) -> Settings:
        if self.hub is not None:
            return self.hub
        return Settings.from_env(
            home=self.home or None,
            contracts_dir=self.contracts_dir or None,
            as_of=self.as_of or None,
        )

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator["PlacelinkResource"]:
        """Hold the hub's run lock while this process executes the run's steps (pipelines/core/run_lock.py).

        Dagster builds resources once per process that executes steps: once for the whole run with
        the in-process executor (the default), so the lock covers the run from its first step to its
        last. A run launched while another holds the lock (``placelink run``, or a run the queue
        let through) waits for it, up to PLACELINK_RUN_LOCK_WAIT_SECONDS, instead of failing on the
        warehouse's lock in whichever step it reached; ``placelink run`` already holds it (re-entry)."""
        run = context.run
        if run is None:  # resources built outside a run (a test, a sensor): nothing to write
            yield self
            return
        with dagster_run_lock(self.settings(), run.run_id, context.log):
            yield self

    @contextmanager
    def warehouse(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The warehouse, open for one step. A DuckDB error inside becomes a :class:`dg.Failure`
        whose description is the database's message (values removed) and what to do, so the failed
        step in the UI says what went wrong instead of "Error occurred while executing op". The
        database's own exception is not chained: its message may quote a value, and Dagster would
        store it in the run's event log."""
        settings = self.settings()
        try:
            con = connect(settings)
        except duckdb.Error as exc:
            raise _failure(f"the warehouse {settings.warehouse} could not be opened", exc) from None
        try:
            yield con
        except duckdb.Error as exc:
            raise _failure("a warehouse query failed", exc) from None
        finally:
            # DuckDB checkpoints what the step wrote as it closes: 1.5 s after the person records
            # at 1M people, which the benchmark showed as Dagster's overhead (docs/benchmarks.md).
            with stage(WAREHOUSE_CLOSE):
                con.close()

    def audit(
        self, context: dg.OpExecutionContext | dg.AssetExecutionContext | None = None
    ) -> AuditLog:
        """The audit log; given the step's ``context``, every event names its Dagster run and who
        started it (a sensor, a schedule, or the user of the process)."""
        if context is None:
            return hub_audit_log(self.settings())
        return hub_audit_log(
            self.settings(), actor=run_actor(context.run.tags), run_id=context.run.run_id
        )

    def contracts(self) -> tuple[dict[str, Contract], dict[str, ContractError]]:
        """Valid contracts by id (signatures checked against the hub's approver registry), and
        the errors of invalid ones by the id they claim."""
        return load_hub_contracts(self.settings())


def _failure(what: str, exc: duckdb.Error) -> dg.Failure:
    return dg.Failure(
        description=f"{what}: {describe_database_error(exc)}. What to do: {database_error_action(exc)}",
        metadata={"error": type(exc).__name__},
    )
