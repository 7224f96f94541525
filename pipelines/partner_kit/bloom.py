"""Keyed Bloom-filter encodings of names (cryptographic long-term key style, CLK).

An exact-name token says nothing when a name is mistyped ("CATHERINE" against
"CATHRINE"). A Bloom filter of the name's bigrams keeps that similarity: names that
share most bigrams share most set bits, and the hub compares two filters with the
Dice coefficient without ever seeing a name.

Construction (Schnell, Bachteler and Reiher 2009; the clkhash "doubleHash" scheme):

* the normalised name is padded with a boundary character, ``SMITH`` -> ``_SMITH_``,
  and split into bigrams ``_S SM MI IT TH H_`` (a set: repeats count once);
* each bigram sets ``k`` = :data:`BLOOM_HASHES` bits of an ``m`` = :data:`BLOOM_BITS`
  bit filter, at ``(h1 + i * h2) mod m`` for ``i = 0..k-1``, where ``h1`` and ``h2`` are
  the first two 8-byte words of HMAC-SHA256(field key, bigram) (big-endian). ``h2`` is
  forced odd: with ``m`` a power of two an even ``h2`` would revisit the same
  positions and set fewer than ``k`` bits;
* the field key is the linkage key's HKDF key for the column (e.g.
  ``given_name_bloom``), so without the linkage key the hub cannot build filters for
  candidate names, and given-name and family-name filters are unrelated.

``k`` = 24 sets about half the bits for a typical 6-7 letter name (7-8 bigrams:
1 - (1 - 1/256)^(24 * 7.5) = 0.50), where a Bloom filter carries the most information.
The filter is stored as 32 raw bytes (Parquet binary; the hub casts it to DuckDB BIT).

The bigram positions depend only on the bigram and key, so they are computed once per
distinct bigram (a few hundred) and each distinct name ORs its bigrams' masks.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

import numpy as np
import polars as pl
import pyarrow as pa

from pipelines.partner_kit.normalise import Factorised, map_distinct
from pipelines.partner_kit.steps import step
from pipelines.partner_kit.tokens import LinkageKey

BLOOM_BITS = 256
BLOOM_BYTES = BLOOM_BITS // 8
BLOOM_HASHES = 24
BOUNDARY = "_"


def bigrams(name: str) -> set[str]:
    """Bigrams of ``name`` padded with the boundary character: ``AB`` -> {_A, AB, B_}."""
    padded = f"{BOUNDARY}{name}{BOUNDARY}"
    return {padded[i : i + 2] for i in range(len(padded) - 1)}


def _bigram_mask(bigram: str, field_key: bytes, hashes: int = BLOOM_HASHES) -> int:
    digest = hmac.digest(field_key, bigram.encode("utf-8"), hashlib.sha256)
    h1 = int.from_bytes(digest[:8], "big")
    h2 = int.from_bytes(digest[8:16], "big") | 1
    mask = 0
    for i in range(hashes):
        mask |= 1 << ((h1 + i * h2) % BLOOM_BITS)
    return mask


class _NameEncoder:
    """Encodes names for one field key, remembering each bigram's mask."""

    def __init__(self, field_key: bytes, hashes: int = BLOOM_HASHES) -> None:
        self._key = field_key
        self._hashes = hashes
        self._masks: dict[str, int] = {}

    def encode(self, name: str) -> bytes:
        return self.encode_bigrams(bigrams(name))

    def encode_bigrams(self, grams: set[str]) -> bytes:
        masks = self._masks
        value = 0
        for bigram in grams:
            mask = masks.get(bigram)
            if mask is None:
                mask = masks[bigram] = _bigram_mask(bigram, self._key, self._hashes)
            value |= mask
        return value.to_bytes(BLOOM_BYTES, "big")


@lru_cache(maxsize=16)
def _encoder(field_key: bytes, hashes: int = BLOOM_HASHES) -> _NameEncoder:
    # Kept between extracts: a partner preparing several datasets reuses the bigram masks.
    return _NameEncoder(field_key, hashes)


# An address line has two to three times a name's bigrams (12 ACACIA AVENUE: 16): with k = 24
# four fifths of the bits would be set and unrelated lines would share most of them. k = 10
# brings a typical line back to about half the bits.
ADDRESS_HASHES = 10


@step("Bloom")
def bloom_encode_names(
    names: pl.Series, field_name: str, key: LinkageKey, hashes: int = BLOOM_HASHES
) -> pl.Series:
    """32-byte Bloom filter of each already-normalised name (or address line, with
    ``hashes`` = :data:`ADDRESS_HASHES`); nulls and empty values stay null.

    Each distinct value is encoded once.
    """
    encoder = _encoder(key.field_key(field_name), hashes)
    values = names.cast(pl.String).replace("", None)
    return map_distinct(
        values,
        lambda distinct: pl.Series(
            [encoder.encode(n) for n in distinct.to_list()], dtype=pl.Binary
        ),
        pl.Binary,
    )


# A full name has about twice a single name's bigrams (LI WEI: 7, MARY SMITH: 11, CATHERINE
# JOHNSON: 18): k = 12 brings a typical one back to about half the bits, as k = 24 does a name.
FULL_NAME_HASHES = 12


def _filters_by_row(names: pl.Series, encoder: _NameEncoder) -> tuple[np.ndarray, np.ndarray]:
    """Each row's filter as 32 bytes (zeros where the name is missing), and where it is present.

    Each distinct name is encoded once."""
    names = Factorised.of(names.cast(pl.String).replace("", None))
    filters = np.frombuffer(
        b"".join(encoder.encode(n) for n in names.distinct.to_list()) or bytes(BLOOM_BYTES),
        dtype=np.uint8,
    ).reshape(-1, BLOOM_BYTES)
    present = names.codes.is_not_null().to_numpy()
    return filters[names.codes.fill_null(0).to_numpy()] * present[:, None], present


@step("Bloom")
def bloom_encode_full_names(
    given: pl.Series, family: pl.Series, field_name: str, key: LinkageKey
) -> pl.Series:
    """Per row, a 32-byte Bloom filter of the union of the given name's and the family name's
    bigrams (each padded on its own, k = :data:`FULL_NAME_HASHES`), so it is the same whichever
    field each name was written in; null unless the row has both names.

    A bigram sets the same bits in whichever name it is, so the filter of the union is the OR of
    the two names' filters under this key: each distinct name is encoded once, and the rows OR
    two arrays of bytes.
    """
    encoder = _encoder(key.field_key(field_name), FULL_NAME_HASHES)
    given_filters, has_given = _filters_by_row(given, encoder)
    family_filters, has_family = _filters_by_row(family, encoder)
    both = has_given & has_family
    filters = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(BLOOM_BYTES),
        len(both),
        [
            pa.array(both).buffers()[1],
            pa.py_buffer(np.ascontiguousarray(given_filters | family_filters).tobytes()),
        ],
    )
    return pl.Series(given.name, filters.cast(pa.binary()), dtype=pl.Binary)


def dice(a: bytes, b: bytes) -> float:
    """Dice coefficient of two Bloom filters: 2 |a AND b| / (|a| + |b|); 0.0 if both are empty."""
    x, y = int.from_bytes(a, "big"), int.from_bytes(b, "big")
    total = x.bit_count() + y.bit_count()
    return 2 * (x & y).bit_count() / total if total else 0.0


def set_bit_fraction(a: bytes) -> float:
    """Share of the filter's bits that are set (about 0.5 for a typical name)."""
    return int.from_bytes(a, "big").bit_count() / (len(a) * 8)
