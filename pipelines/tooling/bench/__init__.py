"""Benchmarks (`placelink bench ...`): measured on demand, never timed tests."""

from __future__ import annotations

import shutil
from pathlib import Path


def empty_work_folder(work: Path, marker: str, command: str) -> None:
    """Empty ``work`` for a new run of ``placelink bench <command>``, but never a folder that a
    benchmark did not make (one without the ``marker`` file it leaves)."""
    if work.exists() and any(work.iterdir()):
        if not (work / marker).exists():
            raise RuntimeError(
                f"{work} holds files that are not from a benchmark; pass an empty --work folder"
            )
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / marker).write_text(
        f"Created by `placelink bench {command}`; emptied by its next run.\n"
    )
