"""Progress of long work: nothing unless a command shows it; plain lines at most every interval
off a terminal; bars on a terminal."""

import io

from pipelines.core import progress
from pipelines.core.stages import stage


class FakeTimer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_nothing_is_shown_or_kept_unless_a_command_shows_progress(capsys):
    task = progress.task("ingest: deliveries checked", 7, "files")
    task.advance(3)
    task.done()
    with stage("linkage: train"):
        pass
    assert capsys.readouterr() == ("", "")
    assert progress._reporter is None


def test_off_a_terminal_one_plain_line_per_interval_names_the_work_still_running():
    timer, out = FakeTimer(), io.StringIO()
    with progress.Reporter(
        out, terminal=False, interval=30, timer=timer, background=False
    ) as reporter:
        previous, progress._reporter = progress._reporter, reporter
        try:
            files = progress.task("ingest: deliveries checked", 7, "files")
            files.advance(3)
            timer.now = 12
            assert reporter.tick() is None  # less than the interval since the start: quiet
            timer.now = 31
            assert (
                reporter.tick()
                == "progress: ingest: deliveries checked: 3 of 7 files (43%) after 31 s"
            )
            timer.now = 40
            assert reporter.tick() is None
            files.done()
            with stage("linkage: train"):
                with stage("linkage: predict"):  # nested: shown inside the outermost stage's line
                    timer.now = 70
                    assert (
                        reporter.tick()
                        == "progress: linkage: train › linkage: predict: running for 30 s"
                    )
                timer.now = 100
                assert reporter.tick() == "progress: linkage: train: running for 60 s"
            timer.now = 200
            assert reporter.tick() is None  # everything finished: nothing to say
        finally:
            progress._reporter = previous
    assert out.getvalue().splitlines() == [
        "progress: ingest: deliveries checked: 3 of 7 files (43%) after 31 s",
        "progress: linkage: train › linkage: predict: running for 30 s",
        "progress: linkage: train: running for 60 s",
    ]


def test_the_partner_kit_shows_each_of_its_steps():
    from pipelines.partner_kit.steps import step

    timer, out = FakeTimer(), io.StringIO()
    with progress.Reporter(
        out, terminal=False, interval=30, timer=timer, background=False
    ) as reporter:
        previous, progress._reporter = progress._reporter, reporter
        try:
            with step("tokenise"):
                timer.now = 45
                reporter.tick()
        finally:
            progress._reporter = previous
    assert out.getvalue() == "progress: partner kit: tokenise: running for 45 s\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_bars_are_drawn_and_no_plain_lines_written():
    out = Terminal()
    with progress.showing(out) as reporter:
        assert reporter.terminal
        files = progress.task("ingest: deliveries checked", 2, "files")
        files.advance()
        files.done()
        assert reporter.tick() is None
    drawn = out.getvalue()
    assert "ingest: deliveries checked" in drawn and "2/2" in drawn
    assert "progress:" not in drawn
