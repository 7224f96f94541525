"""Render a page in Debian's headless chromium, as the project's HTML reports are checked.

One chromium serves the whole test session (started at the first page, ended when the session's
process exits): each page opens in a fresh tab of a fresh browser context (no cookies, storage or
cache from another page), driven over the DevTools protocol with `websockets`. Starting chromium
once per page cost more than most of the pages' tests.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import html as markup
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from websockets.sync.client import connect

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # The layout check measures the page against the window: no scrollbar takes part of it.
    "--hide-scrollbars",
]
SAFETY = 120  # seconds: only so that a broken page fails the test instead of hanging it


def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise RuntimeError("chromium is not installed: `make test` installs it with apt-get")
    return path


class _Browser:
    """A headless chromium and one DevTools connection to it."""

    def __init__(self) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="placelink-chromium-")
        self._process = subprocess.Popen(
            [
                chromium(),
                *FLAGS,
                f"--user-data-dir={self._profile.name}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        address = self._devtools_address()
        self._connection = contextlib.ExitStack()
        self._socket = self._connection.enter_context(
            connect(address, max_size=None, open_timeout=SAFETY)
        )
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._events: list[tuple[str | None, str]] = []

    def _devtools_address(self) -> str:
        """chromium prints where its DevTools endpoint listens on stderr once it is up."""
        seen = []
        for line in self._process.stderr:
            seen.append(line)
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                # Keep draining stderr, or chromium blocks once the pipe is full.
                threading.Thread(target=self._process.stderr.read, daemon=True).start()
                return found.group(1)
        raise RuntimeError("chromium exited before it listened: " + "".join(seen)[-2000:])

    def send(self, method: str, session: str | None = None, **params):
        """Send one command and return its result; events that arrive meanwhile are kept."""
        with self._lock:
            ident = next(self._ids)
            message = {"id": ident, "method": method, "params": params}
            if session:
                message["sessionId"] = session
            self._socket.send(json.dumps(message))
            while True:
                received = json.loads(self._socket.recv(timeout=SAFETY))
                if received.get("id") == ident:
                    if "error" in received:
                        raise RuntimeError(f"chromium refused {method}: {received['error']}")
                    return received.get("result", {})
                if "method" in received:
                    self._events.append((received.get("sessionId"), received["method"]))

    def wait_for(self, session: str, event: str) -> None:
        """Wait until ``session`` has sent ``event`` (now or since it was last waited for)."""
        with self._lock:
            while (session, event) not in self._events:
                received = json.loads(self._socket.recv(timeout=SAFETY))
                if "method" in received:
                    self._events.append((received.get("sessionId"), received["method"]))
            self._events.remove((session, event))

    def page(self, url: str, width: int, height: int, wait_ms: int) -> _Page:
        context = self.send("Target.createBrowserContext", disposeOnDetach=True)["browserContextId"]
        target = self.send("Target.createTarget", url="about:blank", browserContextId=context)
        session = self.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)[
            "sessionId"
        ]
        page = _Page(self, context, target["targetId"], session)
        page.open(url, width, height, wait_ms)
        return page

    def close(self) -> None:
        try:
            self._connection.close()
        finally:
            self._process.terminate()
            try:
                self._process.wait(SAFETY)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._profile.cleanup()


class _Page:
    def __init__(self, browser: _Browser, context: str, target: str, session: str):
        self.browser, self.context, self.target, self.session = browser, context, target, session

    def send(self, method: str, **params):
        return self.browser.send(method, self.session, **params)

    def open(self, url: str, width: int, height: int, wait_ms: int) -> None:
        """Load ``url`` in a ``width`` x ``height`` window and let its scripts run for ``wait_ms``
        of virtual time, as chromium's --virtual-time-budget does for --dump-dom."""
        self.send("Page.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.send("Page.navigate", url=url)
        self.browser.wait_for(self.session, "Page.loadEventFired")
        # Then ``wait_ms`` of virtual time (skipped ahead while no fetch is pending) for the timers
        # the page's scripts set, as chromium's --virtual-time-budget gives --dump-dom.
        self.send(
            "Emulation.setVirtualTimePolicy", policy="pauseIfNetworkFetchesPending", budget=wait_ms
        )
        self.browser.wait_for(self.session, "Emulation.virtualTimeBudgetExpired")

    def evaluate(self, expression: str):
        reply = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"the page could not evaluate {expression!r}")
        return reply["result"]["value"]

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        self.browser.send("Target.closeTarget", targetId=self.target)
        self.browser.send("Target.disposeBrowserContext", browserContextId=self.context)


_browser: _Browser | None = None
_started = threading.Lock()


def _shared() -> _Browser:
    global _browser
    with _started:
        if _browser is None or _browser._process.poll() is not None:
            _browser = _Browser()
            atexit.register(_browser.close)
        return _browser


def _with_page(page: Path, width: int, height: int, wait_ms: int, action):
    opened = _shared().page(page.resolve().as_uri(), width, height, wait_ms)
    try:
        return action(opened)
    finally:
        opened.close()


_DOM = "document.documentElement.outerHTML"


def rendered_dom(page: Path, wait_ms: int = 3000) -> str:
    """The DOM after the page's scripts ran (charts drawn, tables built)."""
    return _with_page(page, 800, 600, wait_ms, lambda opened: opened.evaluate(_DOM))


def screenshot(page: Path, out: Path, size: str = "1400,1000") -> Path:
    width, height = (int(n) for n in size.split(","))
    out.write_bytes(_with_page(page, width, height, 3000, lambda opened: opened.screenshot()))
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
    html = page.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as folder:
        measured = Path(folder) / page.name
        measured.write_text(html.replace("</body>", _MEASURE + "</body>"), encoding="utf-8")
        dom = _with_page(measured, width, 1000, 3000, lambda opened: opened.evaluate(_DOM))
    found = re.search(r'<pre id="layout-report">(.*?)</pre>', dom, re.S)
    if not found:
        raise RuntimeError("the page did not report its layout")
    return json.loads(markup.unescape(found.group(1)))
