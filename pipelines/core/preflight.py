"""Pre-flight checks before a run touches anything (issue 20): room on the disk, folders it can use.

A run that starts on a full disk fails half-way (a delivery held with an empty reason, a warehouse
write lost); one whose vault or published folder cannot be written fails after ingest. So
``placelink run`` first checks, and stops with exit code 5 naming the folder and what to do:

- free space on the home's file system: at least ``PLACELINK_MIN_FREE_DISK`` (a size such as
  ``5GB``; ``0`` turns the check off), by default twice the inbox and the warehouse together
  (a run copies deliveries into the vault and rewrites warehouse tables), and never less than
  256 MB;
- the home, vault, quarantine and published folders can be written (a file is created and removed
  in each that exists, in its nearest existing parent otherwise), and the inbox can be read.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from pipelines.core.settings import Settings

FLOOR = 256 * 1024**2
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?B?)\s*", re.IGNORECASE)
_UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "KB": 1024,
    "M": 1024**2,
    "MB": 1024**2,
    "G": 1024**3,
    "GB": 1024**3,
    "T": 1024**4,
    "TB": 1024**4,
}


class PreflightFailed(RuntimeError):
    """The run cannot start safely; the message names the folder and what to do."""


def parse_size(text: str) -> int:
    """``5GB``, ``512MB``, ``0`` -> bytes (binary units)."""
    match = _SIZE.fullmatch(text or "")
    if not match:
        raise PreflightFailed(
            f"PLACELINK_MIN_FREE_DISK is {text!r}: give a size such as '5GB' or '512MB', "
            "or 0 to skip the free-space check"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def required_free_space(settings: Settings) -> int:
    """Bytes the home's file system must have free before a run (see the module's docstring)."""
    if settings.min_free_disk.strip():
        return parse_size(settings.min_free_disk)
    return max(FLOOR, 2 * (_size(settings.inbox) + _size(settings.warehouse)))


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable(path: Path, what: str) -> None:
    folder = _existing(path)
    if not folder.is_dir():
        raise PreflightFailed(
            f"{what} {path} cannot be made: {folder} is a file, not a folder. Move it away "
            "(or point PLACELINK_HOME elsewhere) and run again"
        )
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".placelink-preflight-"):
            pass
    except OSError as exc:
        raise PreflightFailed(
            f"{what} {folder} is not writable by this user ({exc.strerror}). Give the hub's "
            "user write access to it (or point PLACELINK_HOME elsewhere) and run again"
        ) from None


def preflight(settings: Settings) -> None:
    """Raise :class:`PreflightFailed` if the run should not start; touches nothing it keeps."""
    for path, what in (
        (settings.home, "the hub's home (PLACELINK_HOME)"),
        (settings.vault, "the vault"),
        (settings.quarantine, "the quarantine folder"),
        (settings.published.parent, "the published folder"),
    ):
        _check_writable(path, what)
    inbox = settings.inbox
    if inbox.exists():
        if not inbox.is_dir():
            raise PreflightFailed(
                f"the inbox {inbox} is not a folder: move the file away and run again"
            )
        try:
            os.listdir(inbox)
        except OSError as exc:
            raise PreflightFailed(
                f"the inbox {inbox} cannot be read ({exc.strerror}). Give the hub's user read "
                "access to it and run again"
            ) from None
    need = required_free_space(settings)
    if need:
        free = shutil.disk_usage(_existing(settings.home)).free
        if free < need:
            raise PreflightFailed(
                f"only {_human(free)} free on the file system of {settings.home}; a run needs at least "
                f"{_human(need)} ({'PLACELINK_MIN_FREE_DISK' if settings.min_free_disk.strip() else 'twice the inbox and the warehouse, at least 256 MB'}). "
                "Free space (old files in quarantine: `placelink hub quarantine list`; DuckDB spill files in "
                f"{settings.duckdb_temp}) or set PLACELINK_MIN_FREE_DISK, and run again. Nothing was touched"
            )
