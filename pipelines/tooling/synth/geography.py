"""The fictional borough: wards, LSOAs with deprivation deciles, and postcode units.

Codes follow the ONS formats (E05 wards, E01 LSOAs) in a 9xxxxx range that real
areas do not use, and postcodes use the fictional areas ZX (and ZW, ZV, ... ZM for
very large places) that pass the usual UK postcode format checks but belong to
no real place. People who moved in from outside the borough carry an old ZY
postcode, which is well formed but not in the lookup.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from faker import Faker

BOROUGH_NAME = "Fernley"
PEOPLE_PER_LSOA = 1500
LSOAS_PER_WARD = 6.5
HOUSEHOLDS_PER_POSTCODE = 27  # units then hold ~15-40 households
PLACE_AREAS = ("ZX", "ZW", "ZV", "ZU", "ZT", "ZS", "ZR", "ZP", "ZN", "ZM")  # up to ~14.8M people
OUTSIDE_AREA = "ZY"
SECTORS_PER_DISTRICT = 10
DISTRICTS_PER_AREA = 99
# Letters allowed in the inward code's last two positions (no C, I, K, M, O, V).
INWARD_LETTERS = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))
WARD_SUFFIXES = (
    "Park",
    "Green",
    "Vale",
    "Central",
    "Hill",
    "Fields",
    "Common",
    "Bridge",
    "Heath",
    "Moor",
)


def build_lsoas(rng: np.random.Generator, faker: Faker, people: int) -> pl.DataFrame:
    """LSOAs nested in wards, with a deprivation decile and a relative size weight.

    Columns: lsoa_idx, lsoa_code, lsoa_name, ward_code, ward_name, imd_decile, weight.
    """
    n_lsoas = max(1, round(people / PEOPLE_PER_LSOA))
    n_wards = max(1, round(n_lsoas / LSOAS_PER_WARD))
    ward_of_lsoa = np.concatenate(
        [
            np.full(len(part), w)
            for w, part in enumerate(np.array_split(np.arange(n_lsoas), n_wards))
        ]
    )
    # Deprivation clusters by ward, as it does in real places.
    ward_mean = rng.uniform(1.5, 9.5, size=n_wards)
    decile = np.clip(np.rint(ward_mean[ward_of_lsoa] + rng.normal(0, 1.6, n_lsoas)), 1, 10)
    weight = rng.lognormal(0.0, 0.18, size=n_lsoas)
    ward_names = _ward_names(faker, n_wards)
    lsoa_names = [f"{BOROUGH_NAME} {i // 5 + 1:03d}{'ABCDE'[i % 5]}" for i in range(n_lsoas)]
    return pl.DataFrame(
        {
            "lsoa_idx": np.arange(n_lsoas, dtype=np.int32),
            "lsoa_code": [f"E01{900001 + i:06d}" for i in range(n_lsoas)],
            "lsoa_name": lsoa_names,
            "ward_code": [f"E05{900001 + w:06d}" for w in ward_of_lsoa],
            "ward_name": [ward_names[w] for w in ward_of_lsoa],
            "imd_decile": decile.astype(np.int8),
            "weight": weight,
        }
    )


def _ward_names(faker: Faker, n_wards: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n_wards:
        name = f"{faker.last_name()} {WARD_SUFFIXES[len(names) % len(WARD_SUFFIXES)]}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def build_postcodes(
    rng: np.random.Generator, lsoa_of_household: np.ndarray, n_lsoas: int
) -> tuple[pl.DataFrame, np.ndarray]:
    """Postcode units for each LSOA and the unit each household lives in.

    Each LSOA is one postcode sector; its households are spread at random over
    enough units to average HOUSEHOLDS_PER_POSTCODE per unit.
    Returns (postcodes with columns postcode_idx, postcode, lsoa_idx; postcode_idx per household).
    """
    if n_lsoas > len(PLACE_AREAS) * DISTRICTS_PER_AREA * SECTORS_PER_DISTRICT:
        raise ValueError(
            f"a place of {n_lsoas} LSOAs is too large for the synthetic postcode "
            f"scheme; generate fewer people"
        )
    households_per_lsoa = np.bincount(lsoa_of_household, minlength=n_lsoas)
    units_per_lsoa = np.maximum(1, np.rint(households_per_lsoa / HOUSEHOLDS_PER_POSTCODE)).astype(
        int
    )
    first_unit = np.concatenate([[0], np.cumsum(units_per_lsoa)[:-1]])
    local_unit = np.floor(rng.random(len(lsoa_of_household)) * units_per_lsoa[lsoa_of_household])
    postcode_of_household = first_unit[lsoa_of_household] + local_unit.astype(np.int64)

    codes: list[str] = []
    lsoa_of_unit: list[int] = []
    for lsoa in range(n_lsoas):
        district_seq, sector = divmod(lsoa, SECTORS_PER_DISTRICT)
        area_idx, district = divmod(district_seq, DISTRICTS_PER_AREA)
        outward = f"{PLACE_AREAS[area_idx]}{district + 1}"
        pairs = np.sort(
            rng.choice(len(INWARD_LETTERS) ** 2, size=units_per_lsoa[lsoa], replace=False)
        )
        for pair in pairs:
            first, second = divmod(int(pair), len(INWARD_LETTERS))
            codes.append(f"{outward} {sector}{INWARD_LETTERS[first]}{INWARD_LETTERS[second]}")
        lsoa_of_unit.extend([lsoa] * units_per_lsoa[lsoa])
    postcodes = pl.DataFrame(
        {
            "postcode_idx": np.arange(len(codes), dtype=np.int64),
            "postcode": codes,
            "lsoa_idx": np.array(lsoa_of_unit, dtype=np.int32),
        }
    )
    return postcodes, postcode_of_household


def outside_postcodes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Well-formed postcodes from outside the borough (never in the lookup)."""
    district = rng.integers(1, 21, size=n)
    sector = rng.integers(0, 10, size=n)
    first = INWARD_LETTERS[rng.integers(0, len(INWARD_LETTERS), size=n)]
    second = INWARD_LETTERS[rng.integers(0, len(INWARD_LETTERS), size=n)]
    return (
        pl.DataFrame({"d": district, "s": sector, "a": first, "b": second})
        .select(
            pl.concat_str(
                [
                    pl.lit(OUTSIDE_AREA),
                    pl.col("d").cast(pl.String),
                    pl.lit(" "),
                    pl.col("s").cast(pl.String),
                    pl.col("a"),
                    pl.col("b"),
                ]
            )
        )
        .to_series()
        .to_numpy()
    )
