"""The partner kit on random bytes and random CSV structure (issue 18): each run ends in a clear
error that names the file, or in an extract with counted invalid values; never a traceback, and
never a raw value in a message or in the file for the hub."""

from __future__ import annotations

import codecs
import csv
import io
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.governance.contracts import load_contract
from pipelines.partner_kit import PartnerKitError, prepare_extract
from pipelines.partner_kit.tokens import LinkageKey
from tests.partner_kit.conftest import AE_HEADER, NHS_A, NOW, REPO, write_csv

MARK = "Ǫ"  # in every value drawn to stand for an identifier: it must never be quoted back
FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def kit():
    folder = Path(tempfile.mkdtemp(prefix="kit-fuzz-"))
    contract = load_contract(REPO / "contracts" / "nhs-acute-mental-health.yaml")
    lookup = write_csv(
        folder / "postcodes.csv",
        ["postcode", "lsoa_code", "ward_code"],
        [["AB1 2CD", "E01000001", "E05000001"]],
    )
    opt_outs = write_csv(folder / "opt_outs.csv", ["nhs_number"], [[NHS_A]])
    return folder, contract, LinkageKey.generate(), lookup, opt_outs


def _prepare(kit, content: bytes, name: str, malformed: bool = False) -> None:
    """``malformed``: the file has a record whose number of fields differs from the header's,
    or a NUL byte, so the kit must refuse it."""
    folder, contract, key, lookup, opt_outs = kit
    with tempfile.TemporaryDirectory(dir=folder) as work:
        path = Path(work) / name
        path.write_bytes(content)
        try:
            prepared = prepare_extract(
                contract,
                "ae_attendances",
                path,
                Path(work) / "out",
                key,
                lookup,
                opt_outs=opt_outs,
                period="2026-10",
                now=NOW,
            )
        except PartnerKitError as error:
            message = str(error)
            assert name in message or "contract" in message, message
            assert MARK not in message and NHS_A not in message, message
            return
        assert not malformed, "a file with malformed records was prepared"
        counts = prepared.report
        assert 0 <= counts["rows_out"] <= counts["rows_in"]
        assert all(isinstance(n, int) and n >= 0 for n in counts["invalid_values"].values())
        sent = pq.read_table(prepared.extract_path)
        assert sent.column_names == list(contract.dataset("ae_attendances").columns)
        text = str(sent.to_pylist()) + prepared.report_path.read_text(encoding="utf-8")
        assert MARK not in text and NHS_A not in text  # tokens and counts only


@FUZZ
@given(content=st.binary(max_size=3000))
def test_random_bytes_end_in_a_clear_error_or_counted_values(kit, content):
    _prepare(kit, content, "random.csv")


_CELL = st.one_of(
    st.sampled_from(
        [NHS_A, "943 476 5919", "AB1 2CD", "1990-03-07", "F", "other", "2024-01-01", ""]
    ),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20).map(lambda t: MARK + t),
    st.text(alphabet=",\"\n\r ;\t'" + MARK + "aé9", max_size=12),
    st.builds(lambda n, c: MARK + c * n, st.integers(100, 3000), st.sampled_from("x9 ,\n")),
)


@st.composite
def csv_files(draw) -> tuple[bytes, bool]:
    header = draw(
        st.sampled_from(["contract", "shuffled", "any"]).flatmap(
            lambda kind: {
                "contract": st.just(AE_HEADER),
                "shuffled": st.permutations(AE_HEADER),
                "any": st.lists(
                    st.sampled_from(AE_HEADER + ["notes", MARK + "x"]), min_size=1, max_size=11
                ),
            }[kind]
        )
    )
    width = len(header)
    rows = draw(st.lists(st.lists(_CELL, min_size=width, max_size=width), max_size=8))
    if rows:  # one record cut short or run long, anywhere in the file, or none
        where, change = (
            draw(st.integers(0, len(rows) - 1)),
            draw(st.sampled_from([0, 0, -1, -3, 1, 2])),
        )
        rows[where] = rows[where][: width + change] if change < 0 else rows[where] + ["x"] * change
    if rows and rows[-1] and draw(st.integers(0, 9)) == 0:
        rows[-1][-1] += "\x00"  # now and then a NUL byte, in the last row
    ids = draw(st.booleans())
    if ids:  # mostly well-formed ids, so runs get as far as tokenising
        rows = [[f"R{i}"] + row[1:] if row else row for i, row in enumerate(rows)]
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    written = draw(st.booleans())
    if written:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator=newline)
        writer.writerow(header)
        writer.writerows(rows)
        text = out.getvalue()
    else:  # hand-joined, as a careless export would: quotes and commas are not escaped
        text = newline.join(",".join(r) for r in [header, *rows]) + newline
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    data = text.encode(encoding, errors="replace")
    # Written by a real CSV writer, a record is malformed only if its number of fields is wrong.
    malformed = "\x00" in text or (
        written and newline != "\r" and any(row and len(row) != width for row in rows)
    )
    return (codecs.BOM_UTF8 + data) if encoding == "utf-8-sig" and draw(
        st.booleans()
    ) else data, malformed


@FUZZ
@given(case=csv_files())
def test_random_csv_structure_ends_in_a_clear_error_or_counted_values(kit, case):
    content, malformed = case
    _prepare(kit, content, "structured.csv", malformed)
