"""The quality gate at ingest: bad deliveries are held with a message naming the delivery and
the rule; the other partners' deliveries land."""

import datetime as dt
import json

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipelines.governance.audit import AuditLog
from pipelines.quality.validate import validate_delivery
from tests.quality.receiving import receive_then_read

NOW = dt.datetime(2026, 11, 2, 6, 0, tzinfo=dt.UTC)
OTHER = "family_support_enrolments"  # another partner's delivery that must flow on


def _receive(settings, now=NOW):
    def read(con):
        landed = {
            name: con.execute(f"SELECT count(*) FROM landing.{name}").fetchone()[0]
            for name in ("ae_attendances", OTHER)
        }
        quality = con.execute("SELECT file_name, outcome FROM hub.quality_deliveries").fetchall()
        return landed, dict(quality)

    receipts, (landed, quality) = receive_then_read(settings, now, read)
    return receipts, landed, quality


def _write(place, target, mutate_table=None):
    """A delivery of A&E rows changed as a faulty partner system might, sealed as the partner would
    (the header stays consistent with the rows; every envelope has a new id)."""
    return place.reseal("ae_attendances", target, mutate_table=mutate_table)


def _set(table, column, values):
    index = table.schema.get_field_index(column)
    return table.set_column(index, column, pa.array(values, table.schema.field(column).type))


def _all_null(column):
    return lambda t: _set(t, column, [None] * t.num_rows)


def _future_dates(t):
    dates = t.column("arrival_date").to_pylist()
    return _set(t, "arrival_date", [dt.date(2027, 6, 1)] * 3 + dates[3:])


def _dates_beyond_nanoseconds(t):
    # 9999-12-31 as "not known", and year 1: outside what pandas holds in nanoseconds
    dates = t.column("arrival_date").to_pylist()
    dates[1], dates[3] = dt.date(9999, 12, 31), dt.date(1, 1, 1)
    return _set(t, "arrival_date", dates)


def _unknown_category(t):
    modes = t.column("arrival_mode").to_pylist()
    modes[4] = "helicopter"
    return _set(t, "arrival_mode", modes)


def _duplicated_tokens(t):
    tokens = t.column("record_token").to_pylist()
    tokens[1] = tokens[0]
    tokens[7] = tokens[6]
    return _set(t, "record_token", tokens)


@pytest.mark.parametrize(
    "mutate, rule, rows",
    [
        (
            _all_null("arrival_date"),
            "columns: no required column entirely empty",
            "found 1 column(s): arrival_date;",
        ),
        (_future_dates, "arrival_date: plausible date", "rows 1, 2, 3)"),
        (
            _dates_beyond_nanoseconds,
            "arrival_date: plausible date",
            "2 of 300 rows fail (rows 2, 4)",
        ),
        (_unknown_category, "arrival_mode: allowed values", "rows 5)"),
        (_duplicated_tokens, "record_token: unique", "4 of "),
    ],
)
def test_bad_delivery_is_held_by_the_right_rule_and_others_land(
    small_place, tmp_path, mutate, rule, rows
):
    settings = small_place.stage_hub(tmp_path, datasets=[OTHER])
    bad = _write(
        small_place, settings.inbox / "nhs-ae-bad.plx", lambda t: mutate(t.slice(0, 300))
    )  # a small delivery keeps the test quick
    receipts, landed, quality = _receive(settings)

    receipt = receipts[bad.name]
    assert receipt.status == "quarantined"
    assert "nhs-ae-bad.plx" in receipt.reason and "nhs-acute-mental-health" in receipt.reason
    assert "check 'quality' failed" in receipt.reason and rule in receipt.reason
    if rows:
        assert rows in receipt.reason
    held = json.loads((settings.quarantine / "nhs-ae-bad.plx.reason.json").read_text())
    assert held["check"] == "quality" and rule in held["found"]
    assert landed == {"ae_attendances": 0, OTHER: small_place.extract(OTHER).rows_out}
    assert quality == {
        "nhs-ae-bad.plx": "held",
        small_place.envelope(OTHER).envelope_path.name: "passed",
    }
    quarantined = [
        e for e in AuditLog(settings.audit_dir).events() if e["event"] == "extract_quarantined"
    ]
    assert [e["check"] for e in quarantined] == ["quality"]


def test_delivery_a_tenth_of_the_last_is_held(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path, datasets=["ae_attendances"])
    _receive(settings)
    small = _write(
        small_place, settings.inbox / "nhs-ae-small.plx", lambda t: t.slice(0, t.num_rows // 10)
    )
    receipts, landed, quality = _receive(settings, now=NOW + dt.timedelta(days=30))
    reason = receipts[small.name].reason
    assert receipts[small.name].status == "quarantined"
    assert "row count: close to the previous delivery" in reason
    assert (
        f"previous accepted delivery of {small_place.extract('ae_attendances').rows_out:,} rows"
        in reason
    )
    assert (
        landed["ae_attendances"] == small_place.extract("ae_attendances").rows_out
    )  # earlier rows stay
    assert quality[small.name] == "held"


def _text_dates(t):
    dates = pc.strftime(t.column("arrival_date"), format="%Y-%m-%d")
    return t.set_column(t.schema.get_field_index("arrival_date"), "arrival_date", dates)


def test_text_where_a_date_is_expected_is_caught(small_place, tmp_path):
    # At ingest the contract's type check holds it first; the quality suite names it too
    # when run on its own (e.g. on a decrypted table from another front door).
    table = _text_dates(pq.read_table(small_place.extract("ae_attendances").extract_path))
    contract = small_place.contracts["nhs-acute-mental-health"]
    verdict = validate_delivery(
        table, contract, "ae_attendances", "nhs-ae-text-dates.parquet", NOW.date()
    )
    assert verdict.outcome == "held"
    failed = {r.rule.name for r in verdict.failed_errors}
    assert "arrival_date: type date" in failed
    assert (
        "nhs-ae-text-dates.parquet" in verdict.message()
        and "arrival_date: type date" in verdict.message()
    )
    assert not any(
        value in verdict.message() for value in table.column("arrival_date").to_pylist()[:50]
    )

    settings = small_place.stage_hub(tmp_path, datasets=[OTHER])
    _write(small_place, settings.inbox / "nhs-ae-text.plx", _text_dates)
    receipts, landed, _ = _receive(settings)
    assert (
        receipts["nhs-ae-text.plx"].status == "quarantined"
        and "'types'" in receipts["nhs-ae-text.plx"].reason
    )
    assert landed[OTHER] == small_place.extract(OTHER).rows_out


@pytest.mark.parametrize(
    "column, spoil, rule",
    [
        # 32 hex characters and a newline is not a token (a regex ending in $ would let it pass).
        ("postcode_token", lambda token: token + "\n", "postcode_token: token format"),
        ("given_name_bloom", lambda bloom: bloom[:31], "given_name_bloom: 32-byte Bloom filter"),
    ],
)
def test_one_malformed_value_is_held_with_its_rule_and_row(small_place, column, spoil, rule):
    table = pq.read_table(small_place.extract("ae_attendances").extract_path)
    values = table.column(column).to_pylist()
    row = next(i for i, v in enumerate(values) if v)
    values[row] = spoil(values[row])
    verdict = validate_delivery(
        _set(table, column, values),
        small_place.contracts["nhs-acute-mental-health"],
        "ae_attendances",
        "nhs-ae-malformed.parquet",
        NOW.date(),
    )
    assert verdict.outcome == "held"
    assert [r.rule.name for r in verdict.failed] == [rule]
    assert f"{rule}: 1 of {table.num_rows:,} rows fail (rows {row + 1})" in verdict.message()


def test_warning_rules_land_the_delivery_and_are_recorded(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path, datasets=[])

    def odd_sex(t):
        sexes = t.column("sex").to_pylist()
        sexes[2] = "X"
        return _set(t, "sex", sexes)

    _write(small_place, settings.inbox / "nhs-ae-odd.plx", odd_sex)
    receipts, landed, quality = _receive(settings)
    assert receipts["nhs-ae-odd.plx"].status == "accepted"
    assert landed["ae_attendances"] == small_place.extract("ae_attendances").rows_out
    assert quality == {"nhs-ae-odd.plx": "warned"}
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    failed = con.execute(
        "SELECT rule, severity, unexpected_count, sample_rows FROM hub.quality_results "
        "WHERE NOT passed"
    ).fetchall()
    con.close()
    assert failed == [("sex: recorded sex code", "warn", 1, "[3]")]


def test_a_partner_without_nhs_numbers_or_sex_lands_with_a_warning_naming_the_columns(
    small_place, tmp_path
):
    # Optional items (required: false) that this partner does not hold arrive entirely empty.
    settings = small_place.stage_hub(tmp_path, datasets=[])

    def no_nhs_number_or_sex(t):
        return _all_null("sex")(_all_null("nhs_number_token")(t))

    _write(small_place, settings.inbox / "nhs-ae-partial.plx", no_nhs_number_or_sex)
    receipts, landed, quality = _receive(settings)
    assert receipts["nhs-ae-partial.plx"].status == "accepted", receipts[
        "nhs-ae-partial.plx"
    ].reason
    assert landed["ae_attendances"] == small_place.extract("ae_attendances").rows_out
    assert quality == {"nhs-ae-partial.plx": "warned"}
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    failed = con.execute(
        "SELECT rule, severity, observed FROM hub.quality_results WHERE NOT passed"
    ).fetchall()
    con.close()
    assert failed == [
        ("columns: optional columns have values", "warn", "2 column(s): nhs_number_token, sex")
    ]


def test_a_delivery_with_no_identifier_at_all_is_held(small_place):
    table = pq.read_table(small_place.extract("ae_attendances").extract_path).slice(0, 50)
    contract = small_place.contracts["nhs-acute-mental-health"]
    for item in contract.datasets["ae_attendances"].items:
        if item.classification in ("token", "quasi_identifier") and item.name != "record_token":
            table = _all_null(item.name)(table)
    verdict = validate_delivery(
        table, contract, "ae_attendances", "nhs-ae-anonymous.parquet", NOW.date()
    )
    assert verdict.outcome == "held"
    assert [r.rule.name for r in verdict.failed_errors] == ["columns: some identifier has values"]
    assert "no value in any of these columns" in verdict.message()


def test_results_hold_row_numbers_never_values(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path, datasets=[])
    _write(small_place, settings.inbox / "nhs-ae-dups.plx", _duplicated_tokens)
    _receive(settings)
    table = pq.read_table(small_place.extract("ae_attendances").extract_path)
    tokens = {
        v
        for c in table.column_names
        if c.endswith("_token")
        for v in table.column(c).slice(0, 10).to_pylist()
        if v
    }
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    stored = json.dumps(con.execute("SELECT * FROM hub.quality_results").fetchall(), default=str)
    con.close()
    written = (
        stored
        + (settings.audit_dir / "audit.jsonl").read_text()
        + "".join(p.read_text() for p in settings.quarantine.glob("*.json"))
    )
    assert "record_token: unique" in written
    assert not any(t in written for t in tokens)
