"""A small synthetic place, prepared by every partner with a key made for the test run."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from approvers import sign_contracts

from pipelines.core.settings import REPO_ROOT, Settings
from pipelines.exchange.envelope import seal
from pipelines.exchange.keys import ApproverKey, HubKey, SigningKey, register_partner_key
from pipelines.governance.approvals import ApproverRegistry, keys_for_required_roles, sign_off
from pipelines.governance.contracts import Contract, load_contracts
from pipelines.partner_kit.prepare import PreparedExtract, prepare_extract
from pipelines.partner_kit.seal import SealedExtract, seal_prepared
from pipelines.partner_kit.tokens import LinkageKey
from pipelines.tooling.synth import generate_place
from pipelines.tooling.synth.study import DELIVERED_AT, DELIVERY_PERIOD

# Set when this file is imported, before pytest loads the conftests of the paths it was given
# (tests/linkage/conftest.py builds assets from the environment's contracts at import), which is
# before any pytest_configure hook runs.
#
# The suite runs as of the day the synthetic place's extracts are delivered (the injected clock,
# pipelines/core/clock.py), so the shipped agreements are in force and its dates plausible whatever
# the calendar says. Tests about other days set their own date.
os.environ.setdefault("PLACELINK_AS_OF", DELIVERED_AT.isoformat())
# Nothing in the suite may read or write the developer's own hub (./.placelink, or wherever
# PLACELINK_HOME points): what the code location reads (its landing assets come from the
# contracts in the home) would depend on the last demo run there. Tests that need a home make their own.
_HOME = Path(tempfile.mkdtemp(prefix="placelink-test-home-")) / ".placelink"
os.environ["PLACELINK_HOME"] = str(_HOME)
os.environ["PLACELINK_DEMO_PARTNERS"] = str(_HOME.with_name(".placelink-partners"))


@dataclass(frozen=True)
class PreparedPlace:
    place: Path
    contracts: dict[str, Contract]
    extracts: list[PreparedExtract]
    envelopes: list[SealedExtract]
    contracts_dir: Path  # the repo's contracts with each partner's key registered, signed off
    signing_keys: dict[str, SigningKey]
    hub_key: HubKey
    partner_keys: Path  # registered public keys, as the hub keeps them
    approver_keys: dict[tuple[str, str], ApproverKey]  # (role, organisation) -> the approver's key
    approver_registry: Path  # the approvers' registered public keys, as the hub keeps them

    def extract(self, dataset: str) -> PreparedExtract:
        """The partner's clear copy of a prepared extract (what the envelope wraps)."""
        return next(e for e in self.extracts if e.header.dataset == dataset)

    def envelope(self, dataset: str) -> SealedExtract:
        return next(e for e in self.envelopes if e.header.dataset == dataset)

    def reseal(
        self,
        dataset: str,
        target: Path,
        mutate_table=None,
        signing_key=None,
        hub_key=None,
        **header,
    ) -> Path:
        """A new envelope around the partner's extract (its rows changed as a faulty or hostile
        sender might), signed with the partner's key unless another is given."""
        sealed = self.envelope(dataset)
        source = self.extract(dataset).extract_path
        h = sealed.envelope
        fields = dict(
            contract_id=h.contract_id,
            contract_version=h.contract_version,
            partner_id=h.partner_id,
            dataset=h.dataset,
            reporting_period=h.reporting_period,
            created_at=h.created_at,
            row_count=h.row_count,
        )
        if mutate_table:
            table = mutate_table(pq.read_table(source))
            source = target.with_name(target.name + ".parquet")
            pq.write_table(table, source)
            fields["row_count"] = table.num_rows
        fields.update(header)
        seal(
            source,
            target,
            signing_key=signing_key or self.signing_keys[h.partner_id],
            hub_key=hub_key or self.hub_key.public,
            **fields,
        )
        if mutate_table:
            source.unlink()
        return target

    def stage_hub(self, home: Path, datasets: list[str] | None = None) -> Settings:
        """A hub home with these envelopes in its inbox, the hub key, the partners' registered
        public keys and the area reference in place."""
        # The hub keeps its registered contracts in PLACELINK_HOME/contracts, as the demo does,
        # so anything that only knows the home (a resource, the CLI) finds the signing keys.
        if not (home / "contracts").exists():
            shutil.copytree(self.contracts_dir, home / "contracts")
        # The suite's clock (PLACELINK_AS_OF, set in pytest_configure), the rest from nothing.
        settings = Settings.from_env(
            {"PLACELINK_HOME": str(home), "PLACELINK_AS_OF": os.environ["PLACELINK_AS_OF"]}
        )
        assert settings.contracts_dir == (home / "contracts").resolve()
        settings.ensure_dirs()
        if not settings.hub_key_path.exists():
            self.hub_key.save(settings.hub_key_path)
        shutil.copytree(self.partner_keys, settings.partner_keys, dirs_exist_ok=True)
        shutil.copytree(self.approver_registry, settings.approver_keys, dirs_exist_ok=True)
        for sealed in self.envelopes:
            if datasets is None or sealed.header.dataset in datasets:
                shutil.copy2(sealed.envelope_path, settings.inbox / sealed.envelope_path.name)
        shutil.copy2(
            self.place / "reference" / "lsoa_reference.csv",
            settings.reference / "lsoa_reference.csv",
        )
        return settings


def prepare_place(people: int, seed: int, root: Path) -> PreparedPlace:
    place = root / "place"
    generate_place(people=people, seed=seed, out=place)
    key = LinkageKey.generate()
    hub_key = HubKey.generate()
    contracts_dir, partner_keys = root / "contracts", root / "hub-keys" / "partners"
    shutil.copytree(REPO_ROOT / "contracts", contracts_dir)
    contracts, problems = load_contracts(contracts_dir)
    assert not problems
    signing_keys = {c.partner_id: SigningKey.generate(c.partner_id) for c in contracts.values()}
    for contract in contracts.values():
        register_partner_key(contract.path, signing_keys[contract.partner_id].public, partner_keys)
    # The approvers sign off the repo's draft agreements (after the partners' keys are in them:
    # the key is part of the signed content), so they are approved and in force.
    registry = ApproverRegistry(root / "hub-keys" / "approvers")
    approver_keys = keys_for_required_roles(contracts.values())
    sign_off([c.path for c in contracts.values()], approver_keys, DELIVERED_AT, registry)
    contracts, problems = load_contracts(contracts_dir, registry)
    assert not problems and all(c.signed_off for c in contracts.values())
    extracts, envelopes = [], []
    for contract in contracts.values():
        for dataset in contract.datasets:
            opt_outs = (
                place / "reference" / "national_data_opt_outs.csv"
                if contract.terms.national_data_opt_out_applies
                else None
            )
            prepared = prepare_extract(
                contract,
                dataset,
                place / "raw" / contract.partner_id / f"{dataset}.csv",
                root / "outbox" / contract.partner_id,
                key,
                place / "reference" / "postcode_lookup.csv",
                opt_outs=opt_outs,
                period=DELIVERY_PERIOD,
                now=DELIVERED_AT,
            )
            sealed = seal_prepared(prepared, signing_keys[contract.partner_id], hub_key.public)
            envelopes.append(sealed)
            extracts.append(sealed.prepared)
    return PreparedPlace(
        place,
        contracts,
        extracts,
        envelopes,
        contracts_dir,
        signing_keys,
        hub_key,
        partner_keys,
        approver_keys,
        registry.folder,
    )


@pytest.fixture
def signed_home(tmp_path, monkeypatch) -> Path:
    """A hub home (PLACELINK_HOME) holding the repo's agreements, signed off and approved."""
    home = tmp_path / "home"
    shutil.copytree(REPO_ROOT / "contracts", home / "contracts")
    sign_contracts(home / "contracts", home / "keys" / "approvers")
    monkeypatch.setenv("PLACELINK_HOME", str(home))
    monkeypatch.delenv("PLACELINK_CONTRACTS", raising=False)
    return home


@pytest.fixture(scope="session")
def small_place(tmp_path_factory) -> PreparedPlace:
    return prepare_place(people=3000, seed=11, root=tmp_path_factory.mktemp("small_place"))


@pytest.fixture(scope="session")
def outcomes_hub(tmp_path_factory) -> tuple[PreparedPlace, Settings]:
    """A hub home after a whole run on a 12,000-person place, as `make demo` leaves one (published
    file, reports, audit log, registered contracts). The session's `small_place` of 3,000 has too
    few enrolled children for a before/after comparison to mean anything once counts are rounded."""
    import dagster as dg

    from assets.resources import PlacelinkResource
    from pipelines.orchestration.code_location import defs

    root = tmp_path_factory.mktemp("outcomes_place")
    place = prepare_place(people=12_000, seed=23, root=root)
    settings = place.stage_hub(root / "hub")
    result = dg.materialize(
        list(defs.assets),
        resources={
            "placelink": PlacelinkResource(
                home=str(settings.home), contracts_dir=str(settings.contracts_dir)
            )
        },
    )
    assert result.success
    return place, settings


@dataclass(frozen=True)
class PublishedHub:
    """A hub home after one whole run (every asset materialised), and that run's result."""

    settings: Settings
    result: object  # dagster's ExecuteInProcessResult (dagster is imported only by the fixture)

    def copy(self, target: Path) -> Settings:
        """A copy of the hub at ``target`` for a test that changes it: another run, a withdrawal,
        a delivery. The vaulted envelopes' recorded paths point into the copy."""
        shutil.copytree(self.settings.home, target)
        copy = Settings.from_env(
            {"PLACELINK_HOME": str(target), "PLACELINK_AS_OF": os.environ["PLACELINK_AS_OF"]}
        )
        con = duckdb.connect(str(copy.warehouse))
        try:
            con.execute(
                "UPDATE hub.deliveries SET stored_as = replace(stored_as, ?, ?)",
                [str(self.settings.home), str(copy.home)],
            )
        finally:
            con.close()
        return copy


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def published_small_hub(small_place, tmp_path_factory):
    """The small place after one whole run, materialised once for the session and shared by every
    module that only reads a run's outputs (a whole run costs more than most modules' tests). A test
    that changes a hub works on ``published_small_hub.copy(tmp_path / "home")``; at the end of the
    session the shared home must be byte for byte as the run left it, or the session errors."""
    import dagster as dg

    from assets.resources import PlacelinkResource
    from pipelines.orchestration.code_location import defs

    settings = small_place.stage_hub(tmp_path_factory.mktemp("published_small_hub") / "home")
    result = dg.materialize(
        list(defs.assets),
        resources={
            "placelink": PlacelinkResource(
                home=str(settings.home), contracts_dir=str(settings.contracts_dir)
            )
        },
    )
    assert result.success
    before = _fingerprint(settings.home)
    yield PublishedHub(settings, result)
    after = _fingerprint(settings.home)
    changed = sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )
    assert not changed, f"a test changed the shared hub (use published_small_hub.copy): {changed}"
