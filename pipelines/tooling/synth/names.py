"""Name pools drawn once from Faker, and the nicknames a system might record instead.

Faker is the source of every name, but it is called a few thousand times per
place, not once per person: people then draw from the pools with numpy.
The locale mix gives the accents (Zoé, Łukasz), apostrophes (O'Mara) and
hyphens (Julie-Anne) that make normalisation matter in UK data.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from faker import Faker
from nicknames import NickNamer

# Share of households by the Faker locale their names come from.
LOCALE_SHARES: dict[str, float] = {
    "en_GB": 0.86,
    "en_IE": 0.05,
    "pl_PL": 0.04,
    "en_IN": 0.03,
    "fr_FR": 0.02,
}
POOL_SIZE_EN_GB = 2000
POOL_SIZE_OTHER = 300


@dataclass(frozen=True)
class NamePools:
    """Per locale (in LOCALE_SHARES order): given names by sex and family names."""

    locales: tuple[str, ...]
    female: tuple[np.ndarray, ...]
    male: tuple[np.ndarray, ...]
    family: tuple[np.ndarray, ...]

    @property
    def shares(self) -> np.ndarray:
        return np.array([LOCALE_SHARES[loc] for loc in self.locales])


def draw_name_pools(seed: int) -> tuple[NamePools, Faker]:
    """Seeded Faker draws for every locale; also returns the seeded en_GB Faker."""
    female, male, family = [], [], []
    en_gb: Faker | None = None
    for offset, locale in enumerate(LOCALE_SHARES):
        faker = Faker(locale)
        faker.seed_instance(seed * 16 + offset)
        size = POOL_SIZE_EN_GB if locale == "en_GB" else POOL_SIZE_OTHER
        female.append(np.array([faker.first_name_female() for _ in range(size)]))
        male.append(np.array([faker.first_name_male() for _ in range(size)]))
        family.append(np.array([faker.last_name() for _ in range(size)]))
        if locale == "en_GB":
            en_gb = faker
    assert en_gb is not None
    pools = NamePools(tuple(LOCALE_SHARES), tuple(female), tuple(male), tuple(family))
    return pools, en_gb


@lru_cache(maxsize=1)
def _nicknamer() -> NickNamer:
    return NickNamer()


def nicknames_for(names: list[str]) -> dict[str, list[str]]:
    """For each given name with a known nickname, the nicknames (title case, sorted).

    Nicknames that are themselves full names in `names` (Rupert for Robert) are
    left out: a system recording Rupert for Robert would be a different person.
    """
    full_names = {n.lower() for n in names}
    table: dict[str, list[str]] = {}
    for name in names:
        options = sorted(
            nick.title()
            for nick in _nicknamer().nicknames_of(name)
            if nick not in full_names and nick.isalpha() and len(nick) >= 2
        )
        if options:
            table[name] = options
    return table


# Letters that do not decompose under NFKD but that ASCII-only systems flatten.
_ASCII_FALLBACK = str.maketrans(
    {
        "Ł": "L",
        "ł": "l",
        "Ø": "O",
        "ø": "o",
        "ß": "ss",
        "Đ": "D",
        "đ": "d",
        "Æ": "AE",
        "æ": "ae",
        "Œ": "OE",
        "œ": "oe",
    }
)


def ascii_fold(name: str) -> str:
    """What a system that only stores ASCII keeps of a name (Siobhán -> Siobhan)."""
    decomposed = unicodedata.normalize("NFKD", name.translate(_ASCII_FALLBACK))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))
