"""One typed place for configuration, read from the environment.

Everything the hub writes lives under ``PLACELINK_HOME`` (default ``./.placelink``).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pipelines.core.alerts import AlertSettings
from pipelines.core.clock import Clock, parse_as_of
from pipelines.core.faults import FAULT_VARIABLE, parse_fault

REPO_ROOT = Path(__file__).resolve().parents[2]
# Where Splink scores pairs and clusters them (README: Scaling out). Training is always DuckDB.
LINKAGE_BACKENDS = ("duckdb", "spark")
DEFAULT_MEMORY_LIMIT = "3GB"
MEMORY_LIMIT = re.compile(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


# Where the agreements are read from, first match wins (README "Data-sharing agreements").
CONTRACTS_PRECEDENCE = (
    "PLACELINK_CONTRACTS if set; else PLACELINK_HOME/contracts (the hub's own agreements, "
    "with partners' keys registered and approvers' signatures) if that folder exists; else "
    "the repository's contracts/ (unsigned templates)"
)


def contracts_location(env: os._Environ[str] | dict[str, str], home: Path) -> tuple[Path, str]:
    """The one folder of agreements the hub and every command read, and why that one."""
    if env.get("PLACELINK_CONTRACTS"):
        return Path(env["PLACELINK_CONTRACTS"]).expanduser().resolve(), "PLACELINK_CONTRACTS"
    registered = home / "contracts"
    if registered.is_dir():
        return registered.resolve(), "the hub's agreements, PLACELINK_HOME/contracts"
    return (REPO_ROOT / "contracts").resolve(), (
        "the repository's templates: PLACELINK_HOME/contracts does not exist yet"
    )


def _whole_days(text: str) -> int:
    try:
        return int(text.strip() or "0")
    except ValueError:
        raise ValueError(
            f"PLACELINK_QUARANTINE_KEEP_DAYS is {text!r}: give a whole number of days, "
            "e.g. 90, or 0 to keep held files until they are released"
        ) from None


@dataclass(frozen=True)
class Settings:
    """Paths and switches for one placelink installation."""

    home: Path
    contracts_dir: Path
    sql_dir: Path
    # Pairs at or above this Splink match probability join one person (README: linkage).
    linkage_threshold: float | None = None  # None: the model's calibrated threshold
    # Passphrase of the hub's decryption key, if it has one (PLACELINK_HUB_KEY_PASSPHRASE).
    hub_key_passphrase: bytes | None = None
    # The linkage QA check fails above these (docs/linkage.md, "Linkage QA").
    linkage_max_cluster_size: int = 40
    linkage_max_link_rate_change: float = 0.05
    # "duckdb" (one machine) or "spark": the same saved model scored by Splink's SparkAPI.
    linkage_backend: str = "duckdb"
    # Spark's master URL: local[*] runs Spark inside this process's machine; a cluster's URL
    # (spark://, yarn, k8s://) scales out.
    spark_master: str = "local[*]"
    # Splink writes intermediate tables here (parquet). A cluster needs a path every executor
    # can reach (hdfs://, s3a://); empty means PLACELINK_HOME/spark/checkpoints.
    spark_checkpoint_dir: str = ""
    # The most memory each DuckDB database of a run may use before it spills to
    # PLACELINK_HOME/duckdb_tmp. The warehouse and Splink's scratch database each get this much:
    # with 3GB, 1M people ran in 6.5 GB at peak, quality worker included (docs/benchmarks.md). "" gives DuckDB's own
    # default, 80% of the machine's RAM for each.
    duckdb_memory_limit: str = DEFAULT_MEMORY_LIMIT
    # The effects are re-estimated with persons linked at these thresholds too (a looser and a
    # stricter one), from the pairs scored at 0.5 and up (docs/outcomes.md: linkage sensitivity).
    linkage_sensitivity_thresholds: tuple[float, ...] = (0.5, 0.99)
    # Where every date a check uses and every time the hub records come from (PLACELINK_AS_OF).
    clock: Clock = Clock()
    # Where the demo keeps what only partners hold (raw extracts, the linkage key, signing keys,
    # record lookups, outboxes): outside the hub's home, as in a deployment. Empty means the
    # sibling folder "<home>-partners" (PLACELINK_DEMO_PARTNERS).
    demo_partners: Path | None = None
    # Why contracts_dir is the folder it is (CONTRACTS_PRECEDENCE).
    contracts_source: str = "given"
    # Where alerts go: a Slack-compatible webhook and/or e-mail (PLACELINK_ALERT_*; pipelines/core/alerts.py).
    alerts: AlertSettings = AlertSettings()
    # Held files (and their reasons) older than this many days are deleted from quarantine by the
    # nightly housekeeping, audited (PLACELINK_QUARANTINE_KEEP_DAYS; 0 keeps them for ever).
    quarantine_keep_days: int = 90
    # Dagster's instance folder (DAGSTER_HOME; dagster.yaml there says where runs are stored).
    # Empty: PLACELINK_HOME/dagster, the local instance `make ui` and `placelink run` share.
    dagster_home_override: str = ""
    # Free space a run needs on the home's file system before it starts (PLACELINK_MIN_FREE_DISK,
    # e.g. "5GB"; "0" skips the check; empty: twice the inbox and warehouse, pipelines/core/preflight.py).
    min_free_disk: str = ""
    # How long a run Dagster launched (UI, sensor, schedule) waits for another run holding the hub's
    # run lock before it fails saying so (PLACELINK_RUN_LOCK_WAIT_SECONDS; pipelines/core/run_lock.py).
    run_lock_wait_seconds: float = 6 * 3600
    # A fault hook for the lock's tests: a folder of two FIFOs, "locked" and "go"; a headless run
    # that took the lock says so in the first and waits for the second (pipelines/orchestration/run.py).
    fault_pause_after_run_lock: Path | None = None
    # A test hook: PLACELINK_FAULT=ingest:<step> kills the process at that step of ingest
    # (pipelines.core.faults.INGEST_STEPS). None in production.
    fault: str | None = None

    def __post_init__(self) -> None:
        if self.linkage_backend not in LINKAGE_BACKENDS:
            raise ValueError(
                f"PLACELINK_LINKAGE_BACKEND is {self.linkage_backend!r}: use 'duckdb' (one machine, the "
                "default) or 'spark' (Splink on a Spark cluster or local Spark; README: Scaling out)"
            )
        if self.duckdb_memory_limit and not MEMORY_LIMIT.fullmatch(self.duckdb_memory_limit):
            raise ValueError(
                f"PLACELINK_DUCKDB_MEMORY_LIMIT is {self.duckdb_memory_limit!r}: give a size such as '3GB' (the "
                "default) or '512MB', or set it empty for DuckDB's own default, 80% of this machine's memory"
            )
        if self.quarantine_keep_days < 0:
            raise ValueError(
                f"PLACELINK_QUARANTINE_KEEP_DAYS is {self.quarantine_keep_days}: give a number of "
                "days (90 by default), or 0 to keep held files until someone releases them"
            )
        if not self.spark_checkpoint_dir:
            object.__setattr__(self, "spark_checkpoint_dir", str(self.spark_dir / "checkpoints"))
        if self.demo_partners is None:
            object.__setattr__(
                self, "demo_partners", self.home.with_name(f"{self.home.name}-partners")
            )

    @classmethod
    def from_env(
        cls,
        environ: os._Environ[str] | dict[str, str] | None = None,
        *,
        home: str | Path | None = None,
        contracts_dir: str | Path | None = None,
        as_of: str | None = None,
    ) -> Settings:
        """The settings the environment gives (``environ``, default: this process's), with
        ``home``, ``contracts_dir`` and ``as_of`` (an ISO date or date-time), where given, in place
        of PLACELINK_HOME, PLACELINK_CONTRACTS and PLACELINK_AS_OF. Read once, when a process
        starts or a resource is built: nothing here writes the environment."""
        env = os.environ if environ is None else environ
        home = (
            Path(home or env.get("PLACELINK_HOME", Path.cwd() / ".placelink"))
            .expanduser()
            .resolve()
        )
        if contracts_dir:
            contracts_dir, contracts_source = Path(contracts_dir).expanduser().resolve(), "given"
        else:
            contracts_dir, contracts_source = contracts_location(env, home)
        return cls(
            home=home,
            contracts_dir=contracts_dir,
            contracts_source=contracts_source,
            sql_dir=Path(env.get("PLACELINK_SQL", REPO_ROOT / "dbt_like_sql")).resolve(),
            linkage_threshold=(
                float(env["PLACELINK_LINKAGE_THRESHOLD"])
                if env.get("PLACELINK_LINKAGE_THRESHOLD", "").strip()
                else None
            ),
            hub_key_passphrase=env.get("PLACELINK_HUB_KEY_PASSPHRASE", "").encode() or None,
            linkage_max_cluster_size=int(env.get("PLACELINK_LINKAGE_MAX_CLUSTER_SIZE", "40")),
            linkage_max_link_rate_change=float(
                env.get("PLACELINK_LINKAGE_MAX_LINK_RATE_CHANGE", "0.05")
            ),
            linkage_backend=env.get("PLACELINK_LINKAGE_BACKEND", "duckdb").strip().lower(),
            spark_master=env.get("PLACELINK_SPARK_MASTER", "local[*]"),
            spark_checkpoint_dir=env.get("PLACELINK_SPARK_CHECKPOINT_DIR", ""),
            duckdb_memory_limit=env.get(
                "PLACELINK_DUCKDB_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT
            ).strip(),
            linkage_sensitivity_thresholds=tuple(
                float(t)
                for t in env.get("PLACELINK_LINKAGE_SENSITIVITY_THRESHOLDS", "0.5,0.99").split(",")
                if t.strip()
            ),
            clock=Clock(parse_as_of(as_of)) if as_of else Clock.from_env(env),
            demo_partners=Path(env["PLACELINK_DEMO_PARTNERS"]).expanduser().resolve()
            if env.get("PLACELINK_DEMO_PARTNERS")
            else None,
            alerts=AlertSettings.from_env(env),
            quarantine_keep_days=_whole_days(env.get("PLACELINK_QUARANTINE_KEEP_DAYS", "90")),
            dagster_home_override=env.get("DAGSTER_HOME", "").strip(),
            min_free_disk=env.get("PLACELINK_MIN_FREE_DISK", "").strip(),
            run_lock_wait_seconds=float(
                env.get("PLACELINK_RUN_LOCK_WAIT_SECONDS", "").strip() or 6 * 3600
            ),
            fault_pause_after_run_lock=Path(env["PLACELINK_FAULT_PAUSE_AFTER_RUN_LOCK"])
            if env.get("PLACELINK_FAULT_PAUSE_AFTER_RUN_LOCK")
            else None,
            fault=parse_fault(env.get(FAULT_VARIABLE, "")),
        )

    def now(self) -> dt.datetime:
        """The hub's "now" (UTC): the calendar's unless PLACELINK_AS_OF moves it (pipelines.core.clock)."""
        return self.clock.now()

    def today(self) -> dt.date:
        return self.clock.today()

    @property
    def inbox(self) -> Path:
        return self.home / "inbox"

    @property
    def dagster_home(self) -> Path:
        """The Dagster instance's folder: DAGSTER_HOME if set (a deployment's, docs/deployment.md),
        else ``PLACELINK_HOME/dagster``."""
        return (
            Path(self.dagster_home_override)
            if self.dagster_home_override
            else self.home / "dagster"
        )

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def vault(self) -> Path:
        return self.home / "vault"

    @property
    def reference(self) -> Path:
        """Public reference data the hub may hold (LSOA -> ward, deprivation)."""
        return self.home / "reference"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def published(self) -> Path:
        return self.home / "published" / "shared_outcomes.duckdb"

    @property
    def audit_dir(self) -> Path:
        return self.home / "audit"

    @property
    def audit_head_path(self) -> Path:
        """The audit log's signed head (count and hash of its last event), kept apart from the log."""
        return self.home / "audit_head.json"

    @property
    def audit_key_path(self) -> Path:
        """The hub's Ed25519 key that signs the audit log's head (``audit.pub`` beside it)."""
        return self.keys / "audit.key"

    @property
    def approver_keys(self) -> Path:
        """The approvers' public keys the hub trusts, ``<fingerprint hex>.pub`` (pipelines.governance.approvals)."""
        return self.keys / "approvers"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def keys(self) -> Path:
        return self.home / "keys"

    @property
    def hub_key_path(self) -> Path:
        """The hub's HPKE decryption key (private, mode 0600); ``hub.pub`` beside it goes to partners."""
        return self.keys / "hub.key"

    @property
    def partner_keys(self) -> Path:
        """Partners' registered public signing keys, ``<fingerprint hex>.pub`` (see docs/envelope.md)."""
        return self.keys / "partners"

    @property
    def duckdb_temp(self) -> Path:
        # DuckDB spills large joins to ./.tmp by default; keep that under our home.
        return self.home / "duckdb_tmp"

    @property
    def spark_dir(self) -> Path:
        """Spark's scratch space on this machine: spill, temp files, its (unused) SQL warehouse."""
        return self.home / "spark"

    def ensure_dirs(self) -> None:
        for path in (
            self.inbox,
            self.quarantine,
            self.vault,
            self.reference,
            self.audit_dir,
            self.reports,
            self.models,
            self.keys,
            self.duckdb_temp,
            self.published.parent,
        ):
            path.mkdir(parents=True, exist_ok=True)
