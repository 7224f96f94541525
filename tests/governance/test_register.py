"""The register page on its own: invalid agreements get a row, the quality report is linked when present."""
import datetime as dt

from pipelines.contracts import ContractError
from pipelines.register import write_register


def test_register_lists_invalid_agreements_and_links_the_quality_report(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path, datasets=[])
    problems = {"zz-draft": ContractError("zz-draft.yaml: not valid YAML at line 2")}
    page = write_register(settings, small_place.contracts, problems, on=dt.date(2029, 5, 1))
    html = page.read_text()
    assert html.count("<tr data-contract=") == 4
    assert "expired 31 days ago" in html and "zz-draft.yaml" in html and "quality report" not in html
    (settings.reports / "quality.html").write_text("<html></html>")
    html = write_register(settings, small_place.contracts, problems).read_text()
    assert '<a href="quality.html">quality report</a>' in html
