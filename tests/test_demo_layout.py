"""The demo keeps partner material outside the hub's home, as a deployment does (issue 18).

The trust model: the hub never holds the linkage key, partners' signing keys, raw extracts or the
record lookups. The demo plays both sides on one machine, so it must keep them apart on disk.
"""

import pytest

from pipelines.core.settings import Settings
from pipelines.exchange.keys import HubKey
from pipelines.partner_kit.tokens import LinkageKey
from pipelines.tooling.demo import DemoRefused, DemoReport, format_summary, prepare_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    settings = Settings.from_env({"PLACELINK_HOME": str(root / ".placelink")})
    settings, report = prepare_demo(settings, people=300, seed=7, echo=lambda *_: None)
    return settings, report


def test_the_partner_side_is_a_sibling_folder_outside_the_hub_home(demo):
    settings, report = demo
    assert settings.demo_partners == settings.home.with_name(".placelink-partners")
    assert not settings.demo_partners.is_relative_to(settings.home)
    partners = settings.demo_partners
    assert (partners / "linkage.key").is_file()
    assert sorted(p.name for p in (partners / "signing-keys").glob("*.key")) == [
        "council.key",
        "nhs.key",
        "vcs.key",
    ]
    assert list((partners / "place" / "raw").rglob("*.csv"))
    assert list(partners.rglob("*.lookup.parquet")) and all(
        p.lookup_path.is_relative_to(partners) for p in report.prepared
    )


def test_the_hub_home_holds_no_partner_secret_or_clear_data(demo):
    settings, _ = demo
    home = settings.home
    linkage_key = (settings.demo_partners / "linkage.key").read_bytes()
    files = [p for p in home.rglob("*") if p.is_file()]
    assert not [p for p in files if p.read_bytes() == linkage_key or "linkage" in p.name]
    private = [p for p in files if p.suffix == ".key"]
    # the hub's own keys only: its decryption key and the key that signs the audit log's head
    assert sorted(private) == sorted([settings.hub_key_path, settings.audit_key_path])
    HubKey.load(settings.hub_key_path)
    # CSVs: the area reference, and the IG register of agreements (no records)
    assert not [
        p
        for p in files
        if p.suffix in (".csv", ".parquet")
        and p.parent != settings.reference
        and p != settings.reports / "ig_register.csv"
    ]
    assert not list(home.rglob("partner-only")) and not (home / "demo").exists()
    assert sorted(p.suffix for p in settings.inbox.iterdir()) == [".plx"] * len(
        list(settings.inbox.iterdir())
    )
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do: it must not load
        LinkageKey.load(settings.hub_key_path)  # and the hub's key is not a linkage key


def test_the_summary_says_where_the_partner_side_is(demo):
    settings, report = demo
    summary = format_summary(DemoReport(settings.home, settings.demo_partners))
    assert f"Partner side:     {settings.demo_partners}" in summary and "never holds" in summary


def test_a_partner_folder_inside_the_hub_home_is_refused(tmp_path):
    home = tmp_path / "hub"
    settings = Settings.from_env(
        {"PLACELINK_HOME": str(home), "PLACELINK_DEMO_PARTNERS": str(home / "partners")}
    )
    with pytest.raises(DemoRefused, match="must be outside PLACELINK_HOME"):
        prepare_demo(settings, people=50, echo=lambda *_: None)


def test_a_partner_folder_the_demo_did_not_make_is_never_wiped(tmp_path):
    partners = tmp_path / "mine"
    partners.mkdir()
    (partners / "precious.txt").write_text("not the demo's")
    settings = Settings.from_env(
        {"PLACELINK_HOME": str(tmp_path / "hub"), "PLACELINK_DEMO_PARTNERS": str(partners)}
    )
    with pytest.raises(DemoRefused, match="PLACELINK_DEMO_PARTNERS"):
        prepare_demo(settings, people=50, echo=lambda *_: None)
    assert (partners / "precious.txt").read_text() == "not the demo's"
