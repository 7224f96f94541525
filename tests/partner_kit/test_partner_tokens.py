"""Keyed tokens: the linkage key file, per-field keys and HMAC tokens."""

from __future__ import annotations

import hashlib
import hmac
import stat

import polars as pl
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pipelines.partner_kit import tokens
from pipelines.partner_kit.errors import PartnerKitError
from pipelines.partner_kit.tokens import LinkageKey, tokenise


def test_token_is_the_documented_construction(key):
    # INTERFACES.md: HKDF-SHA256(key, 32, salt None, info "placelink/v1/"+field), then
    # hex of the first 16 bytes of HMAC-SHA256. Recomputed here independently.
    field_key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"placelink/v1/nhs_number_token"
    ).derive(key.secret)
    expected = hmac.new(field_key, b"9434765870", hashlib.sha256).hexdigest()[:32]
    assert tokenise(pl.Series(["9434765870"]), "nhs_number_token", key).to_list() == [expected]


def test_same_input_and_key_give_the_same_token(key):
    values = pl.Series(["SMITH", "JONES", "SMITH", None, ""])
    first = tokenise(values, "family_name_token", key).to_list()
    again = tokenise(values, "family_name_token", LinkageKey(key.secret)).to_list()
    assert first == again
    assert first[0] == first[2] and first[0] != first[1]
    assert first[3] is None and first[4] is None
    assert all(len(t) == 32 and set(t) <= set("0123456789abcdef") for t in first[:3])


def test_another_key_or_field_gives_unrelated_tokens(key):
    values = pl.Series(["05"])
    token = tokenise(values, "dob_day_token", key).item()
    assert tokenise(values, "dob_day_token", LinkageKey.generate()).item() != token
    # A day "05" and a month "05" must not agree: per-field keys.
    assert tokenise(values, "dob_month_token", key).item() != token


def test_all_distinct_shortcut_gives_the_same_tokens(key):
    ids = pl.Series([f"nhs|ae|R{i}" for i in range(50)] + [None])
    assert (
        tokenise(ids, "record_token", key, all_distinct=True).to_list()
        == tokenise(ids, "record_token", key).to_list()
    )


def test_long_columns_and_prefixed_values_keep_the_documented_construction(key, monkeypatch):
    # Tokens are built in chunks of rows; make the chunks tiny so a short column spans several.
    monkeypatch.setattr(tokens, "_CHUNK_VALUES", 7)
    ids = [f"R{i}" for i in range(30)]
    field_key = key.field_key("record_token")

    def expected(value: str) -> str:
        return hmac.new(field_key, value.encode(), hashlib.sha256).hexdigest()[:32]

    plain = tokens.token_array(pl.Series(ids), "record_token", key)
    prefixed = tokens.token_array(pl.Series(ids), "record_token", key, prefix="nhs|ae|")
    assert plain.to_pylist() == [expected(i) for i in ids]
    assert prefixed.to_pylist() == [expected(f"nhs|ae|{i}") for i in ids]
    assert tokens.token_array(pl.Series([], dtype=pl.String), "record_token", key).to_pylist() == []


def test_key_file_round_trip_is_owner_only(tmp_path, key):
    path = key.save(tmp_path / "linkage.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert len(text.strip()) == 64 and text.endswith("\n")
    assert LinkageKey.load(path).secret == key.secret
    assert key.secret.hex() not in repr(key)


def test_existing_key_file_is_not_replaced(tmp_path, key):
    path = key.save(tmp_path / "linkage.key")
    with pytest.raises(PartnerKitError, match="already exists"):
        LinkageKey.generate().save(path)
    assert LinkageKey.load(path).secret == key.secret


@pytest.mark.parametrize("content", ["", "not hex at all", "ab" * 16])
def test_damaged_key_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "linkage.key"
    path.write_text(content)
    with pytest.raises(PartnerKitError, match="linkage.key must hold 64 hex characters"):
        LinkageKey.load(path)


def test_missing_key_file_says_who_to_ask(tmp_path):
    with pytest.raises(PartnerKitError, match="key custodian"):
        LinkageKey.load(tmp_path / "nowhere.key")
