"""A hub with one partner nobody here generated: its own contract (names and date of birth only:
no sex, no postcode, no NHS number), its own spreadsheet with its own column names and UK dates,
no postcode lookup. From `placelink partner prepare` to a published file, command by command,
as a new partnership would do it (issue 17)."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import duckdb
import yaml
from click.testing import CliRunner
from faker import Faker

from pipelines.cli import main
from tests.custom_partner import write_custom_contract

MAPPING = """\
sheet: Referrals
columns:
  record_id: Client Ref
  full_name: {column: Client Name, order: given_first}
  date_of_birth: DOB
  referral_date: Referred On
ignore: [Worker]
"""


def _typo(name: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(name))
    return name[:i] + name[i + 1 :] if len(name) > 4 else name + "e"


def _clinic_workbook(path: Path, people: int, seed: int) -> int:
    """The clinic's monthly export: one row per referral, some people referred twice (their name
    typed differently the second time). Returns the number of rows."""
    import openpyxl  # a dev dependency: a missing install must fail, not skip

    fake, rng = Faker("en_GB"), random.Random(seed)
    fake.seed_instance(seed)
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Referrals"
    sheet.append(["Client Ref", "Client Name", "DOB", "Referred On", "Worker"])
    rows = 0
    for person in range(people):
        given, family = fake.first_name(), fake.last_name()
        born = fake.date_of_birth(minimum_age=1, maximum_age=90)
        for visit in range(1 + (person % 3 == 0)):
            rows += 1
            name = f"{given} {family}" if visit == 0 else f"{given} {_typo(family, rng)}"
            referred = dt.datetime(2025, 1, 1) + dt.timedelta(days=rng.randrange(500))
            sheet.append(
                [f"CL{rows:05d}", name, born.strftime("%d/%m/%Y"), referred, f"Worker {person % 7}"]
            )
    book.save(path)
    return rows


def test_a_single_custom_contract_runs_from_partner_prepare_to_a_published_file(
    tmp_path, monkeypatch
):
    home, clinic = tmp_path / "hub", tmp_path / "clinic"
    clinic.mkdir()
    monkeypatch.setenv("PLACELINK_HOME", str(home))
    monkeypatch.delenv("PLACELINK_CONTRACTS", raising=False)
    run = CliRunner().invoke

    # IG officer: the one agreement this hub has, with the date format the clinic's system writes.
    contract = write_custom_contract(home / "contracts", date_formats="dd/mm/yyyy")
    assert run(main, ["hub", "keygen"]).exit_code == 0
    assert (
        run(
            main, ["partner", "keygen", "--partner", "clinic", "--out", str(clinic / "clinic.key")]
        ).exit_code
        == 0
    )
    registered = run(
        main,
        [
            "hub",
            "register-partner-key",
            "--contract",
            str(contract),
            "--public-key",
            str(clinic / "clinic.pub"),
        ],
    )
    assert registered.exit_code == 0, registered.output
    # The approvers the agreement names sign it off, each with their own key (a draft until then).
    terms = yaml.safe_load(contract.read_text())["customProperties"][0]["value"]
    for n, required in enumerate(terms["required_signatures"]):
        key = tmp_path / "approvers" / f"approver{n}.key"
        made = run(
            main,
            [
                "contracts",
                "approver-keygen",
                "--name",
                f"Approver {n}",
                "--role",
                required["role"],
                "--organisation",
                terms[required["party"]]["name"],
                "--out",
                str(key),
            ],
        )
        assert made.exit_code == 0, made.output
        assert (
            run(
                main, ["hub", "register-approver-key", "--public-key", str(key.with_suffix(".pub"))]
            ).exit_code
            == 0
        )
        signed = run(main, ["contracts", "approve", "clinic-referrals", "--key", str(key)])
        assert signed.exit_code == 0, signed.output
    checked = run(main, ["contracts", "check"])
    assert checked.exit_code == 0, checked.output

    # The clinic: its own export and column names, no postcode lookup.
    rows = _clinic_workbook(clinic / "referrals.xlsx", people=240, seed=17)
    (clinic / "mapping.yaml").write_text(MAPPING)
    assert run(main, ["partner", "linkage-key", "--out", str(clinic / "link.key")]).exit_code == 0
    prepared = run(
        main,
        [
            "partner",
            "prepare",
            "--contract",
            str(contract),
            "--input",
            str(clinic / "referrals.xlsx"),
            "--mapping",
            str(clinic / "mapping.yaml"),
            "--out",
            str(clinic / "outbox"),
            "--linkage-key",
            str(clinic / "link.key"),
            "--signing-key",
            str(clinic / "clinic.key"),
            "--hub-key",
            str(home / "keys" / "hub.pub"),
        ],
    )
    assert prepared.exit_code == 0, prepared.output
    assert f"rows: {rows:,} in, {rows:,} out" in prepared.output
    assert "invalid values" not in prepared.output  # every UK date and split name was read
    (envelope,) = (clinic / "outbox").glob("*.plx")
    (home / "inbox").mkdir(parents=True, exist_ok=True)
    envelope.rename(home / "inbox" / envelope.name)

    # The hub: a fresh process, as an operator runs it, with only this contract.
    env = {**os.environ, "PLACELINK_HOME": str(home)}
    hub = subprocess.run(
        [sys.executable, "-c", "from pipelines.cli import main; main()", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert hub.returncode == 0, hub.stdout[-3000:] + hub.stderr[-3000:]
    assert "Traceback" not in hub.stdout + hub.stderr
    assert (
        "note: model cohorts.programme_cohort left out: no contract provides landing.family_support_enrolments"
        in hub.stdout
    )
    assert "succeeded; published" in hub.stdout

    published = home / "published" / "shared_outcomes.duckdb"
    con = duckdb.connect(str(published), read_only=True)
    try:
        about = dict(con.execute("SELECT key, value FROM _about").fetchall())
    finally:
        con.close()
    assert "publish.outcomes_by_ward" in json.loads(about["models_left_out"])
    assert {x["contract_id"] for x in json.loads(about["lineage"])} == {"clinic-referrals"}

    warehouse = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        landed = warehouse.execute("SELECT count(*) FROM landing.clinic_referrals").fetchone()[0]
        linked, persons = warehouse.execute(
            "SELECT count(*), count(DISTINCT person_key) FROM hub.record_person"
        ).fetchone()
        described = warehouse.execute(
            "SELECT count(*), count(year_of_birth), count(sex), count(ward_code) "
            "FROM staging.persons"
        ).fetchone()
    finally:
        warehouse.close()
    assert landed == linked == rows  # every referral landed and has a person key
    assert described == (persons, persons, 0, 0)  # year of birth from the UK dates; no sex, no area
