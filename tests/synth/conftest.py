"""Synthetic places shared by the synth tests (generated once per test session)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from pipelines.tooling.synth import PlaceManifest, generate_place


@dataclass(frozen=True)
class Place:
    manifest: PlaceManifest
    root: Path

    def raw(self, dataset: str) -> pl.DataFrame:
        """A raw extract read as text, as a partner would hand it over."""
        summary = next(d for d in self.manifest.datasets if d.dataset == dataset)
        return pl.read_csv(self.root / summary.path, infer_schema=False)

    def people(self) -> pl.DataFrame:
        return pl.read_csv(self.root / "truth" / "people.csv", infer_schema=False)

    def ground_truth(self) -> pl.DataFrame:
        return pl.read_csv(self.root / "truth" / "ground_truth.csv", infer_schema=False)

    def with_truth(self, dataset: str) -> pl.DataFrame:
        """Raw records joined to the person they belong to (truth columns suffixed _true)."""
        truth = self.ground_truth().filter(pl.col("source") == dataset).drop("source")
        return (
            self.raw(dataset)
            .join(truth, on="record_id", how="left")
            .join(self.people(), on="person_id", how="left", suffix="_true")
        )


@pytest.fixture(scope="session")
def small_place(tmp_path_factory) -> Place:
    root = tmp_path_factory.mktemp("small_place")
    return Place(generate_place(2_000, 11, root), root)


@pytest.fixture(scope="session")
def medium_place(tmp_path_factory) -> Place:
    root = tmp_path_factory.mktemp("medium_place")
    return Place(generate_place(20_000, 5, root), root)


@pytest.fixture(scope="session")
def large_place(tmp_path_factory) -> Place:
    """Big enough for the planted effect to be measured to within about ±0.04."""
    root = tmp_path_factory.mktemp("large_place")
    return Place(generate_place(200_000, 2026, root), root)
