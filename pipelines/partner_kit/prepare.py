"""Prepare one raw extract for the hub: minimise, apply opt-outs, normalise, tokenise.

``prepare_extract`` is what ``placelink partner prepare`` runs on the partner's own
machine. It writes three files:

* ``OUT/<stem>.parquet`` - the pseudonymised extract for the hub: exactly the
  contract's columns in the contract's order, with the JSON header in the Parquet
  metadata (see :mod:`pipelines.exchange.extract_file`);
* ``OUT/partner-only/<stem>.lookup.parquet`` - record_id -> record_token, so the
  partner alone can trace a hub query back to a source record. Never sent;
* ``OUT/partner-only/<stem>.report.json`` - counts only (rows in and out, opted-out
  rows, invalid and missing values per field), never values.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.core.clock import Clock
from pipelines.core.column_types import ARROW_TYPES
from pipelines.exchange.extract_file import (
    EXTRACT_SUFFIX,
    LOOKUP_SUFFIX,
    PARTNER_ONLY_DIR,
    PERIOD_PATTERN,
    REPORT_SUFFIX,
    ExtractHeader,
    extract_stem,
    write_extract,
)
from pipelines.governance.contracts import DELIVERY_KINDS, Contract, Dataset
from pipelines.partner_kit.errors import PartnerKitError
from pipelines.partner_kit.features import (
    AREA_FEATURES,
    IDENTITY_FEATURES,
    IdentityInputs,
    compute_identity_columns,
    contract_features,
)
from pipelines.partner_kit.mapping import ColumnMapping
from pipelines.partner_kit.normalise import suggest_date_formats
from pipelines.partner_kit.readers import (
    allowed_raw_columns,
    check_raw_columns,
    check_record_ids,
    parse_payload,
    read_opt_outs,
    read_postcode_lookup,
    read_raw_extract,
    used_raw_columns,
)
from pipelines.partner_kit.steps import step
from pipelines.partner_kit.tokens import LinkageKey


def _date_format_suggestions(
    raw: pl.DataFrame, spec: Dataset, invalid: dict[str, int]
) -> dict[str, list[str]]:
    """For each date column of the extract (date of birth, payload dates) of which most values
    could not be read, the common formats that read them (``suggest_date_formats``): what the
    contract should declare. Format names only, never a value."""
    dates = ["date_of_birth"] + [i.name for i in spec.items if i.logical_type == "date"]
    found = {}
    for column in dict.fromkeys(dates):
        if column not in raw.columns or not invalid.get(column):
            continue
        values = raw[column].cast(pl.String)
        present = values.str.strip_chars().replace("", None).drop_nulls().len()
        if 2 * invalid[column] > present and (formats := suggest_date_formats(values)):
            found[column] = formats
    return found


@dataclass(frozen=True)
class PreparedExtract:
    """Where the prepared files are, the header sent to the hub, and the counts report."""

    extract_path: Path
    lookup_path: Path
    report_path: Path
    header: ExtractHeader
    report: dict

    @property
    def rows_in(self) -> int:
        return self.report["rows_in"]

    @property
    def rows_out(self) -> int:
        return self.report["rows_out"]

    @property
    def opted_out_rows(self) -> int:
        return self.report["opted_out_rows"]


def _opt_out_list(contract: Contract, opt_outs: Path | None) -> pl.Series | None:
    """The opted-out NHS numbers if the contract says the opt-out applies, else None."""
    if not contract.terms.national_data_opt_out_applies:
        return None
    if opt_outs is None:
        raise PartnerKitError(
            f"contract {contract.label} says the National Data Opt-out applies: "
            "pass the current opt-out list with --opt-outs (a CSV with an nhs_number column)"
        )
    return read_opt_outs(Path(opt_outs))


def _remove_opted_out(raw: pl.DataFrame, opted_out: pl.Series | None) -> tuple[pl.DataFrame, int]:
    if opted_out is None or "nhs_number" not in raw.columns:
        return raw, 0
    # Match with spaces and dashes removed, so "943 476 5870" in the extract matches
    # 9434765870 in the list. The list holds only valid numbers, so an invalid one in
    # the extract cannot match and needs no check here.
    nhs = raw["nhs_number"].str.replace_all(r"[\s\-]", "")
    remove = nhs.is_in(opted_out.implode()).fill_null(False)
    return raw.filter(~remove), int(remove.sum())


def _arrow_table(columns: dict[str, pa.Array | pl.Series], order: tuple[str, ...]) -> pa.Table:
    arrays = []
    for name in order:
        column = columns[name]
        if isinstance(column, pl.Series):
            column = column.to_arrow().cast(ARROW_TYPES[column.dtype.base_type()])
        arrays.append(column)
    return pa.Table.from_arrays(arrays, names=list(order))


def _write_private(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    # Both columns are one value per row: a dictionary or min/max statistics only cost time.
    pq.write_table(table, tmp, compression="zstd", use_dictionary=False, write_statistics=False)
    os.chmod(tmp, 0o600)  # the lookup re-identifies tokens: owner-only
    os.replace(tmp, path)


def prepare_extract(
    contract: Contract,
    dataset: str,
    input_path: Path,
    out_dir: Path,
    linkage_key: LinkageKey | Path,
    postcode_lookup: Path | pl.DataFrame | None,
    opt_outs: Path | None = None,
    period: str | None = None,
    now: dt.datetime | None = None,
    mapping: ColumnMapping | Path | None = None,
    sheet: str | None = None,
    delivery_kind: str | None = None,
) -> PreparedExtract:
    """Turn a raw extract into the hub extract, the partner-only lookup and the counts report.

    The caller may rely on: the hub file holds exactly the contract's columns for
    ``dataset`` in the contract's order, typed (tokens text, Bloom filters binary,
    year_of_birth Int16, dates Date, integers Int32); rows of people with a National
    Data Opt-out are removed before anything is tokenised when the contract says the
    opt-out applies; unusable values are sent as null and counted, never fatal; a
    problem the partner must fix raises :class:`PartnerKitError` naming the file.

    ``period`` is the reporting period ``YYYY-MM`` (default: the month of ``now``);
    ``now`` (default: the current UTC time) also bounds plausible dates of birth.
    ``mapping`` (a :class:`ColumnMapping` or its file) renames the partner's own columns;
    ``sheet`` names the sheet of an .xlsx workbook (default: the mapping's, or the only one).
    Without ``postcode_lookup``, a contract's optional ``lsoa_code``/``ward_code`` are sent
    empty and the report says so; a contract that requires them needs the lookup.
    ``delivery_kind`` is ``full`` (a snapshot) or ``delta`` (new and changed records); by default
    what the contract's delivery term says for the dataset, else ``full``.
    """
    input_path, out_dir = Path(input_path), Path(out_dir)
    now = now or Clock.from_env().now()
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    now = now.astimezone(dt.UTC)
    period = period or now.strftime("%Y-%m")
    if not PERIOD_PATTERN.match(period):
        raise PartnerKitError(f"reporting period '{period}' is not YYYY-MM (e.g. 2026-10)")
    spec = contract.dataset(dataset)
    schedule = contract.delivery_schedule(dataset)
    delivery_kind = delivery_kind or (schedule.kind if schedule else "full")
    if delivery_kind not in DELIVERY_KINDS:
        raise PartnerKitError(
            f"delivery kind '{delivery_kind}' is not one of {', '.join(DELIVERY_KINDS)}"
        )
    with step("read"):
        opted_out = _opt_out_list(
            contract, opt_outs
        )  # before any work: a missing list stops the run
    key = linkage_key if isinstance(linkage_key, LinkageKey) else LinkageKey.load(linkage_key)
    features = contract_features(contract, spec)
    areas = [f.name for f in features if f.name in AREA_FEATURES]
    if isinstance(postcode_lookup, (str, Path)):
        with step("read"):
            lookup = read_postcode_lookup(Path(postcode_lookup)) if areas else None
    else:
        lookup = postcode_lookup
    required_areas = [name for name in areas if spec.item(name).required]
    if required_areas and lookup is None:
        raise PartnerKitError(
            f"contract {contract.label} requires {'/'.join(required_areas)} for dataset '{dataset}', "
            "which are looked up from the postcode: pass the postcode lookup file with "
            "--postcode-lookup (README: where to get ONS's postcode lookup)"
        )
    if isinstance(mapping, (str, Path)):
        mapping = ColumnMapping.load(Path(mapping))

    with step("read"):
        raw = read_raw_extract(input_path, sheet=sheet or (mapping.sheet if mapping else None))
        unusable: dict[str, int] = {}
        if mapping is not None:
            mapped = mapping.apply(
                raw,
                input_path,
                contract,
                spec,
                allowed_raw_columns(contract, spec),
                used_raw_columns(contract, spec),
            )
            raw, unusable = mapped.frame, mapped.unusable
        check_raw_columns(raw, input_path, contract, spec)
        check_record_ids(raw, input_path)
        rows_in = raw.height
        raw, opted_out_rows = _remove_opted_out(raw, opted_out)

    inputs = IdentityInputs(
        raw,
        partner_id=contract.partner_id,
        dataset=dataset,
        key=key,
        today=now.date(),
        postcode_lookup=lookup,
        date_formats=spec.date_formats,
        postcode_format=spec.postcode_format,
    )
    with step("assemble"):
        columns: dict[str, pa.Array | pl.Series] = dict(compute_identity_columns(features, inputs))
        payload = parse_payload(raw, contract, spec)
        columns.update(payload.columns)
        table = _arrow_table(columns, spec.columns)

    invalid = {field: n for field, n in inputs.invalid.items() if field != "record_id"}
    header = ExtractHeader(
        extract_id=uuid.uuid4().hex,
        contract_id=contract.id,
        contract_version=contract.version,
        partner_id=contract.partner_id,
        dataset=dataset,
        reporting_period=period,
        created_at=now.isoformat(timespec="seconds"),
        row_count=table.num_rows,
        invalid_counts={**invalid, **payload.invalid},
        opted_out_rows=opted_out_rows,
        delivery_kind=delivery_kind,
    )

    stem = extract_stem(contract.id, dataset, period, header.extract_id)
    private_dir = out_dir / PARTNER_ONLY_DIR
    private_dir.mkdir(parents=True, exist_ok=True)
    with step("write"):
        extract_path = write_extract(table, header, out_dir / f"{stem}{EXTRACT_SUFFIX}")

    lookup_path = private_dir / f"{stem}{LOOKUP_SUFFIX}"
    record_tokens = columns.get("record_token")
    if record_tokens is None:  # the lookup is the partner's way back, whatever the hub is sent
        with step("assemble"):
            record_tokens = IDENTITY_FEATURES["record_token"].arrow(inputs)
    with step("write"):
        _write_private(
            _arrow_table(
                {"record_id": inputs.record_id, "record_token": record_tokens},
                ("record_id", "record_token"),
            ),
            lookup_path,
        )

    report = {
        "extract_file": extract_path.name,
        "input_file": input_path.name,
        "contract_id": contract.id,
        "contract_version": contract.version,
        "partner_id": contract.partner_id,
        "dataset": dataset,
        "reporting_period": period,
        "delivery_kind": delivery_kind,
        "extract_id": header.extract_id,
        "created_at": header.created_at,
        "rows_in": rows_in,
        "opted_out_rows": opted_out_rows,
        "rows_out": table.num_rows,
        "national_data_opt_out_applied": contract.terms.national_data_opt_out_applies,
        "invalid_values": header.invalid_counts,
        "missing_values": {field: n for field, n in inputs.missing.items() if field != "record_id"},
        "postcodes_not_in_lookup": inputs.postcodes_not_in_lookup,
        "absent_identity_columns": [c for c in inputs.missing if c not in raw.columns],
        "columns_sent": list(spec.columns),
    }
    # Said only where it applies, so a report of an ordinary run keeps its fields.
    if areas and lookup is None:
        report["areas_not_looked_up"] = areas
    suggested = _date_format_suggestions(raw, spec, header.invalid_counts)
    if suggested:
        report["date_format_suggestions"] = suggested
    if "postcode" in inputs.missing and inputs.district_only_postcode_rows:
        report["postcode_district_only_rows"] = inputs.district_only_postcode_rows
    if "postcode" in inputs.missing and inputs.postcode_format_used == "any":
        report["postcode_format"] = {
            "format": "any",
            "declared": spec.postcode_format is not None,
            "other_country_rows": inputs.other_country_postcode_rows,
        }
    if mapping is not None:
        report["mapping_file"] = mapping.path.name
        report["mapping_unusable_values"] = unusable
    report_path = private_dir / f"{stem}{REPORT_SUFFIX}"
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return PreparedExtract(
        extract_path=extract_path,
        lookup_path=lookup_path,
        report_path=report_path,
        header=header,
        report=report,
    )
