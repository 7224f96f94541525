"""The register on its own: every agreement (invalid ones too), who signed, plurals, the CSV, the
quality report linked when present, and `placelink contracts register` without a pipeline run."""

import csv
import datetime as dt

from click.testing import CliRunner

from pipelines.cli import main
from pipelines.governance.contracts import ContractError
from pipelines.governance.register import plural, write_register


def test_register_lists_invalid_agreements_and_links_the_quality_report(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path, datasets=[])
    problems = {"zz-draft": ContractError("zz-draft.yaml: not valid YAML at line 2")}
    page = write_register(settings, small_place.contracts, problems, on=dt.date(2029, 5, 1))
    html = page.read_text()
    assert html.count("<tr data-contract=") == 4 and html.count('<section class="agreement"') == 4
    assert (
        "expired 31 days ago" in html and "zz-draft.yaml" in html and "quality report" not in html
    )
    assert "0 deliveries" in html and "1 deliveries" not in html
    rows = list(csv.DictReader(page.with_name("ig_register.csv").open()))
    assert [r["contract_id"] for r in rows] == [
        "council-place-services",
        "nhs-acute-mental-health",
        "vcs-family-support",
        "zz-draft",
    ]
    assert rows[1]["retention_months"] == "84" and rows[1]["signatures_required"] == "4"
    assert (
        "Dr" not in rows[1]["signatures"]
        and "Caldicott Guardian of Northshire NHS Foundation Trust" in rows[1]["signatures"]
    )
    assert rows[3]["status"] == "invalid" and rows[3]["provider"] == ""
    (settings.reports / "quality.html").write_text("<html></html>")
    html = write_register(settings, small_place.contracts, problems).read_text()
    assert '<a href="quality.html">quality report</a>' in html


def test_plurals():
    assert [plural(n, "delivery", "deliveries") for n in (0, 1, 2, 1234)] == [
        "0 deliveries",
        "1 delivery",
        "2 deliveries",
        "1,234 deliveries",
    ]
    assert plural(1, "row") == "1 row" and plural(1, "month") == "1 month"


def test_register_command_writes_html_and_csv_without_a_run(signed_home, tmp_path):
    out = tmp_path / "board pack"
    result = CliRunner().invoke(main, ["contracts", "register", "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = (out / "ig_register.html").read_text()
    assert "3 data-sharing agreements" in html and "signed by 4 of 4 required roles" in html
    rows = list(csv.DictReader((out / "ig_register.csv").open()))
    assert {r["status"] for r in rows} == {"approved"} and {r["deliveries"] for r in rows} == {"0"}
    # each agreement's delivery term, in words (the NHS trust sends monthly deltas)
    nhs = next(r for r in rows if r["contract_id"] == "nhs-acute-mental-health")
    assert (
        nhs["delivery_cadence"].startswith("monthly, as a delta")
        and "due by day 10" in nhs["delivery_cadence"]
    )
    assert not (signed_home / "reports").exists()  # the hub's own reports are left alone
