"""`make ui` starts the Dagster UI with `dg dev` (no deprecation warning) and stops promptly on Ctrl-C:
SIGINT to its process group, as a terminal sends it, and every process of the group is gone soon
after (the pipe they all write to reaches its end), measured rather than assumed."""

import os
import queue
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from pipelines.core.settings import REPO_ROOT
from tests.alert_servers import free_port

STARTUP = 240  # seconds: loading the definitions on a busy 2-core machine
PROMPT_EXIT = 30  # seconds from Ctrl-C until every process of `make ui` has exited


def _lines(stream, into: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        into.put(line)
    into.put(None)  # end of the pipe: every process holding it has exited


@pytest.mark.slow
def test_make_ui_serves_with_dg_dev_and_stops_promptly_on_ctrl_c(tmp_path):
    port = free_port()
    env = {**os.environ, "PLACELINK_HOME": str(tmp_path / "home"), "PLACELINK_AS_OF": "2026-11-02"}
    env.pop("DAGSTER_HOME", None)
    ui = subprocess.Popen(
        ["make", "--no-print-directory", "ui", f"UI_PORT={port}"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # a terminal's foreground job takes SIGINT (a background `&` job ignores it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    output: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(ui.stdout, output), daemon=True).start()
    seen = []
    try:
        deadline = time.monotonic() + STARTUP
        while not any("Serving dagster-webserver on" in line for line in seen):
            line = output.get(timeout=max(deadline - time.monotonic(), 0.1))
            assert line is not None, "".join(seen)[-3000:]
            seen.append(line)
        # logged just before uvicorn binds the port: between tries, wait on the output, not a sleep
        for _ in range(60):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/server_info", timeout=30
                ) as answer:
                    assert answer.status == 200
                break
            except urllib.error.URLError:
                try:
                    if (line := output.get(timeout=0.5)) is not None:
                        seen.append(line)
                except queue.Empty:
                    pass
        else:
            pytest.fail("the UI never answered: " + "".join(seen)[-3000:])
        interrupted = time.monotonic()
        os.killpg(ui.pid, signal.SIGINT)
        while (line := output.get(timeout=PROMPT_EXIT)) is not None:
            seen.append(line)
        stopped = time.monotonic() - interrupted
        ui.wait(timeout=5)
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)
    text = "".join(seen)
    assert stopped < PROMPT_EXIT, text[-3000:]
    assert "dg dev --no-check-yaml --port" in text  # make echoes the command it runs
    assert "superseded" not in text and "SupersessionWarning" not in text
    assert "does not match the virtual environment" not in text
    assert "Dagster services shut down." in text
    print(f"make ui: every process exited {stopped:.1f} s after SIGINT")
