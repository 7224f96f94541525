"""The partner kit states each extract's delivery kind (full snapshot or delta) in the signed extract
header and its report: the contract's by default, or what the partner says (issue 21)."""

import pyarrow.parquet as pq
import pytest

from pipelines.exchange.extract_file import ExtractHeader, read_extract_header
from pipelines.partner_kit.errors import PartnerKitError
from pipelines.partner_kit.prepare import prepare_extract
from pipelines.partner_kit.tokens import LinkageKey


def _prepare(small_place, tmp_path, dataset, **kind):
    contract = next(c for c in small_place.contracts.values() if dataset in c.datasets)
    return prepare_extract(
        contract,
        dataset,
        small_place.place / "raw" / contract.partner_id / f"{dataset}.csv",
        tmp_path / "out",
        LinkageKey.generate(),
        small_place.place / "reference" / "postcode_lookup.csv",
        period="2026-10",
        opt_outs=small_place.place / "reference" / "national_data_opt_outs.csv",
        **kind,
    )


def test_the_kind_defaults_to_the_contracts_and_can_be_stated(small_place, tmp_path):
    delta = _prepare(small_place, tmp_path, "emergency_admissions")  # NHS: monthly deltas
    assert read_extract_header(delta.extract_path)["delivery_kind"] == "delta"
    assert delta.report["delivery_kind"] == "delta"
    first = _prepare(small_place, tmp_path, "emergency_admissions", delivery_kind="full")
    assert read_extract_header(first.extract_path)["delivery_kind"] == "full"
    council = _prepare(small_place, tmp_path, "homelessness_applications")
    assert council.header.delivery_kind == "full"
    with pytest.raises(PartnerKitError, match="delivery kind 'weekly' is not one of full, delta"):
        _prepare(small_place, tmp_path, "emergency_admissions", delivery_kind="weekly")


def test_an_extract_header_from_before_the_kind_reads_as_full(small_place):
    header = read_extract_header(small_place.extract("ae_attendances").extract_path)
    header.pop("delivery_kind")
    assert ExtractHeader.from_dict(header).delivery_kind == "full"
    assert pq.read_schema(small_place.extract("ae_attendances").extract_path).metadata
