"""Envelope throughput: seal (encrypt+sign) and open (verify+decrypt+hash) against plain AES-GCM.

The baseline is one AES-256-GCM pass (``cryptography``'s AESGCM) over the same bytes, read
from the same file in the same chunk size and written to a file beside it: what encryption
alone costs on this machine. Peak memory is the growth of the process's maximum resident
set while the step runs, to show that memory stays flat whatever the extract's size.
"""

from __future__ import annotations

import hashlib
import os
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipelines.exchange.envelope import (
    DEFAULT_CHUNK_BYTES,
    decrypt_chunks,
    hash_and_collect,
    read_header,
    seal,
    signature_valid,
)
from pipelines.exchange.keys import HubKey, SigningKey


@dataclass(frozen=True)
class Measurement:
    step: str
    mb_per_s: list[float]
    peak_rss_growth_mb: float

    @property
    def median(self) -> float:
        return statistics.median(self.mb_per_s)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _write_extract(path: Path, megabytes: int) -> None:
    block = os.urandom(1 << 20)  # incompressible, like a zstd-compressed Parquet extract
    with open(path, "wb") as handle:
        for i in range(megabytes):
            handle.write(hashlib.sha256(i.to_bytes(8, "big")).digest() + block[32:])


def _aes_gcm_pass(source: Path, target: Path, chunk: int, key: bytes) -> None:
    aead = AESGCM(key)
    with open(source, "rb") as inp, open(target, "wb") as out:
        counter = 0
        while data := inp.read(chunk):
            out.write(aead.encrypt(counter.to_bytes(12, "big"), data, None))
            counter += 1


def _aes_gcm_decrypt_pass(source: Path, chunk: int, key: bytes) -> None:
    aead = AESGCM(key)
    with open(source, "rb") as inp:
        counter = 0
        while data := inp.read(chunk + 16):
            aead.decrypt(counter.to_bytes(12, "big"), data, None)
            counter += 1


def _open(envelope: Path, signer, hub_key: HubKey) -> None:
    with open(envelope, "rb") as stream:
        sealed = read_header(stream)
        assert signature_valid(sealed, signer)
        assert (
            hash_and_collect(decrypt_chunks(stream, sealed, hub_key))
            == sealed.header.content_sha256
        )


def run(
    megabytes: int = 100,
    repeats: int = 3,
    kem: str = "MLKEM768_X25519",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    folder: Path | None = None,
) -> list[Measurement]:
    """Median MB/s over ``repeats`` runs of each step on a ``megabytes`` MB extract."""
    signer, hub_key = SigningKey.generate("bench"), HubKey.generate(kem)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        tmp = Path(tmp)
        extract, envelope, baseline = tmp / "extract.parquet", tmp / "extract.plx", tmp / "aes.bin"
        _write_extract(extract, megabytes)
        key = AESGCM.generate_key(256)
        steps = {
            "AES-256-GCM encrypt (baseline)": lambda: _aes_gcm_pass(
                extract, baseline, chunk_bytes, key
            ),
            "envelope seal: hash + HPKE encrypt + sign": lambda: seal(
                extract,
                envelope,
                contract_id="bench",
                contract_version="1",
                partner_id="bench",
                dataset="bench",
                reporting_period="2026-10",
                created_at="2026-10-31T00:00:00+00:00",
                row_count=0,
                signing_key=signer,
                hub_key=hub_key.public,
                chunk_bytes=chunk_bytes,
            ),
            "AES-256-GCM decrypt (baseline)": lambda: _aes_gcm_decrypt_pass(
                baseline, chunk_bytes, key
            ),
            "envelope open: verify + HPKE decrypt + hash": lambda: _open(
                envelope, signer.public, hub_key
            ),
        }
        # Steps take turns within each repeat, so a busy neighbour on a shared machine slows
        # the baseline and the envelope alike rather than whichever ran at the time.
        speeds: dict[str, list[float]] = {name: [] for name in steps}
        growth: dict[str, float] = {name: 0.0 for name in steps}
        for _ in range(repeats):
            for name, step in steps.items():
                before = _peak_rss_mb()
                started = time.perf_counter()
                step()
                speeds[name].append(megabytes / (time.perf_counter() - started))
                growth[name] = max(growth[name], _peak_rss_mb() - before)
        return [Measurement(name, speeds[name], growth[name]) for name in steps]
