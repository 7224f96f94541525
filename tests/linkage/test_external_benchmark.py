"""`placelink bench linkage --external febrl4`: FEBRL's packaged records as two new partners'
exports, through the partner kit, the inbox and `placelink run` (issue 17)."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
import yaml
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.governance.contracts import load_contract
from pipelines.partner_kit.mapping import ColumnMapping
from pipelines.partner_kit.readers import allowed_raw_columns, used_raw_columns
from pipelines.tooling.bench.linkage_external import (
    AS_OF,
    FEBRL4,
    IDENTITY,
    OPTIONAL_IDENTITY,
    contract_document,
    mapping_document,
    partner_export,
    person_of,
    read_febrl,
    run_external,
    select_people,
)


def _invalid_dates(febrl: pl.DataFrame) -> int:
    """FEBRL dates of birth present but not a real yyyymmdd date up to AS_OF, counted here
    with the standard library, independently of the kit."""
    bad = 0
    for cell in febrl["date_of_birth"].to_list():
        text = (cell or "").strip()
        if not text:
            continue
        try:
            born = dt.datetime.strptime(text, "%Y%m%d").date()
        except ValueError:
            bad += 1
            continue
        bad += not (len(text) == 8 and dt.date(1900, 1, 1) <= born <= AS_OF)
    return bad


def test_febrl_truth_pairs_each_original_with_its_duplicate():
    frames = select_people([read_febrl(p.file) for p in FEBRL4], 50)
    originals, duplicates = (set(person_of(f["rec_id"]).to_list()) for f in frames)
    assert len(originals) == 50 and duplicates == originals
    assert frames[0]["rec_id"].str.ends_with("-org").all()
    assert frames[1]["rec_id"].str.contains("-dup-").all()


def _as_sent(tmp_path, partner, identity=IDENTITY):
    """A FEBRL partner's first 20 records, agreement and mapping file as the bench writes them:
    the FEBRL rows, the contract's dataset, and the export mapped as the kit maps it."""
    febrl = read_febrl(partner.file).head(20)
    export = partner_export(febrl, partner)
    assert "rec_id" not in export.columns  # the partner's own names
    contract_path = tmp_path / f"{partner.partner_id}.yaml"
    contract_path.write_text(yaml.safe_dump(contract_document(partner, AS_OF, identity)))
    contract = load_contract(contract_path)
    spec = contract.dataset(partner.dataset)
    mapping_path = tmp_path / f"{partner.partner_id}-mapping.yaml"
    mapping_path.write_text(yaml.safe_dump(mapping_document(partner, identity)))
    mapped = ColumnMapping.load(mapping_path).apply(
        export,
        tmp_path / "export.csv",
        contract,
        spec,
        allowed_raw_columns(contract, spec),
        used_raw_columns(contract, spec),
    )
    return febrl, spec, mapped.frame


def test_each_partners_export_maps_back_to_the_kit_columns_under_its_own_contract(tmp_path):
    """The export, mapping file and contract a FEBRL partner sends are ones the kit accepts:
    every column of the export is mapped or ignored, and cells arrive as FEBRL wrote them."""
    for partner in FEBRL4:
        febrl, spec, mapped = _as_sent(tmp_path, partner)
        assert [f.strftime for f in spec.date_formats] == ["%Y%m%d"]
        assert not {"nhs_number_token", "sex"} & set(spec.columns)
        assert spec.postcode_format is None  # FEBRL's Australian postcodes are found as such
        assert set(mapped.columns) == {
            "record_id",
            "given_name",
            "family_name",
            "date_of_birth",
            "address_line",
            "postcode",
        }
        assert mapped["given_name"].to_list() == febrl["given_name"].to_list()


def test_a_run_may_leave_an_identifier_out_of_the_mapping_and_the_agreement(tmp_path):
    """--leave-out address_line: the same export, the address columns ignored by the mapping and
    no address item in the agreement, so the kit sends names, date of birth and postcode only."""
    identity = tuple(f for f in IDENTITY if f != "address_line")
    _, spec, mapped = _as_sent(tmp_path, FEBRL4[1], identity)
    assert "address_line_bloom" not in spec.columns and "postcode_token" in spec.columns
    assert set(mapped.columns) == {"record_id", *identity}
    with pytest.raises(ValueError, match="cannot leave out given_name"):
        run_external("febrl4", tmp_path / "work", leave_out=("given_name",))


def test_leave_out_is_refused_without_an_external_benchmark():
    result = CliRunner().invoke(main, ["bench", "linkage", "--leave-out", "address_line"])
    assert result.exit_code == 2 and "give --external too" in result.output
    # The command's choices (written out there, so the CLI starts without the bench's imports)
    # are the identifiers the bench can leave out.
    (option,) = [
        p for p in main.commands["bench"].commands["linkage"].params if p.name == "leave_out"
    ]
    assert tuple(option.type.choices) == OPTIONAL_IDENTITY


@pytest.mark.slow
def test_febrl4_slice_publishes_and_links_through_the_public_path(tmp_path):
    # 600 people, not fewer: the hub's EM needs 500 pairs sharing a training key (a date of
    # birth here), and below that it trains nothing and links nothing (docs/linkage-benchmark.md).
    people = 600
    out = tmp_path / "febrl.json"
    ran = CliRunner().invoke(
        main,
        [
            "bench",
            "linkage",
            "--external",
            "febrl4",
            "--people",
            str(people),
            "--work",
            str(tmp_path / "work"),
            "--json",
            str(out),
        ],
    )
    assert ran.exit_code == 0, ran.output
    result = json.loads(out.read_text())
    assert result["records"] == 2 * people and result["true_pairs"] == people
    assert "succeeded; published" in result["hub_outcome"]
    # All apart scores 0 and all together a precision near 1/1,200; a model that trained
    # nothing (m = u everywhere) links nothing. A linkage that works finds most of FEBRL's
    # pairs, corrupted as the duplicates are (F1 0.78 on tokens at this size, 0.92 on all).
    for method in ("tokens", "clear_text"):
        assert result["scores"][method]["f1"] > 0.6, method
    frames = select_people([read_febrl(p.file) for p in FEBRL4], people)
    for partner, febrl in zip(result["partners"], frames, strict=True):
        expected = _invalid_dates(febrl)
        assert partner["invalid_values"].get("date_of_birth", 0) == expected
        if expected:
            assert any(
                "invalid values" in line and f"date_of_birth {expected:,}" in line
                for line in partner["summary"]
            ), partner["summary"]
        # Every FEBRL postcode is Australian: read and sent as another country's, not emptied.
        assert (
            "postcode" not in partner["invalid_values"] or not partner["invalid_values"]["postcode"]
        )
        assert any(
            line.startswith(f"postcodes: {people:,} not UK postcodes")
            for line in partner["summary"]
        ), partner["summary"]
