"""Approvals as signatures: who must sign an agreement, their signatures, and the key registry.

An agreement lists the roles that must sign it off (``required_signatures``: e.g. the
provider's Caldicott Guardian and SIRO, the recipient's SIRO and DPO). Each approver holds an
Ed25519 key made by ``placelink contracts approver-keygen`` (never by the hub) and signs with
``placelink contracts approve``; the signature lands in the agreement's ``approvals`` list.

What is signed: a small statement, canonical JSON after the context
``placelink-contract-approval/1\\0``, naming the agreement id, the SHA-256 of its **signed
content** (the significant projection, :mod:`pipelines.governance.contract_content`), the role, the party
and its organisation, the approver's name and key fingerprint, and the time of signing. So a
change that ``contracts diff`` classes as significant changes the content digest and voids every
signature; an editorial change (wording, review date, version label) or a status change does not.

The hub trusts a signature only through its **approver registry**
(``PLACELINK_HOME/keys/approvers/<fingerprint hex>.pub``), filled by the IG officer with
``placelink hub register-approver-key``: the registered name, role and organisation are what
count, not what the signature entry says. A required role is met by a valid signature from a
registered key with that role at that party's organisation, over the current content.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from pipelines.exchange.keys import ApproverKey, ApproverPublicKey, KeyFileError
from pipelines.governance.contract_content import DSA_PROPERTY, canonical_json, content_digest
from pipelines.governance.contracts import (
    SIGNING_ROLES,
    ApprovalSignature,
    Contract,
    ContractError,
    RequiredSignature,
    claimed_id,
    load_contract,
    load_contracts,
)

if TYPE_CHECKING:
    from pipelines.core.settings import Settings
    from pipelines.governance.audit import AuditLog

STATEMENT_CONTEXT = b"placelink-contract-approval/1\x00"


def party_organisation(contract: Contract, party: str) -> str:
    return (contract.terms.provider if party == "provider" else contract.terms.recipient).name


def requirement_label(contract: Contract, requirement: RequiredSignature) -> str:
    """e.g. ``Caldicott Guardian of Northshire NHS Foundation Trust (provider)``."""
    return f"{requirement.role_name} of {party_organisation(contract, requirement.party)} ({requirement.party})"


def approval_statement(
    contract_id: str,
    content_sha256: str,
    role: str,
    party: str,
    organisation: str,
    name: str,
    key: str,
    signed_at: str,
) -> bytes:
    """The exact bytes an approver signs."""
    return STATEMENT_CONTEXT + canonical_json(
        {
            "contract_id": contract_id,
            "content_sha256": content_sha256,
            "role": role,
            "party": party,
            "organisation": organisation,
            "name": name,
            "key": key,
            "signed_at": signed_at,
        }
    )


@dataclass(frozen=True)
class Signer:
    """Who a registered approver key belongs to, as the IG officer registered it (plain values,
    so a checked contract can travel to the quality worker process)."""

    name: str
    role: str
    organisation: str
    fingerprint: str

    @classmethod
    def of(cls, public: ApproverPublicKey) -> Signer:
        return cls(public.name, public.role, public.organisation, public.fingerprint)


@dataclass(frozen=True)
class SignatureCheck:
    """One signature entry as the hub judges it; ``problem`` says why it does not count."""

    entry: ApprovalSignature
    signer: Signer | None
    requirement: RequiredSignature | None
    problem: str | None

    @property
    def valid(self) -> bool:
        return self.problem is None

    @property
    def signed_on(self) -> str:
        return self.entry.signed_at[:10]

    @property
    def who(self) -> str:
        s = self.signer
        if s is None:
            return f"{self.entry.name} (key {self.entry.key[:19]}..., not registered)"
        return f"{s.name}, {SIGNING_ROLES.get(s.role, s.role)}, {s.organisation}"


@dataclass(frozen=True)
class ApprovalCheck:
    """Every required role and whether a valid signature meets it."""

    contract_id: str
    required: tuple[RequiredSignature, ...]
    labels: dict[RequiredSignature, str]
    signatures: tuple[SignatureCheck, ...]
    registry: str

    @property
    def met(self) -> dict[RequiredSignature, SignatureCheck]:
        """Each required role met, with the (latest) valid signature that meets it."""
        met: dict[RequiredSignature, SignatureCheck] = {}
        for check in self.signatures:
            if check.valid and check.requirement is not None:
                current = met.get(check.requirement)
                if current is None or check.entry.signed_at > current.entry.signed_at:
                    met[check.requirement] = check
        return met

    @property
    def missing(self) -> list[RequiredSignature]:
        met = self.met
        return [r for r in self.required if r not in met]

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def void(self) -> list[SignatureCheck]:
        return [c for c in self.signatures if not c.valid]

    def shortfall(self) -> str:
        """Why the agreement is not signed off, naming each missing role (one line; the signatures
        that do not count, and why, are in :attr:`void`)."""
        text = (
            f"not signed by {len(self.missing)} of the {len(self.required)} required roles: "
            + "; ".join(self.labels[r] for r in self.missing)
        )
        if self.void:
            reasons = sorted(
                {
                    c.problem.split(":", 1)[0] if c.problem.startswith("void") else c.problem
                    for c in self.void
                }
            )
            text += f" ({len(self.void)} signature(s) on it do not count: {'; '.join(reasons)})"
        return text

    def summary(self) -> str:
        """One line: ``signed by 3 of 4 required roles; missing: ...``."""
        met = len(self.required) - len(self.missing)
        text = f"signed by {met} of {len(self.required)} required roles"
        if self.missing:
            text += "; missing: " + "; ".join(self.labels[r] for r in self.missing)
        if self.void:
            text += f"; {len(self.void)} signature(s) do not count"
        return text


@dataclass
class ApproverRegistry:
    """The approvers' public keys the hub trusts: ``<folder>/<fingerprint hex>.pub``."""

    folder: Path
    _cache: dict[str, ApproverPublicKey | None] = field(default_factory=dict, repr=False)

    def path_for(self, fingerprint: str) -> Path:
        return Path(self.folder) / f"{fingerprint.removeprefix('sha256:')}.pub"

    def get(self, fingerprint: str) -> ApproverPublicKey | None:
        if fingerprint not in self._cache:
            path = self.path_for(fingerprint)
            try:
                key = ApproverPublicKey.load(path) if path.is_file() else None
            except KeyFileError:
                key = None
            self._cache[fingerprint] = (
                key if key is not None and key.fingerprint == fingerprint else None
            )
        return self._cache[fingerprint]

    def keys(self) -> list[ApproverPublicKey]:
        found = []
        for path in sorted(Path(self.folder).glob("*.pub")) if Path(self.folder).is_dir() else []:
            key = self.get("sha256:" + path.stem)
            if key is not None:
                found.append(key)
        return found

    def register(self, public: ApproverPublicKey) -> Path:
        """Keep ``public`` where the hub finds it (the IG officer's step); returns its path."""
        if public.role not in SIGNING_ROLES:
            raise KeyFileError(
                f"role '{public.role}' is not a signing role (use one of {', '.join(SIGNING_ROLES)})"
            )
        target = self.path_for(public.fingerprint)
        if not target.exists():
            public.save(target)
        self._cache.pop(public.fingerprint, None)
        return target

    def check(self, contract: Contract) -> ApprovalCheck:
        """Judge every signature on ``contract`` against its current content and this registry."""
        required = tuple(contract.terms.required_signatures)
        labels = {r: requirement_label(contract, r) for r in required}
        checks = tuple(self._judge(contract, entry, required) for entry in contract.terms.approvals)
        return ApprovalCheck(contract.id, required, labels, checks, str(self.folder))

    def _judge(
        self, contract: Contract, entry: ApprovalSignature, required: tuple[RequiredSignature, ...]
    ) -> SignatureCheck:
        signer = self.get(entry.key)
        requirement = next(
            (r for r in required if (r.role, r.party) == (entry.role, entry.party)), None
        )

        def judged(problem: str | None) -> SignatureCheck:
            return SignatureCheck(
                entry, Signer.of(signer) if signer else None, requirement, problem
            )

        if signer is None:
            return judged(
                f"key {entry.key} is not in the hub's approver registry; the IG officer registers "
                "it with `placelink hub register-approver-key`"
            )
        if requirement is None:
            return judged(
                f"the agreement does not ask for a {SIGNING_ROLES.get(entry.role, entry.role)} "
                f"of the {entry.party} (required_signatures)"
            )
        organisation = party_organisation(contract, entry.party)
        if (signer.role, signer.organisation) != (entry.role, organisation):
            return judged(
                f"key {entry.key[:19]}... is registered to {signer.name} as "
                f"{SIGNING_ROLES.get(signer.role, signer.role)} of {signer.organisation}, not as "
                f"{SIGNING_ROLES.get(entry.role, entry.role)} of {organisation}"
            )
        try:
            signature = base64.b64decode(entry.signature, validate=True)
        except ValueError:
            signature = b""
        statement = approval_statement(
            contract.id,
            entry.content_sha256,
            entry.role,
            entry.party,
            organisation,
            entry.name,
            entry.key,
            entry.signed_at,
        )
        if not signer.verify(signature, statement):
            return judged(
                "the signature does not verify (the entry was edited, or signed by another key)"
            )
        if entry.content_sha256 != contract.content_sha256:
            return judged(
                "void: the agreement's signed content changed after it was signed (a governance-"
                "significant change; see `placelink contracts diff`), so it must be signed again"
            )
        return judged(None)


# ---------------------------------------------------------------- signing

_APPROVALS_KEY = "approvals"


def key_lines(text: str, key: str) -> list[re.Match]:
    """Every ``key:`` line of an agreement's text, at any indentation (``indent`` and ``rest``
    groups): the line-level edits of signing and renewal (pipelines/governance/renewal.py) keep
    every other line and comment of the file as it was."""
    return list(re.finditer(rf"^(?P<indent>[ ]*){key}:(?P<rest>[^\n]*)$", text, re.MULTILINE))


def replace_block(text: str, key: str, after_key: str, items: list[dict]) -> str:
    """``key:`` and the YAML list under it replaced by ``items`` (one flow mapping per line),
    leaving every other line of the file (and its comments) as it was. Without a ``key:`` line
    the list goes right after the ``after_key:`` line, at its indentation."""
    found = key_lines(text, key)
    lines = text.splitlines(keepends=True)
    if len(found) > 1:
        raise ContractError(
            f"expected one '{key}:' line in the agreement terms, found {len(found)}"
        )
    if found:
        match = found[0]
        start = text.count("\n", 0, match.start())
        indent = len(match.group("indent"))
        end = start + 1
        if not match.group("rest").split("#", 1)[0].strip():
            while end < len(lines):
                line = lines[end]
                stripped = line.lstrip(" ")
                depth = len(line) - len(stripped)
                if stripped.strip() and (
                    depth > indent or (depth == indent and stripped.startswith("- "))
                ):
                    end += 1
                else:
                    break
    else:
        anchor = key_lines(text, after_key)
        if len(anchor) != 1:
            raise ContractError(f"expected one '{after_key}:' line in the agreement terms")
        start = end = text.count("\n", 0, anchor[0].start()) + 1
        indent = len(anchor[0].group("indent"))
    pad = " " * indent
    block = [f"{pad}{key}:{'' if items else ' []'}\n"]
    block += [
        f"{pad}- "
        + yaml.safe_dump(
            item, default_flow_style=True, sort_keys=False, width=1_000_000, allow_unicode=True
        ).strip()
        + "\n"
        for item in items
    ]
    if end == len(lines) and lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return "".join(lines[:start] + block + lines[end:])


def set_status(text: str, status: str) -> str:
    """The agreement's one ``approval_status:`` line set to ``status``."""
    found = key_lines(text, "approval_status")
    if len(found) != 1:
        raise ContractError("expected one 'approval_status:' line in the agreement terms")
    match = found[0]
    return (
        text[: match.start()]
        + f"{match.group('indent')}approval_status: {status}"
        + text[match.end() :]
    )


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.signing")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class Signed:
    """What ``approve`` did: the role signed for, and where the agreement now stands."""

    contract: Contract
    requirement: RequiredSignature
    label: str
    entry: ApprovalSignature
    approval: ApprovalCheck | None
    approved_now: bool

    def audit(self, audit: AuditLog, at: dt.datetime | None = None) -> None:
        """Write the ``contract_signed`` event for this signature (who signed which version of
        which agreement, with which key, over which content): the one form the CLI's
        ``contracts approve``, the demo's sign-off and the history bench's renewals all audit."""
        audit.append(
            "contract_signed",
            at=at,
            contract=self.contract.id,
            contract_version=self.contract.version,
            role=self.requirement.role,
            party=self.requirement.party,
            approver=self.entry.name,
            key=self.entry.key,
            content_sha256=self.entry.content_sha256,
            file=self.contract.path.name,
        )


def sign_contract(
    path: Path,
    key: ApproverKey,
    now: dt.datetime,
    registry: ApproverRegistry | None = None,
    loaded: Contract | None = None,
) -> Signed:
    """Sign the agreement in ``path`` as ``key``'s holder, in place.

    The approver's earlier signatures for the same role are replaced; nothing else in the file
    changes (the rewritten file is parsed again and compared before this returns). With the hub's
    ``registry``, a draft whose every required role is then signed becomes ``approved``. Raises
    :class:`ContractError` (the file is left as it was) when the agreement does not ask for this
    approver's role at their organisation. ``loaded``: the contract as just read from ``path``
    (a caller signing several times in a row saves re-validating the file).
    """
    path = Path(path)
    contract = loaded or load_contract(path)
    public = key.public
    requirement = next(
        (
            r
            for r in contract.terms.required_signatures
            if r.role == key.role and party_organisation(contract, r.party) == key.organisation
        ),
        None,
    )
    if requirement is None:
        needed = "; ".join(
            requirement_label(contract, r) for r in contract.terms.required_signatures
        )
        raise ContractError(
            f"{path.name}: agreement {contract.label} does not ask for a signature from "
            f"{SIGNING_ROLES.get(key.role, key.role)} of {key.organisation} (your key). It needs: {needed}. "
            "Fix: sign with the key of one of those roles, or change required_signatures (a significant change)"
        )
    signed_at = now.astimezone(dt.UTC).isoformat(timespec="seconds")
    organisation = party_organisation(contract, requirement.party)
    statement = approval_statement(
        contract.id,
        contract.content_sha256,
        requirement.role,
        requirement.party,
        organisation,
        key.name,
        public.fingerprint,
        signed_at,
    )
    entry = ApprovalSignature(
        role=requirement.role,
        party=requirement.party,
        name=key.name,
        key=public.fingerprint,
        signed_at=signed_at,
        content_sha256=contract.content_sha256,
        signature=base64.b64encode(key.sign(statement)).decode("ascii"),
    )
    approvals = [
        a
        for a in contract.terms.approvals
        if not (a.key == entry.key and (a.role, a.party) == (entry.role, entry.party))
    ] + [entry]
    status = contract.terms.approval_status
    signed = replace(contract, terms=contract.terms.model_copy(update={"approvals": approvals}))
    approval = registry.check(signed) if registry is not None else None
    approved_now = approval is not None and approval.complete and status == "draft"
    if approved_now:
        signed = replace(
            signed, terms=signed.terms.model_copy(update={"approval_status": "approved"})
        )
    original = path.read_text(encoding="utf-8")
    text = replace_block(
        original, _APPROVALS_KEY, "approval_status", [a.model_dump() for a in approvals]
    )
    if approved_now:
        text = set_status(text, "approved")
    _check_rewrite(path, text, signed)
    _write_atomically(path, text)
    return Signed(
        signed, requirement, requirement_label(contract, requirement), entry, approval, approved_now
    )


def _check_rewrite(path: Path, text: str, expected: Contract) -> None:
    """Refuse to write ``text`` unless it parses to the same signed content, with exactly the
    expected signatures and status: the edit must not have touched anything else."""
    try:
        document = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        terms = next(
            p["value"] for p in document["customProperties"] if p.get("property") == DSA_PROPERTY
        )
        same = (
            content_digest(document) == expected.content_sha256
            and [ApprovalSignature.model_validate(a) for a in terms.get("approvals") or []]
            == expected.terms.approvals
            and terms.get("approval_status") == expected.terms.approval_status
        )
    except (yaml.YAMLError, KeyError, TypeError, StopIteration, ValueError):
        same = False
    if not same:
        raise ContractError(
            f"{path.name}: the signature could not be added without changing the rest of the "
            "file (its 'approvals:' block is not a plain YAML list?). The file was left as it "
            "was. Fix: write 'approvals: []' as the last DSA term and sign again"
        )


# ---------------------------------------------------------------- demos and tests


def keys_for_required_roles(
    contracts: Iterable[Contract], names: Mapping[tuple[str, str], str] | None = None
) -> dict[tuple[str, str], ApproverKey]:
    """A fresh key for every (role, organisation) the agreements ask to sign, named from ``names``
    (default: the role and organisation). For the demo and the tests, which play the approvers;
    a real approver makes their own key with ``placelink contracts approver-keygen``."""
    keys: dict[tuple[str, str], ApproverKey] = {}
    for contract in contracts:
        for requirement in contract.terms.required_signatures:
            who = (requirement.role, party_organisation(contract, requirement.party))
            if who not in keys:
                name = (names or {}).get(who) or f"{requirement.role_name}, {who[1]}"
                keys[who] = ApproverKey.generate(name, *who)
    return keys


def sign_off(
    paths: Iterable[Path],
    keys: Mapping[tuple[str, str], ApproverKey],
    now: dt.datetime,
    registry: ApproverRegistry,
) -> list[Signed]:
    """Every required role of each agreement in ``paths`` signs it with its key in ``keys``
    (registered in ``registry`` first), so drafts become approved."""
    for key in keys.values():
        registry.register(key.public)
    signed = []
    for path in paths:
        contract = load_contract(path)
        for requirement in contract.terms.required_signatures:
            key = keys[(requirement.role, party_organisation(contract, requirement.party))]
            signed.append(sign_contract(path, key, now, registry, loaded=contract))
            contract = signed[-1].contract
    return signed


def hub_approver_registry(settings: Settings) -> ApproverRegistry:
    """The approvers' public keys the hub under ``settings`` trusts (``keys/approvers``)."""
    return ApproverRegistry(settings.approver_keys)


def load_hub_contracts(
    settings: Settings, folder: Path | None = None
) -> tuple[dict[str, Contract], dict[str, ContractError]]:
    """Every agreement in ``folder`` (default: ``settings.contracts_dir``), signatures checked
    against the hub's approver registry; returns (valid by id, problems by the contract id
    each invalid file claims), the shape every user of them takes: ingest, governance, the
    register and the CLI (issue 19)."""
    contracts, problems = load_contracts(
        folder or settings.contracts_dir, hub_approver_registry(settings)
    )
    return contracts, {claimed_id(path): error for path, error in problems.items()}
