"""Seal a prepared extract for the hub: encrypt with the hub's public key, sign with the partner's key.

The last step of ``placelink partner prepare``. The envelope ``OUT/<stem>.plx`` is the
only file that goes to the hub; the clear (pseudonymised) Parquet it wraps moves to
``OUT/partner-only/<stem>.parquet``, the partner's own record of exactly what was sent.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.exchange.envelope import DEFAULT_CHUNK_BYTES, ENVELOPE_SUFFIX, EnvelopeHeader, seal
from pipelines.exchange.extract_file import PARTNER_ONLY_DIR, delivery_fields
from pipelines.exchange.keys import HubPublicKey, SigningKey
from pipelines.partner_kit.errors import PartnerKitError
from pipelines.partner_kit.prepare import PreparedExtract


@dataclass(frozen=True)
class SealedExtract:
    """The envelope for the hub, its header, and the prepared files (clear copy partner-only)."""

    envelope_path: Path
    envelope: EnvelopeHeader
    prepared: PreparedExtract

    @property
    def header(self):
        """The extract header (dataset, counts) as the partner kit made it."""
        return self.prepared.header


def seal_prepared(
    prepared: PreparedExtract,
    signing_key: SigningKey,
    hub_key: HubPublicKey,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> SealedExtract:
    """Encrypt and sign ``prepared``; the envelope id is the extract id inside the Parquet header."""
    h = prepared.header
    if signing_key.partner_id != h.partner_id:
        raise PartnerKitError(
            f"signing key is partner '{signing_key.partner_id}'s, but contract {h.contract_id} is for "
            f"partner '{h.partner_id}': sign with your own key (`placelink partner keygen`)"
        )
    source = prepared.extract_path
    envelope_path = source.with_name(source.name.removesuffix(".parquet") + ENVELOPE_SUFFIX)
    envelope = seal(
        source,
        envelope_path,
        **delivery_fields(h),
        signing_key=signing_key,
        hub_key=hub_key,
        envelope_id=h.extract_id,
        chunk_bytes=chunk_bytes,
    )
    kept = source.parent / PARTNER_ONLY_DIR / source.name
    os.replace(source, kept)
    return SealedExtract(envelope_path, envelope, dataclasses.replace(prepared, extract_path=kept))
