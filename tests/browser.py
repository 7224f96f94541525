"""Render a page in Debian's headless chromium, as the project's HTML reports are checked."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise RuntimeError("chromium is not installed: `make test` installs it with apt-get")
    return path


def rendered_dom(page: Path, wait_ms: int = 3000) -> str:
    """The DOM after the page's scripts ran (charts drawn, tables built)."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                chromium(),
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={wait_ms}",
                "--dump-dom",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    return done.stdout


def screenshot(page: Path, out: Path, size: str = "1400,1000") -> Path:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium(),
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={size}",
                "--virtual-time-budget=3000",
                f"--screenshot={out}",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
    return out


_MEASURE = """<script>
window.addEventListener('load', () => {
  const viewport = document.documentElement.clientWidth;
  const problems = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    const what = el.tagName.toLowerCase() + (el.className ? '.' + el.className : '') + ' "'
                 + (el.textContent || '').trim().slice(0, 50) + '"';
    if (box.right > viewport + 1 || box.left < -1)
      problems.push(what + ' spans ' + Math.round(box.left) + '..' + Math.round(box.right) + ' px of ' + viewport);
    if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)
      problems.push(what + ' holds ' + el.scrollWidth + ' px of content in ' + el.clientWidth + ' px');
  }
  const report = document.createElement('pre');
  report.id = 'layout-report';
  report.textContent = JSON.stringify({viewport: viewport, inner_width: window.innerWidth,
                                       page_width: document.documentElement.scrollWidth, problems: problems});
  document.body.appendChild(report);
});
</script>"""


def layout_at(page: Path, width: int) -> dict:
    """Lay ``page`` out in a ``width`` px wide window and report anything wider than the window,
    or holding more than fits in it (clipped or spilling): {viewport, inner_width, page_width, problems}."""
    import json
    import re

    html = page.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as profile:
        measured = Path(folder) / page.name
        measured.write_text(html.replace("</body>", _MEASURE + "</body>"), encoding="utf-8")
        done = subprocess.run(
            [
                chromium(),
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},1000",
                "--hide-scrollbars",
                "--virtual-time-budget=3000",
                "--dump-dom",
                measured.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    found = re.search(r'<pre id="layout-report">(.*?)</pre>', done.stdout, re.S)
    if not found:
        raise RuntimeError("the page did not report its layout")
    import html as markup

    return json.loads(markup.unescape(found.group(1)))
