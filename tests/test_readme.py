"""Every command the README shows works as written, from a checkout after `make demo`.

The README's ``sh`` blocks (all but the `make` ones, which build what the others use) run as one
terminal session would, in order, in a folder laid out like the checkout: ``.venv`` (this
project's environment) and ``.placelink`` (a hub home after a whole run: a copy of the session's
``published_small_hub``, which the README's backfill and run then change), with no PLACELINK_*
variable set. Its analysts' Python block runs there too.
The table of who does what shows templates (KEY, ID, RAW.csv): the test suites of those
commands cover them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from pipelines.cli import main
from pipelines.core.settings import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", README, re.DOTALL)


@pytest.fixture(scope="module")
def checkout(published_small_hub, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("checkout")
    (folder / ".venv").symlink_to(Path(sys.prefix))
    published_small_hub.copy(folder / ".placelink")
    return folder


def _environment() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PLACELINK_") and k != "VIRTUAL_ENV"
    }
    # A user's shell: the environment's bin folder is not on PATH until they activate it.
    env["PATH"] = os.pathsep.join(
        p
        for p in env.get("PATH", "").split(os.pathsep)
        if Path(p).resolve() != Path(sys.prefix, "bin").resolve()
    )
    return env


def test_readme_shell_commands_run_as_written(checkout):
    blocks = [b for b in _blocks("sh") if not b.lstrip().startswith("make ")]
    commands = [
        line for b in blocks for line in b.splitlines() if line.strip() and not line.startswith("#")
    ]
    assert any(c.startswith("source .venv/bin/activate") for c in commands)
    assert sum(c.startswith("placelink sql") for c in commands) >= 4
    script = "set -euo pipefail\n" + "\n".join(blocks)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=checkout,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "placelink 0.1.0" in out
    assert "audit log" in out and "is intact" in out
    assert "ae_attendance" in out and "rate_ratio_ci_low" in out and "smd_after_matching" in out
    # the backfill re-materialised October's partner-months, and the run after it had nothing new
    assert "partner-months materialised: ae_attendances 2026-10, csc_referrals 2026-10" in out
    assert (
        "succeeded: nothing new since the publication of" in out
        and "published file is unchanged" in out
    )


def test_readme_python_for_analysts_runs_as_written(checkout):
    section = README.split("## For analysts", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1
    done = subprocess.run(
        [str(checkout / ".venv" / "bin" / "python"), "-c", blocks[0]],
        cwd=checkout,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # (DuckDB's .show() drops middle columns to fit a narrow terminal, so look at the first ones)
    assert "redacted_cells" in done.stdout and "disclosure_rule" in done.stdout
    assert (
        "ward_code" in done.stdout
        and "ae_attendance" in done.stdout
        and "column_name" in done.stdout
    )


def _commands(command: click.Command, path: tuple[str, ...] = ("placelink",)):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, path + (name,))


def test_every_command_and_option_has_help():
    missing = []
    for path, command in _commands(main):
        if not (command.help or "").strip():
            missing.append(" ".join(path))
        for param in command.params:
            if (
                isinstance(param, click.Option)
                and param.name != "help"
                and not (param.help or "").strip()
            ):
                missing.append(f"{' '.join(path)} {param.opts[0]}")
    assert missing == []
    assert sum(1 for _ in _commands(main)) > 30


def test_version():
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("placelink ")
