"""Renewing an agreement: a new version with later dates, unsigned until every role signs again."""

import datetime as dt
import shutil

import pytest

from pipelines.core.settings import REPO_ROOT
from pipelines.governance.approvals import ApproverRegistry
from pipelines.governance.contracts import ContractError, load_contract
from pipelines.governance.renewal import next_version, renew_agreement, renewed_terms
from tests.approvers import sign_contracts

NAME = "vcs-family-support.yaml"


@pytest.fixture
def signed(tmp_path):
    folder = tmp_path / "contracts"
    folder.mkdir()
    shutil.copy2(REPO_ROOT / "contracts" / NAME, folder / NAME)
    keys = sign_contracts(folder, tmp_path / "approvers")
    return folder / NAME, keys, ApproverRegistry(tmp_path / "approvers")


def test_a_renewal_is_a_new_unsigned_version_with_only_its_dates_changed(signed):
    path, _, registry = signed
    old = load_contract(path)
    assert old.terms.approval_status == "approved" and registry.check(old).complete
    before = path.read_text().splitlines()
    review_by, expires = renewed_terms(old)
    assert (review_by, expires) == (dt.date(2030, 3, 31), dt.date(2032, 3, 31))

    renewed = renew_agreement(path, expires, review_by)

    assert renewed.version == "1.1.0" and renewed.terms.expires == expires
    assert renewed.terms.review_by == review_by and renewed.terms.valid_from == old.terms.valid_from
    assert renewed.terms.approval_status == "draft" and renewed.terms.approvals == []
    assert renewed.content_sha256 != old.content_sha256  # the old signatures are void
    changed = {b.split(":")[0].strip() for b in set(before) - set(path.read_text().splitlines())}
    # the signature lines went with the approvals block; nothing else in the file changed
    assert (
        changed - {"version", "review_by", "expires", "approval_status", "approvals", "- {role"}
        == set()
    )


def test_a_renewal_must_end_later_and_leaves_the_file_alone_otherwise(signed):
    path, _, _ = signed
    text = path.read_text()
    old = load_contract(path)
    with pytest.raises(
        ContractError, match=r"vcs-family-support.yaml: a renewal .* must end after 2029-03-31"
    ):
        renew_agreement(path, old.terms.expires, old.terms.review_by)
    assert path.read_text() == text


def test_the_next_version_is_the_next_minor_one():
    assert next_version("1.0.0") == "1.1.0" and next_version("2.7.3") == "2.8.0"
    with pytest.raises(ContractError, match="not X.Y.Z"):
        next_version("v1")
