"""The tests play the approvers: fresh keys for every role an agreement asks to sign, never committed."""

from __future__ import annotations

from pathlib import Path

from pipelines.exchange.keys import ApproverKey
from pipelines.governance.approvals import ApproverRegistry, keys_for_required_roles, sign_off
from pipelines.governance.contracts import load_contracts
from pipelines.tooling.synth.study import DELIVERED_AT


def sign_contracts(
    folder: Path, registry_dir: Path, now=DELIVERED_AT
) -> dict[tuple[str, str], ApproverKey]:
    """Every agreement in ``folder`` signed off by fresh keys for each required role, registered in
    ``registry_dir`` (a hub's ``keys/approvers``): drafts become approved. Returns the keys."""
    registry = ApproverRegistry(registry_dir)
    contracts, problems = load_contracts(folder)
    assert not problems
    keys = keys_for_required_roles(contracts.values())
    sign_off([c.path for c in contracts.values()], keys, now, registry)
    return keys


def signed_hub_contracts(home: Path) -> Path:
    """A hub home whose ``contracts/`` are the repo's agreements, signed off by fresh approvers
    registered in its ``keys/approvers`` (as `placelink demo` leaves them). Returns the folder."""
    import shutil

    from pipelines.core.settings import REPO_ROOT

    folder = home / "contracts"
    shutil.copytree(REPO_ROOT / "contracts", folder)
    sign_contracts(folder, home / "keys" / "approvers")
    return folder


def hub_cli(home: Path, *args: str, as_of: str):
    """`placelink ARGS...` run in-process against the hub home ``home`` on the day ``as_of``,
    with the hub's own agreements (no PLACELINK_CONTRACTS): what an IG officer or approver types."""
    from click.testing import CliRunner

    from pipelines.cli import main

    return CliRunner().invoke(
        main,
        list(args),
        env={"PLACELINK_HOME": str(home), "PLACELINK_AS_OF": as_of, "PLACELINK_CONTRACTS": None},
    )
