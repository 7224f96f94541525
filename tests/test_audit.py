import json

import pytest

from pipelines.audit import AuditLog


@pytest.fixture
def log(tmp_path):
    log = AuditLog(tmp_path)
    for n in range(5):
        log.append("extract_accepted", file=f"x{n}.parquet", rows=n)
    return log


def test_intact_log_verifies(log):
    assert log.verify() is None
    assert [e["rows"] for e in log.events()] == [0, 1, 2, 3, 4]


def test_edited_line_is_named(log):
    lines = log.path.read_text().splitlines()
    event = json.loads(lines[2])
    event["rows"] = 99
    lines[2] = json.dumps(event)
    log.path.write_text("\n".join(lines) + "\n")
    assert log.verify().line == 4  # the line after the edit no longer chains


def test_deleted_line_is_named(log):
    lines = log.path.read_text().splitlines()
    del lines[1]
    log.path.write_text("\n".join(lines) + "\n")
    assert log.verify().line == 2


def test_reordered_lines_are_caught(log):
    lines = log.path.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    log.path.write_text("\n".join(lines) + "\n")
    assert log.verify().line == 2


def test_appends_continue_the_chain_across_instances(log, tmp_path):
    AuditLog(tmp_path).append("published", tables=["t"])
    assert log.verify() is None
