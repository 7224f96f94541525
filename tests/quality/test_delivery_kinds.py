"""The row-count rule compares a delivery with the previous accepted one of the same kind: a
20-row monthly delta after a full snapshot lands, a delta ten times the last delta is held, and a
full snapshot is still compared with the last full snapshot (issue 21)."""

import datetime as dt
import json

from pipelines.governance.audit import AuditLog
from tests.quality.receiving import receive_then_read

DAY = dt.datetime(2026, 11, 2, 6, 0, tzinfo=dt.UTC)


def _as(kind: str, rows: slice):
    def mutate(table):
        table = table.slice(rows.start or 0, (rows.stop or table.num_rows) - (rows.start or 0))
        metadata = dict(table.schema.metadata or {})
        header = json.loads(metadata[b"placelink"])
        metadata[b"placelink"] = json.dumps(
            {**header, "delivery_kind": kind, "row_count": table.num_rows}
        ).encode()
        return table.replace_schema_metadata(metadata)

    return mutate


def _receive(settings, now):
    return receive_then_read(
        settings,
        now,
        lambda con: dict(
            con.execute("SELECT file_name, delivery_kind FROM hub.deliveries").fetchall()
        ),
    )


def test_each_delivery_is_compared_with_the_previous_one_of_its_kind(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path / "hub", datasets=[])
    total = small_place.extract("ae_attendances").rows_out
    steps = [
        ("1-full.plx", "full", slice(0, total)),
        ("2-delta.plx", "delta", slice(0, 20)),
        ("3-delta.plx", "delta", slice(100, 300)),
        ("4-full.plx", "full", slice(5, total)),
    ]
    outcomes, kinds = {}, {}
    for day, (name, kind, rows) in enumerate(steps):
        small_place.reseal("ae_attendances", settings.inbox / name, mutate_table=_as(kind, rows))
        received, kinds = _receive(settings, DAY + dt.timedelta(days=30 * day))
        outcomes |= received
    assert outcomes["1-full.plx"].status == "accepted"
    assert (
        outcomes["2-delta.plx"].status == "accepted"
    )  # first delta: nothing of its kind to compare with
    held = outcomes["3-delta.plx"]
    assert held.status == "quarantined" and held.check == "quality"
    assert "row count: close to the previous delivery" in held.reason
    assert (
        "between 10 and 40 rows" in held.reason
        and "previous accepted delivery of 20 rows" in held.reason
    )
    assert outcomes["4-full.plx"].status == "accepted"  # within the band of the first full snapshot
    assert kinds == {
        "1-full.plx": "full",
        "2-delta.plx": "delta",
        "3-delta.plx": None,
        "4-full.plx": "full",
    }
    accepted = [
        e for e in AuditLog(settings.audit_dir).events() if e["event"] == "extract_accepted"
    ]
    assert [(e["delivery_kind"], e["reporting_period"]) for e in accepted] == [
        ("full", "2026-10"),
        ("delta", "2026-10"),
        ("full", "2026-10"),
    ]
