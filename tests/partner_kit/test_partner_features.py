"""Identity features: what each hub column is made of."""

from __future__ import annotations

import dataclasses
import datetime as dt

import polars as pl
import pytest

from pipelines.governance.contracts import DataItem
from pipelines.partner_kit.bloom import dice
from pipelines.partner_kit.contract_draft import identity_items
from pipelines.partner_kit.errors import PartnerKitError
from pipelines.partner_kit.features import (
    IDENTITY_FEATURES,
    IdentityInputs,
    compute_identity_columns,
    compute_identity_features,
    contract_features,
)

TODAY = dt.date(2026, 10, 15)


def _features(key, lookup=None, partner_id="nhs", **columns):
    height = len(next(iter(columns.values())))
    raw = pl.DataFrame({"record_id": [f"R{i}" for i in range(height)], **columns})
    inputs = IdentityInputs(
        raw,
        partner_id=partner_id,
        dataset="ae_attendances",
        key=key,
        today=TODAY,
        postcode_lookup=lookup,
    )
    wanted = tuple(f for f in IDENTITY_FEATURES.values() if f.source in raw.columns)
    return compute_identity_features(wanted, inputs), inputs


def test_day_month_swap_gives_the_same_unordered_token(key):
    out, _ = _features(key, date_of_birth=["1990-03-07", "1990-07-03", "1990-03-08", "1991-03-07"])
    unordered = out["dob_unordered_token"].to_list()
    assert unordered[0] == unordered[1]
    assert len(set(unordered)) == 3
    full = out["date_of_birth_token"].to_list()
    assert full[0] != full[1]
    assert out["year_of_birth"].dtype == pl.Int16 and out["year_of_birth"].to_list()[0] == 1990


def test_nicknames_agree_exactly_but_phonetic_and_bloom_keep_the_spelling(key):
    out, _ = _features(key, given_name=["Bob", "Robert", "ROBERT", "Catherine", "Katherine"])
    token, phonetic = out["given_name_token"].to_list(), out["given_name_phonetic_token"].to_list()
    assert token[0] == token[1] == token[2]
    assert phonetic[0] != phonetic[1] and phonetic[1] == phonetic[2]
    # A spelling variant agrees phonetically, not exactly.
    assert phonetic[3] == phonetic[4] and token[3] != token[4]
    assert out["given_name_bloom"].dtype == pl.Binary


def test_postcode_areas_come_from_the_lookup(key):
    lookup = pl.DataFrame(
        {"postcode": ["AB1 2CD"], "lsoa_code": ["E01000001"], "ward_code": ["E05000001"]}
    )
    out, inputs = _features(key, lookup, postcode=["ab12cd", "AB1 2CE", None, "nonsense"])
    assert out["lsoa_code"].to_list() == ["E01000001", None, None, None]
    assert out["ward_code"].to_list() == ["E05000001", None, None, None]
    assert inputs.postcodes_not_in_lookup == 1
    sector, district = (
        out["postcode_sector_token"].to_list(),
        out["postcode_district_token"].to_list(),
    )
    assert sector[0] == sector[1] and district[0] == district[1]
    assert out["postcode_token"][0] != out["postcode_token"][1]
    assert (inputs.invalid["postcode"], inputs.missing["postcode"]) == (1, 1)


def test_family_token_groups_a_family_within_a_partner(key):
    out, _ = _features(key, partner_id="vcs", family_id=["F1", "F1 ", "F2", ""])
    family = out["family_token"].to_list()
    assert family[0] == family[1] != family[2] and family[3] is None
    other, _ = _features(key, partner_id="council", family_id=["F1"])
    assert other["family_token"][0] != family[0]


def test_record_token_depends_on_partner_dataset_and_record_id(key):
    first, _ = _features(key, nhs_number=["x", "y"])
    again, _ = _features(key, nhs_number=["x", "y"])
    other_partner, _ = _features(key, partner_id="council", nhs_number=["x", "y"])
    assert first["record_token"].to_list() == again["record_token"].to_list()
    assert first["record_token"].n_unique() == 2
    assert first["record_token"][0] != other_partner["record_token"][0]


def test_arrow_columns_match_the_per_row_columns(key):
    raw = pl.DataFrame(
        {
            "record_id": ["1", "2", "3", "4", " "],
            "given_name": ["Bob", "Robert", None, "123", "bob"],
            "date_of_birth": ["1990-03-07", "bad", "1990-03-07", None, "1990-07-03"],
            "sex": ["M", "M", "x", None, "m"],
            "family_id": ["F1", "", "F1", None, "F2"],
        }
    )
    inputs = IdentityInputs(raw, partner_id="nhs", dataset="d", key=key, today=TODAY)
    wanted = tuple(f for f in IDENTITY_FEATURES.values() if f.source in raw.columns)
    rows = compute_identity_features(wanted, inputs)
    arrays = compute_identity_columns(wanted, inputs)
    for name, series in rows.items():
        assert arrays[name].to_pylist() == series.to_list(), name


def test_a_contract_item_the_kit_cannot_compute_is_an_error(nhs_contract):
    dataset = nhs_contract.dataset("ae_attendances")
    odd = DataItem(
        name="home_address_token",
        logical_type="string",
        classification="token",
        required=False,
        unique=False,
        reason="test",
    )
    widened = dataclasses.replace(dataset, items=dataset.items + (odd,))
    with pytest.raises(
        PartnerKitError, match="'home_address_token'.*not a feature this partner kit can compute"
    ):
        contract_features(nhs_contract, widened)


def test_the_full_name_filter_is_the_same_whichever_field_each_name_is_in(key):
    out, inputs = _features(
        key,
        given_name=["Wei", "Zhang", "Zhnag", "Wei", "Wei", None],
        family_name=["Zhang", "Wei", "Wei", "Chang", None, "Zhang"],
    )
    full = out["full_name_bloom"].to_list()
    assert full[0] == full[1]  # transposed: the same filter
    assert out["given_name_bloom"][0] != out["given_name_bloom"][1]  # the per-field ones differ
    # A typo (here with the names transposed too), or another romanisation, in one name keeps
    # most of the filter: over 20,000 keys the lower of the two Dice was 0.71 at the least. (Row 2
    # was ZHANG ZHNAG, which keeps only one of WEI ZHANG's names: below 0.7 for one key in 13.)
    assert dice(full[0], full[2]) >= 0.7 and dice(full[0], full[3]) >= 0.7
    assert full[2] != full[0] and full[3] != full[0]
    assert full[4] is None and full[5] is None  # a record with one name has no full name
    arrays = compute_identity_columns((IDENTITY_FEATURES["full_name_bloom"],), inputs)
    assert arrays["full_name_bloom"].to_pylist() == full


def test_the_full_name_filter_is_listed_where_both_names_are_held():
    assert IDENTITY_FEATURES["full_name_bloom"].sources == ("given_name", "family_name")
    given_only = [i["name"] for i in identity_items(["given_name", "date_of_birth"])]
    both = [i["name"] for i in identity_items(["given_name", "family_name"])]
    assert "full_name_bloom" not in given_only and "full_name_bloom" in both
