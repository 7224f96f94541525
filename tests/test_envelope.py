"""The .plx envelope and its keys, without the hub: round trips, tampering, key files, the CLI."""

import hashlib
import io
import os
import stat

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.cli import main
from pipelines.exchange.envelope import (
    EnvelopeError,
    decrypt_chunks,
    read_header,
    seal,
    signature_valid,
)
from pipelines.exchange.keys import HubKey, HubPublicKey, KeyFileError, SigningKey, SigningPublicKey

HEADER = dict(
    contract_id="vcs-family-support",
    contract_version="1.0.0",
    partner_id="vcs",
    dataset="family_support_enrolments",
    reporting_period="2026-10",
    created_at="2026-10-31T09:00:00+00:00",
    row_count=12,
)


@pytest.fixture(scope="module")
def keys():
    return SigningKey.generate("vcs"), HubKey.generate("MLKEM768_X25519"), HubKey.generate("X25519")


def _open(data: bytes, signer: SigningPublicKey, hub: HubKey) -> bytes:
    """Every check the hub makes on the envelope itself; raises on the first failure."""
    stream = io.BytesIO(data)
    sealed = read_header(stream)
    if not signature_valid(sealed, signer):
        raise EnvelopeError("signature", "a valid signature", "an invalid one")
    plain = b"".join(decrypt_chunks(stream, sealed, hub))
    if hashlib.sha256(plain).hexdigest() != sealed.header.content_sha256:
        raise EnvelopeError("content", "the signed content hash", "another")
    return plain


@pytest.mark.parametrize(
    "kem_index, size, chunk",
    [(1, 0, 64), (1, 1000, 64), (1, 1024, 256), (2, 5000, 4096), (2, 3, 1 << 20)],
)
def test_round_trip_in_chunks_for_both_kems(keys, tmp_path, kem_index, size, chunk):
    signer, hub = keys[0], keys[kem_index]
    plain = os.urandom(size)
    (tmp_path / "extract.parquet").write_bytes(plain)
    header = seal(
        tmp_path / "extract.parquet",
        tmp_path / "e.plx",
        signing_key=signer,
        hub_key=hub.public,
        chunk_bytes=chunk,
        **HEADER,
    )
    assert header.kem == hub.kem and header.content_bytes == size
    assert _open((tmp_path / "e.plx").read_bytes(), signer.public, hub) == plain
    assert plain[:32] not in (tmp_path / "e.plx").read_bytes() or size < 32


@pytest.fixture(scope="module")
def small_envelope(keys, tmp_path_factory):
    folder = tmp_path_factory.mktemp("envelope")
    (folder / "x.parquet").write_bytes(os.urandom(700))
    # Small chunks, so mutations land in chunk lengths, encapsulations, ciphertexts and tags.
    seal(
        folder / "x.parquet",
        folder / "x.plx",
        signing_key=keys[0],
        hub_key=keys[2].public,
        chunk_bytes=256,
        **HEADER,
    )
    return (folder / "x.plx").read_bytes()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_every_flipped_byte_is_rejected(keys, small_envelope, data):
    flips = data.draw(
        st.lists(
            st.tuples(st.integers(0, len(small_envelope) - 1), st.integers(1, 255)),
            min_size=1,
            max_size=4,
            unique_by=lambda f: f[0],
        )
    )
    mutated = bytearray(small_envelope)
    for offset, mask in flips:
        mutated[offset] ^= mask
    with pytest.raises(EnvelopeError):
        _open(bytes(mutated), keys[0].public, keys[2])


def test_truncated_or_extended_envelopes_are_rejected(keys, small_envelope):
    assert _open(small_envelope, keys[0].public, keys[2])
    for cut in (1, 10, 100, len(small_envelope) - 200):
        with pytest.raises(EnvelopeError):
            _open(small_envelope[:-cut], keys[0].public, keys[2])
    with pytest.raises(EnvelopeError, match="extra bytes"):
        _open(small_envelope + b"\0", keys[0].public, keys[2])


def test_another_partners_signature_and_another_hubs_key_are_rejected(keys, small_envelope):
    with pytest.raises(EnvelopeError) as rejected:
        _open(small_envelope, SigningKey.generate("vcs").public, keys[2])
    assert rejected.value.check == "signature"
    with pytest.raises(EnvelopeError) as rejected:
        _open(small_envelope, keys[0].public, HubKey.generate("X25519"))
    assert rejected.value.check == "decryption"


def test_private_keys_are_owner_only_and_passphrase_protected(tmp_path):
    signer, hub = SigningKey.generate("nhs"), HubKey.generate()
    signer.save(tmp_path / "nhs.key", b"s3cret")
    hub.save(tmp_path / "hub.key", b"other")
    for name in ("nhs.key", "hub.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "nhs.key").read_bytes()
    assert SigningKey.load(tmp_path / "nhs.key", b"s3cret").fingerprint == signer.fingerprint
    assert HubKey.load(tmp_path / "hub.key", b"other").fingerprint == hub.fingerprint
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        SigningKey.load(tmp_path / "nhs.key", b"guess")
    with pytest.raises(KeyFileError, match="passphrase-protected"):
        HubKey.load(tmp_path / "hub.key")
    with pytest.raises(KeyFileError, match="never overwritten"):
        signer.save(tmp_path / "nhs.key")
    hub.public.save(tmp_path / "hub.pub")
    assert HubPublicKey.load(tmp_path / "hub.pub").fingerprint == hub.fingerprint


def test_keygen_commands_never_print_a_private_key(tmp_path, monkeypatch):
    monkeypatch.setenv("PLACELINK_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    partner = runner.invoke(
        main, ["partner", "keygen", "--partner", "vcs", "--out", str(tmp_path / "vcs.key")]
    )
    hub = runner.invoke(main, ["hub", "keygen", "--kem", "X25519"])
    assert partner.exit_code == 0 and hub.exit_code == 0
    assert "fingerprint: sha256:" in partner.output and "fingerprint: sha256:" in hub.output
    printed = partner.output + hub.output
    assert "PRIVATE" not in printed and "BEGIN" not in printed
    assert SigningPublicKey.load(tmp_path / "vcs.pub").fingerprint in partner.output
    again = runner.invoke(main, ["hub", "keygen"])
    assert again.exit_code == 2 and "never overwritten" in again.output
