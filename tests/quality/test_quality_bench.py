"""`placelink bench quality` splits a run's validation time the way its report says."""

import pytest

from pipelines.core.warehouse import connect
from pipelines.governance.approvals import load_hub_contracts
from pipelines.governance.audit import AuditLog
from pipelines.hub import ingest
from pipelines.linkage.person_keys import forget_identities
from pipelines.tooling.bench.quality import QualityRun, _without_gate


@pytest.mark.parametrize("one_off, per_delivery, per_100k", [(2.0, 0.05, 0.4), (0.0, 0.2, 1.5)])
def test_split_recovers_one_off_per_delivery_and_per_row_costs(one_off, per_delivery, per_100k):
    rows = [4_873, 2_228, 178_155, 137_986, 36_877, 12_118, 1_701]
    seconds = [per_delivery + r * per_100k / 100_000 for r in rows]
    seconds[0] += one_off  # the first delivery of a process imports Great Expectations
    run = QualityRun(
        hub_seconds=40.0, deliveries=tuple(zip(rows, seconds)), waited=(0.5, 0.25, 0.25)
    )
    assert run.split() == pytest.approx((one_off, per_delivery, per_100k))
    assert run.waited_share == pytest.approx(1.0 / 40.0)
    assert run.rows == sum(rows)


def test_the_baseline_without_a_gate_lands_every_delivery_and_records_an_empty_verdict(
    small_place, tmp_path, monkeypatch
):
    # _without_gate replaces ingest's functions for the rest of its process: put them back after.
    for name in ("start_quality_check", "finish_quality_check"):
        monkeypatch.setattr(ingest, name, getattr(ingest, name))
    monkeypatch.setattr(ingest.quality_worker, "start", ingest.quality_worker.start)
    _without_gate()
    settings = small_place.stage_hub(
        tmp_path, datasets=["ae_attendances", "family_support_enrolments"]
    )
    contracts, _ = load_hub_contracts(settings)
    con = connect(settings)
    try:
        receipts = ingest.receive_inbox(
            settings,
            con,
            contracts,
            {},
            AuditLog(settings.audit_dir),
            erase_identities=forget_identities,
        )
        recorded = con.execute(
            "SELECT count(*), sum(seconds) FROM hub.quality_deliveries"
        ).fetchone()
    finally:
        con.close()
    assert [r.status for r in receipts] == ["accepted", "accepted"]
    assert recorded == (2, 0.0)
