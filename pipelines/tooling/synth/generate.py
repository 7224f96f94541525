"""Generate a whole synthetic place: raw partner extracts, reference data and the truth.

See INTERFACES.md ("Synthetic place output layout") for the files written.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.partner_kit.features import IDENTIFIERS
from pipelines.tooling.synth import effect as effect_model
from pipelines.tooling.synth import events, study
from pipelines.tooling.synth.geography import build_lsoas
from pipelines.tooling.synth.names import draw_name_pools
from pipelines.tooling.synth.noise import draw_registrations, recorded_identities
from pipelines.tooling.synth.partners import DATASETS, DatasetLayout
from pipelines.tooling.synth.population import build_population
from pipelines.tooling.synth.study import rng_for

GENERATOR_VERSION = "placelink-synth/1"
MIN_PEOPLE = 50


@dataclass(frozen=True)
class DatasetSummary:
    partner: str
    dataset: str
    path: str  # relative to the place directory
    rows: int


class DatasetsManifest:
    """What a manifest says of the datasets it generated (a place's, or a later month's): its
    ``datasets`` rows, and the content of its manifest.json."""

    datasets: tuple[DatasetSummary, ...]

    @property
    def records(self) -> int:
        return sum(d.rows for d in self.datasets)

    def to_json(self) -> dict:
        """manifest.json content (no output path or timestamps, so it is reproducible)."""
        content = asdict(self)
        content.pop("out")
        content["datasets"] = {
            f"{d.partner}/{d.dataset}": {"path": d.path, "rows": d.rows} for d in self.datasets
        }
        return content


@dataclass(frozen=True)
class PlaceManifest(DatasetsManifest):
    """What was generated; the same content is written to DIR/manifest.json."""

    generator_version: str
    seed: int
    people: int
    households: int
    wards: int
    lsoas: int
    postcodes: int
    enrolled_families: int
    enrolled_people: int
    datasets: tuple[DatasetSummary, ...]
    out: Path = field(compare=False)

    @property
    def records_per_person(self) -> float:
        return self.records / self.people

    def rows(self, dataset: str) -> int:
        return next(d.rows for d in self.datasets if d.dataset == dataset)

    def to_json(self) -> dict:
        return {**super().to_json(), "records": self.records}


def generate_place(
    people: int,
    seed: int,
    out: Path,
    effect: float = study.EFFECT_RELATIVE_CHANGE,
    enrolment_share: float = effect_model.ENROLMENT_SHARE,
) -> PlaceManifest:
    """Write a synthetic place of `people` people to `out`; same seed, same bytes.

    `effect` is the planted relative change in enrolled children's A&E attendances in the 12
    months from enrolment (default -0.30; 0.0 plants none); `enrolment_share` the share of
    families with children that enrol (default 0.04). Both are recorded in
    truth/planted_effect.json.

    Files (relative to out): raw/<partner>/<dataset>.csv, reference/postcode_lookup.csv,
    reference/lsoa_reference.csv, reference/national_data_opt_outs.csv,
    truth/ground_truth.csv, truth/people.csv, truth/planted_effect.json, manifest.json.
    Existing files of those names are overwritten.
    """
    if people < MIN_PEOPLE:
        raise ValueError(
            f"a synthetic place needs at least {MIN_PEOPLE} people (asked for {people}); "
            f"pass a larger number of people"
        )
    out = Path(out)
    pools, faker = draw_name_pools(seed)
    lsoas = build_lsoas(rng_for(seed, "geography"), faker, people)
    population = build_population(rng_for(seed, "population"), people, lsoas, pools)
    decile_of_lsoa = lsoas["imd_decile"].to_numpy().astype(float)
    households = effect_model.enrol_families(
        rng_for(seed, "enrolment"),
        population.households,
        decile_of_lsoa[population.households["lsoa_idx"].to_numpy()],
        enrolment_share,
    )
    persons = _with_household_facts(population.people, households)

    age = persons["age"].to_numpy()
    need = persons["need"].to_numpy()
    decile = decile_of_lsoa[persons["lsoa_idx"].to_numpy()]
    dob_day = persons["date_of_birth"].cast(pl.Int32).to_numpy().astype(np.int64)
    enrolment_day = persons["enrolment_day"].fill_null(-1).to_numpy().astype(np.int64)

    ae_rate, frailty = effect_model.latent_ae_rates(rng_for(seed, "ae_rate"), age, decile, need)
    window_start, window_end = effect_model.effect_windows(enrolment_day, dob_day)
    household_need = households["need"].to_numpy()
    head = persons.filter(pl.col("member_no") == 0)["person_idx"].to_numpy()
    by_dataset = {
        "csc_referrals": events.csc_referrals(rng_for(seed, "csc"), age < 18, need, dob_day),
        "school_attendance": events.school_attendance(rng_for(seed, "school"), dob_day, need),
        "homelessness_applications": events.homelessness_applications(
            rng_for(seed, "homelessness"),
            household_need,
            decile_of_lsoa[households["lsoa_idx"].to_numpy()],
            head,
            age[head],
        ),
        "ae_attendances": effect_model.ae_attendances(
            rng_for(seed, "ae"), ae_rate, age, window_start, window_end, effect
        ),
        "emergency_admissions": events.emergency_admissions(
            rng_for(seed, "admissions"), age, decile, frailty
        ),
        "mental_health_referrals": events.mental_health_referrals(
            rng_for(seed, "mh"), age, need, dob_day
        ),
        "family_support_enrolments": events.family_support_enrolments(persons),
    }
    registrations, tagged = draw_registrations(rng_for(seed, "registrations"), by_dataset, people)
    identities = recorded_identities(rng_for(seed, "noise"), registrations, persons)

    summaries, truth_parts = [], []
    for layout in DATASETS:
        records = _raw_extract(
            rng_for(seed, f"records/{layout.dataset}"),
            layout,
            tagged[layout.dataset],
            identities,
            persons,
        )
        path = out / layout.path
        path.parent.mkdir(parents=True, exist_ok=True)
        records.drop("person_id").write_csv(path)
        truth_parts.append(
            records.select(
                source=pl.lit(layout.dataset), record_id="record_id", person_id="person_id"
            )
        )
        summaries.append(
            DatasetSummary(layout.partner, layout.dataset, layout.path, records.height)
        )

    _write_reference(out, lsoas, population.postcodes, persons)
    truth = out / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    pl.concat(truth_parts).write_csv(truth / "ground_truth.csv")
    _people_truth(persons, lsoas, ae_rate).write_csv(truth / "people.csv")
    statement = effect_model.planted_effect_statement(persons, by_dataset["ae_attendances"], effect)
    statement["enrolment_share"] = enrolment_share
    _write_json(truth / "planted_effect.json", statement)

    enrolled = households.filter(pl.col("enrolled"))
    manifest = PlaceManifest(
        generator_version=GENERATOR_VERSION,
        seed=seed,
        people=people,
        households=households.height,
        wards=lsoas["ward_code"].n_unique(),
        lsoas=lsoas.height,
        postcodes=population.postcodes.height,
        enrolled_families=enrolled.height,
        enrolled_people=int(persons["enrolled"].sum()),
        datasets=tuple(summaries),
        out=out,
    )
    _write_json(out / "manifest.json", manifest.to_json())
    return manifest


def _with_household_facts(people: pl.DataFrame, households: pl.DataFrame) -> pl.DataFrame:
    facts = households.select(
        "household_id",
        "kind",
        "need",
        "family_with_need",
        "enrolled",
        "enrolment_day",
        "programme_type",
        "vcs_family_id",
    )
    return pl.concat([people, facts[people["household_idx"].to_numpy()]], how="horizontal")


def _raw_extract(
    rng: np.random.Generator,
    layout: DatasetLayout,
    tagged: pl.DataFrame,
    identities: pl.DataFrame,
    persons: pl.DataFrame,
) -> pl.DataFrame:
    """One partner extract in its layout, plus person_id (kept for the ground truth only)."""
    mine = identities.filter(pl.col("dataset") == layout.dataset).drop("dataset")
    records = tagged.join(mine, on=["person_idx", "reg_no"], how="left", maintain_order="left")
    # Records are numbered in date order, so record_id says nothing about who they belong to.
    records = records.with_columns(tiebreak=pl.Series(rng.permutation(records.height)))
    records = records.sort("event_day", "tiebreak")
    width = max(8, len(str(records.height)))
    record_id = pl.lit(layout.record_prefix) + (
        pl.int_range(1, records.height + 1).cast(pl.String).str.zfill(width)
    )
    person_id = persons["person_id"].gather(records["person_idx"])
    return records.with_columns(person_id=person_id).select(
        record_id.alias("record_id"),
        *IDENTIFIERS,
        pl.col("event_day").cast(pl.Date).alias(layout.date_column),
        *layout.payload,
        "person_id",
    )


def _write_reference(
    out: Path, lsoas: pl.DataFrame, postcodes: pl.DataFrame, persons: pl.DataFrame
) -> None:
    reference = out / "reference"
    reference.mkdir(parents=True, exist_ok=True)
    areas = lsoas.select("lsoa_idx", "lsoa_code", "ward_code")
    (
        postcodes.join(areas, on="lsoa_idx", how="left", maintain_order="left")
        .select("postcode", "lsoa_code", "ward_code")
        .sort("postcode")
        .write_csv(reference / "postcode_lookup.csv")
    )
    population = persons.group_by("lsoa_idx").len("population")
    (
        lsoas.join(population, on="lsoa_idx", how="left", maintain_order="left")
        .select(
            "lsoa_code",
            "lsoa_name",
            "ward_code",
            "ward_name",
            "imd_decile",
            pl.col("population").fill_null(0),
        )
        .sort("lsoa_code")
        .write_csv(reference / "lsoa_reference.csv")
    )
    (
        persons.filter(pl.col("national_data_opt_out"))
        .select(pl.col("nhs_number").cast(pl.String))
        .sort("nhs_number")
        .write_csv(reference / "national_data_opt_outs.csv")
    )


def _people_truth(persons: pl.DataFrame, lsoas: pl.DataFrame, ae_rate: np.ndarray) -> pl.DataFrame:
    areas = lsoas.select("lsoa_idx", "lsoa_code", "ward_code", "imd_decile")
    return (
        persons.join(areas, on="lsoa_idx", how="left", maintain_order="left")
        .with_columns(ae_rate_per_year=pl.Series(ae_rate).round(5))
        .select(
            "person_id",
            "household_id",
            "sex",
            "date_of_birth",
            "lsoa_code",
            "ward_code",
            "enrolled",
            pl.col("enrolment_day").cast(pl.Date).alias("enrolment_date"),
            "vcs_family_id",
            "programme_type",
            "given_name",
            "family_name",
            pl.col("nhs_number").cast(pl.String),
            "postcode",
            "previous_postcode",
            "previous_family_name",
            "imd_decile",
            pl.col("kind").alias("household_kind"),
            pl.col("need").round(4).alias("family_need"),
            "family_with_need",
            "ae_rate_per_year",
            "national_data_opt_out",
        )
        .sort("person_id")
    )


def _write_json(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


__all__ = ["GENERATOR_VERSION", "DatasetSummary", "PlaceManifest", "generate_place"]
