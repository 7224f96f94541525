"""Render a page in Debian's headless chromium, as the project's HTML reports are checked."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise RuntimeError("chromium is not installed: `make test` installs it with apt-get")
    return path


def rendered_dom(page: Path, wait_ms: int = 3000) -> str:
    """The DOM after the page's scripts ran (charts drawn, tables built)."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={wait_ms}",
             "--dump-dom", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def screenshot(page: Path, out: Path, size: str = "1400,1000") -> Path:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
                        "--virtual-time-budget=3000", f"--screenshot={out}", page.resolve().as_uri()],
                       capture_output=True, timeout=120, check=True)
    return out
