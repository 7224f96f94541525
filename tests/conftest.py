"""A small synthetic place, prepared by every partner with a key made for the test run."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.contracts import Contract, load_contracts
from pipelines.partner_kit.prepare import PreparedExtract, prepare_extract
from pipelines.partner_kit.tokens import LinkageKey
from pipelines.settings import REPO_ROOT, Settings
from pipelines.synth import generate_place


@dataclass(frozen=True)
class PreparedPlace:
    place: Path
    contracts: dict[str, Contract]
    extracts: list[PreparedExtract]

    def extract(self, dataset: str) -> PreparedExtract:
        return next(e for e in self.extracts if e.header.dataset == dataset)

    def stage_hub(self, home: Path, datasets: list[str] | None = None) -> Settings:
        """A hub home with these extracts in its inbox and the area reference in place."""
        settings = Settings.from_env({"PLACELINK_HOME": str(home)})
        settings.ensure_dirs()
        for prepared in self.extracts:
            if datasets is None or prepared.header.dataset in datasets:
                shutil.copy2(prepared.extract_path, settings.inbox / prepared.extract_path.name)
        shutil.copy2(self.place / "reference" / "lsoa_reference.csv", settings.reference / "lsoa_reference.csv")
        return settings


def prepare_place(people: int, seed: int, root: Path) -> PreparedPlace:
    place = root / "place"
    generate_place(people=people, seed=seed, out=place)
    key = LinkageKey.generate()
    contracts, problems = load_contracts(REPO_ROOT / "contracts")
    assert not problems
    extracts = []
    for contract in contracts.values():
        for dataset in contract.datasets:
            opt_outs = (place / "reference" / "national_data_opt_outs.csv"
                        if contract.terms.national_data_opt_out_applies else None)
            extracts.append(prepare_extract(
                contract, dataset, place / "raw" / contract.partner_id / f"{dataset}.csv",
                root / "outbox" / contract.partner_id, key, place / "reference" / "postcode_lookup.csv",
                opt_outs=opt_outs, period="2026-10"))
    return PreparedPlace(place, contracts, extracts)


@pytest.fixture(scope="session")
def small_place(tmp_path_factory) -> PreparedPlace:
    return prepare_place(people=3000, seed=11, root=tmp_path_factory.mktemp("small_place"))
