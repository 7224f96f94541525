"""The National Data Opt-out, as a contract term: applied at the partner, before tokenising."""

import polars as pl


def _opted_out_record_ids(small_place, partner: str, dataset: str) -> set[str]:
    opt_outs = pl.read_csv(
        small_place.place / "reference" / "national_data_opt_outs.csv",
        schema_overrides={"nhs_number": pl.String},
    )["nhs_number"]
    raw = pl.read_csv(small_place.place / "raw" / partner / f"{dataset}.csv", infer_schema=False)
    digits = raw["nhs_number"].str.replace_all(r"\s", "")
    return set(raw.filter(digits.is_in(opt_outs.implode()).fill_null(False))["record_id"])


def test_opted_out_people_never_leave_a_partner_whose_contract_applies_the_opt_out(small_place):
    assert small_place.contracts["nhs-acute-mental-health"].terms.national_data_opt_out_applies
    for dataset in ("ae_attendances", "emergency_admissions", "mental_health_referrals"):
        prepared = small_place.extract(dataset)
        opted_out = _opted_out_record_ids(small_place, "nhs", dataset)
        assert opted_out and prepared.opted_out_rows == len(opted_out)
        sent = set(pl.read_parquet(prepared.lookup_path)["record_id"])
        assert not (sent & opted_out)
        assert pl.read_parquet(prepared.extract_path).height == prepared.rows_in - len(opted_out)


def test_the_opt_out_is_not_applied_where_the_contract_says_it_does_not_apply(small_place):
    assert not small_place.contracts["council-place-services"].terms.national_data_opt_out_applies
    prepared = small_place.extract("school_attendance")
    opted_out = _opted_out_record_ids(small_place, "council", "school_attendance")
    assert opted_out and prepared.opted_out_rows == 0
    assert opted_out <= set(pl.read_parquet(prepared.lookup_path)["record_id"])
