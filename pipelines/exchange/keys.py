"""Keys of the secure exchange: partners' Ed25519 signing keys and the hub's HPKE keys.

Who holds what (see docs/envelope.md):

* a partner holds its **signing key** (Ed25519) and gives the public half to the hub's
  IG officer, who writes its fingerprint into the partner's contract;
* the hub holds its **decryption key** (HPKE, per key either the post-quantum hybrid
  ML-KEM-768 + X25519 or plain X25519) and gives the public half to every partner.

Key files are small JSON documents holding PEM blocks made by ``cryptography``
(PKCS#8 for private keys, encrypted with the passphrase when one is given;
SubjectPublicKeyInfo for public keys). Private key files are created with mode 0600
and never overwritten. A fingerprint is ``sha256:`` + the hex SHA-256 of the raw
public key bytes (for the hybrid key, ML-KEM-768 public bytes then X25519 public bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519

SIGNING_KEY_FORMAT = "placelink-signing-key/1"
SIGNING_PUBLIC_FORMAT = "placelink-signing-public-key/1"
HUB_KEY_FORMAT = "placelink-hub-key/1"
HUB_PUBLIC_FORMAT = "placelink-hub-public-key/1"
HUB_KEMS = ("MLKEM768_X25519", "X25519")
DEFAULT_HUB_KEM = "MLKEM768_X25519"


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file and what to do."""


def fingerprint(raw_public: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw_public).hexdigest()


def _pem_private(key, passphrase: bytes | None) -> str:
    encryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def _pem_public(key) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _raw_public(key) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _write_new(path: Path, document: dict, private: bool) -> Path:
    path = Path(path)
    if path.exists():
        raise KeyFileError(f"{path} exists; key files are never overwritten (move it away first)")
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL + mode at creation: a private key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(document, indent=2) + "\n")
    return path


def _read(path: Path, expected_format: str) -> dict:
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot be read ({exc.strerror})") from None
    except ValueError:
        raise KeyFileError(
            f"{path}: not a placelink key file (expected JSON '{expected_format}')"
        ) from None
    if not isinstance(document, dict) or document.get("format") != expected_format:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise KeyFileError(f"{path}: is a '{found}' file, expected '{expected_format}'")
    return document


def _load_private_pem(pem: str, passphrase: bytes | None, path: Path):
    try:
        return serialization.load_pem_private_key(pem.encode(), password=passphrase or None)
    except TypeError:
        if passphrase:
            raise KeyFileError(
                f"{path}: the key is not passphrase-protected; omit the passphrase"
            ) from None
        raise KeyFileError(
            f"{path}: the key is passphrase-protected; give the passphrase "
            "(--passphrase-file, PLACELINK_SIGNING_KEY_PASSPHRASE for a partner key, "
            "PLACELINK_HUB_KEY_PASSPHRASE for the hub key)"
        ) from None
    except ValueError:
        raise KeyFileError(f"{path}: wrong passphrase, or the key file is damaged") from None


def _verified(key: ed25519.Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _ed25519_public(path: Path, expected_format: str) -> tuple[dict, ed25519.Ed25519PublicKey]:
    document = _read(path, expected_format)
    key = serialization.load_pem_public_key(document["public_key"].encode())
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 public key")
    return document, key


def _ed25519_private(
    path: Path, expected_format: str, passphrase: bytes | None
) -> tuple[dict, ed25519.Ed25519PrivateKey]:
    document = _read(path, expected_format)
    key = _load_private_pem(document["private_key"], passphrase, Path(path))
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 signing key")
    return document, key


class _PublicEd25519:
    """Fingerprint and verification shared by the Ed25519 public keys (partners, approvers, audit)."""

    key: ed25519.Ed25519PublicKey

    @property
    def fingerprint(self) -> str:
        return fingerprint(_raw_public(self.key))

    def verify(self, signature: bytes, message: bytes) -> bool:
        return _verified(self.key, signature, message)


class _PrivateEd25519:
    """Fingerprint and signing shared by the Ed25519 private keys; ``public`` is the class's own."""

    key: ed25519.Ed25519PrivateKey

    @property
    def fingerprint(self) -> str:
        return self.public.fingerprint

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)


# --- partner signing keys (Ed25519) -------------------------------------------------------


@dataclass(frozen=True)
class SigningPublicKey(_PublicEd25519):
    partner_id: str
    key: ed25519.Ed25519PublicKey

    def save(self, path: Path) -> Path:
        return _write_new(
            path,
            {
                "format": SIGNING_PUBLIC_FORMAT,
                "partner_id": self.partner_id,
                "fingerprint": self.fingerprint,
                "public_key": _pem_public(self.key),
            },
            private=False,
        )

    @classmethod
    def load(cls, path: Path) -> SigningPublicKey:
        document, key = _ed25519_public(path, SIGNING_PUBLIC_FORMAT)
        return cls(document["partner_id"], key)


@dataclass(frozen=True)
class SigningKey(_PrivateEd25519):
    """A partner's Ed25519 signing key."""

    partner_id: str
    key: ed25519.Ed25519PrivateKey

    @classmethod
    def generate(cls, partner_id: str) -> SigningKey:
        return cls(partner_id, ed25519.Ed25519PrivateKey.generate())

    @property
    def public(self) -> SigningPublicKey:
        return SigningPublicKey(self.partner_id, self.key.public_key())

    def save(self, path: Path, passphrase: bytes | None = None) -> Path:
        return _write_new(
            path,
            {
                "format": SIGNING_KEY_FORMAT,
                "partner_id": self.partner_id,
                "fingerprint": self.fingerprint,
                "private_key": _pem_private(self.key, passphrase),
            },
            private=True,
        )

    @classmethod
    def load(cls, path: Path, passphrase: bytes | None = None) -> SigningKey:
        document, key = _ed25519_private(path, SIGNING_KEY_FORMAT, passphrase)
        return cls(document["partner_id"], key)


# --- hub decryption keys (HPKE) -----------------------------------------------------------


@dataclass(frozen=True)
class HubPublicKey:
    """What a partner needs to encrypt for the hub: the KEM and its public key."""

    kem: str
    key: object  # hpke.MLKEM768X25519PublicKey | x25519.X25519PublicKey
    _raw: bytes
    _pems: tuple[str, ...]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self._raw)

    def save(self, path: Path) -> Path:
        return _write_new(
            path,
            {
                "format": HUB_PUBLIC_FORMAT,
                "kem": self.kem,
                "fingerprint": self.fingerprint,
                "public_keys": list(self._pems),
            },
            private=False,
        )

    @classmethod
    def load(cls, path: Path) -> HubPublicKey:
        document = _read(path, HUB_PUBLIC_FORMAT)
        kem = document.get("kem")
        keys = [
            serialization.load_pem_public_key(p.encode()) for p in document.get("public_keys", [])
        ]
        return _hub_public(kem, keys, Path(path))


def _hub_public(kem: str, keys: list, path: Path | None) -> HubPublicKey:
    where = f"{path}: " if path else ""
    if kem == "MLKEM768_X25519":
        if (
            len(keys) != 2
            or not isinstance(keys[0], mlkem.MLKEM768PublicKey)
            or not isinstance(keys[1], x25519.X25519PublicKey)
        ):
            raise KeyFileError(
                f"{where}a MLKEM768_X25519 key needs an ML-KEM-768 and an X25519 public key"
            )
        return HubPublicKey(
            kem,
            hpke.MLKEM768X25519PublicKey(keys[0], keys[1]),
            keys[0].public_bytes_raw() + _raw_public(keys[1]),
            tuple(_pem_public(k) for k in keys),
        )
    if kem == "X25519":
        if len(keys) != 1 or not isinstance(keys[0], x25519.X25519PublicKey):
            raise KeyFileError(f"{where}a X25519 key needs one X25519 public key")
        return HubPublicKey(kem, keys[0], _raw_public(keys[0]), (_pem_public(keys[0]),))
    raise KeyFileError(f"{where}unknown KEM '{kem}' (supported: {', '.join(HUB_KEMS)})")


@dataclass(frozen=True)
class HubKey:
    """The hub's HPKE decryption key; ``kem`` is ``MLKEM768_X25519`` (default) or ``X25519``."""

    kem: str
    parts: tuple  # (MLKEM768PrivateKey, X25519PrivateKey) or (X25519PrivateKey,)

    @classmethod
    def generate(cls, kem: str = DEFAULT_HUB_KEM) -> HubKey:
        if kem == "MLKEM768_X25519":
            return cls(
                kem, (mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate())
            )
        if kem == "X25519":
            return cls(kem, (x25519.X25519PrivateKey.generate(),))
        raise KeyFileError(f"unknown KEM '{kem}' (supported: {', '.join(HUB_KEMS)})")

    @property
    def private(self):
        """The private key object ``hpke.Suite.decrypt`` takes."""
        if self.kem == "MLKEM768_X25519":
            return hpke.MLKEM768X25519PrivateKey(*self.parts)
        return self.parts[0]

    @property
    def public(self) -> HubPublicKey:
        return _hub_public(self.kem, [p.public_key() for p in self.parts], None)

    @property
    def fingerprint(self) -> str:
        return self.public.fingerprint

    def save(self, path: Path, passphrase: bytes | None = None) -> Path:
        return _write_new(
            path,
            {
                "format": HUB_KEY_FORMAT,
                "kem": self.kem,
                "fingerprint": self.fingerprint,
                "private_keys": [_pem_private(p, passphrase) for p in self.parts],
            },
            private=True,
        )

    @classmethod
    def load(cls, path: Path, passphrase: bytes | None = None) -> HubKey:
        document = _read(path, HUB_KEY_FORMAT)
        parts = tuple(
            _load_private_pem(p, passphrase, Path(path)) for p in document.get("private_keys", [])
        )
        key = cls(document.get("kem"), parts)
        _ = key.public  # validates the kem and the parts
        return key


def partner_key_path(partner_keys: Path, key_fingerprint: str) -> Path:
    """Where the hub keeps a registered partner public key: ``<partner_keys>/<hex>.pub``
    (``PLACELINK_HOME/keys/partners/`` on a hub)."""
    return Path(partner_keys) / f"{key_fingerprint.removeprefix('sha256:')}.pub"


_FINGERPRINT_LINE = re.compile(r"^(\s*signing_key_fingerprint:)[^\n]*$", re.MULTILINE)


def register_partner_key(contract_path: Path, public: SigningPublicKey, partner_keys: Path) -> Path:
    """The IG officer's step: keep ``public`` where the hub finds it and name it in the contract.

    Writes ``partner_keys/<fingerprint hex>.pub`` (if not already there) and sets the
    contract's ``signing_key_fingerprint`` in place, leaving the rest of the file (and
    its comments) as it was. Returns the public key file.
    """
    contract_path = Path(contract_path)
    text = contract_path.read_text(encoding="utf-8")
    if len(_FINGERPRINT_LINE.findall(text)) != 1:
        raise KeyFileError(
            f"{contract_path.name}: expected one 'signing_key_fingerprint:' line in the "
            "dataSharingAgreement terms"
        )
    target = partner_key_path(partner_keys, public.fingerprint)
    if not target.exists():
        public.save(target)
    contract_path.write_text(
        _FINGERPRINT_LINE.sub(lambda m: f"{m.group(1)} {public.fingerprint}", text),
        encoding="utf-8",
    )
    return target


# --- approvers' signing keys (Ed25519) ----------------------------------------------------

APPROVER_KEY_FORMAT = "placelink-approver-key/1"
APPROVER_PUBLIC_FORMAT = "placelink-approver-public-key/1"


@dataclass(frozen=True)
class ApproverPublicKey(_PublicEd25519):
    """An approver's public key with who they are: name, role (``caldicott_guardian``, ``siro``,
    ``dpo``, ``information_governance_lead``) and organisation. The hub's IG officer checks those
    when registering the key; the hub then trusts the registered copy, not what a signature claims."""

    name: str
    role: str
    organisation: str
    key: ed25519.Ed25519PublicKey

    def save(self, path: Path) -> Path:
        return _write_new(
            path,
            {
                "format": APPROVER_PUBLIC_FORMAT,
                "name": self.name,
                "role": self.role,
                "organisation": self.organisation,
                "fingerprint": self.fingerprint,
                "public_key": _pem_public(self.key),
            },
            private=False,
        )

    @classmethod
    def load(cls, path: Path) -> ApproverPublicKey:
        document, key = _ed25519_public(path, APPROVER_PUBLIC_FORMAT)
        return cls(document["name"], document["role"], document["organisation"], key)


@dataclass(frozen=True)
class ApproverKey(_PrivateEd25519):
    """An approver's Ed25519 key: signs the agreements they approve (``placelink contracts approve``).
    Kept by the approver, never by the hub."""

    name: str
    role: str
    organisation: str
    key: ed25519.Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str, role: str, organisation: str) -> ApproverKey:
        return cls(name, role, organisation, ed25519.Ed25519PrivateKey.generate())

    @property
    def public(self) -> ApproverPublicKey:
        return ApproverPublicKey(self.name, self.role, self.organisation, self.key.public_key())

    def save(self, path: Path, passphrase: bytes | None = None) -> Path:
        return _write_new(
            path,
            {
                "format": APPROVER_KEY_FORMAT,
                "name": self.name,
                "role": self.role,
                "organisation": self.organisation,
                "fingerprint": self.fingerprint,
                "private_key": _pem_private(self.key, passphrase),
            },
            private=True,
        )

    @classmethod
    def load(cls, path: Path, passphrase: bytes | None = None) -> ApproverKey:
        document, key = _ed25519_private(path, APPROVER_KEY_FORMAT, passphrase)
        return cls(document["name"], document["role"], document["organisation"], key)


# --- the hub's audit key (Ed25519): signs the audit log's head -----------------------------

AUDIT_KEY_FORMAT = "placelink-audit-key/1"
AUDIT_PUBLIC_FORMAT = "placelink-audit-public-key/1"


@dataclass(frozen=True)
class AuditPublicKey(_PublicEd25519):
    key: ed25519.Ed25519PublicKey

    def save(self, path: Path) -> Path:
        return _write_new(
            path,
            {
                "format": AUDIT_PUBLIC_FORMAT,
                "fingerprint": self.fingerprint,
                "public_key": _pem_public(self.key),
            },
            private=False,
        )

    @classmethod
    def load(cls, path: Path) -> AuditPublicKey:
        return cls(_ed25519_public(path, AUDIT_PUBLIC_FORMAT)[1])


@dataclass(frozen=True)
class AuditKey(_PrivateEd25519):
    """The hub's key for signing the audit log's head (``PLACELINK_HOME/keys/audit.key``)."""

    key: ed25519.Ed25519PrivateKey

    @classmethod
    def generate(cls) -> AuditKey:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @property
    def public(self) -> AuditPublicKey:
        return AuditPublicKey(self.key.public_key())

    def save(self, path: Path, passphrase: bytes | None = None) -> Path:
        return _write_new(
            path,
            {
                "format": AUDIT_KEY_FORMAT,
                "fingerprint": self.fingerprint,
                "private_key": _pem_private(self.key, passphrase),
            },
            private=True,
        )

    @classmethod
    def load(cls, path: Path, passphrase: bytes | None = None) -> AuditKey:
        return cls(_ed25519_private(path, AUDIT_KEY_FORMAT, passphrase)[1])
