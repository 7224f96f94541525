"""Read one sheet of an Excel workbook (.xlsx) as a raw extract, every cell as text.

Partners often export from a case-management system to Excel. The sheet is read with
``fastexcel`` (the Rust calamine reader Polars uses for Excel) with every column as text,
as the CSV reader does, so nothing is guessed: an NHS number typed as a number keeps its
digits, and a cell formatted as a date reads ``1990-01-02 00:00:00``, which the date
rules read as that date whatever format the contract declares for text dates.

The first row of the sheet is the header. A workbook with several sheets needs the sheet
named (``--sheet`` or the mapping file's ``sheet``): guessing could send the wrong table.
"""

from __future__ import annotations

import string
from pathlib import Path

import fastexcel
import polars as pl

from pipelines.partner_kit.errors import PartnerKitError


def _column_letter(index: int) -> str:
    """Excel's name for the 0-based column ``index`` (0 -> A, 26 -> AA)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = string.ascii_uppercase[rest] + letters
    return letters


def _sheet_name(reader, path: Path, what: str, sheet: str | None) -> str:
    names = list(reader.sheet_names)
    if sheet is not None:
        if sheet not in names:
            raise PartnerKitError(
                f"{what} {path.name} has no sheet named '{sheet}' (its sheets: "
                f"{', '.join(names)}): give one of these with --sheet"
            )
        return sheet
    if len(names) != 1:
        raise PartnerKitError(
            f"{what} {path.name} has {len(names)} sheets ({', '.join(names)}): say which one holds "
            "the extract with --sheet NAME (or 'sheet:' in the mapping file)"
        )
    return names[0]


def read_workbook(path: Path, what: str = "raw extract", sheet: str | None = None) -> pl.DataFrame:
    """The named sheet (or the only one) of an .xlsx workbook, every column as text.

    Raises :class:`PartnerKitError` for a workbook that cannot be opened, an unknown or
    unnamed sheet, an empty sheet, a repeated column name, or a column with values but
    no name in the header row.
    """
    path = Path(path)
    try:
        reader = fastexcel.read_excel(path)
        name = _sheet_name(reader, path, what, sheet)
        # The header row as written (fastexcel renames repeated names, which would hide them).
        header_row = reader.load_sheet(name, header_row=None, n_rows=1, dtypes="string").to_polars()
        if header_row.height == 0:
            raise PartnerKitError(f"{what} {path.name}, sheet '{name}', is empty: export it again")
        frame = reader.load_sheet(name, header_row=None, skip_rows=1, dtypes="string").to_polars()
    except fastexcel.FastExcelError as exc:
        # Not calamine's message: a cell error can quote the cell.
        problem = (
            "a cell could not be read"
            if isinstance(exc, fastexcel.CalamineCellError)
            else "it is damaged, password-protected or not an .xlsx workbook"
        )
        raise PartnerKitError(
            f"{what} {path.name} could not be read as an Excel workbook ({problem}): check that it "
            "opens in Excel, then save it again as .xlsx (Excel Workbook) or as CSV UTF-8"
        ) from None
    header = [None if v is None else str(v).strip() or None for v in header_row.row(0)]
    if frame.width < len(header):  # a header with no rows below it
        frame = pl.DataFrame({f"c{i}": pl.Series([], dtype=pl.String) for i in range(len(header))})
    columns = {}
    for index, (title, column) in enumerate(zip(header, frame.iter_columns(), strict=False)):
        if title is None:
            if column.drop_nulls().str.strip_chars().ne("").any():
                raise PartnerKitError(
                    f"{what} {path.name}, sheet '{name}': column {_column_letter(index)} has values "
                    "but no name in the header row (row 1): name it, or delete the column"
                )
            continue  # an empty, unnamed column: formatting left over in the sheet
        if title in columns:
            raise PartnerKitError(
                f"{what} {path.name}, sheet '{name}', has a column name more than once in its "
                "header row: rename or remove the repeated column"
            )
        columns[title] = column.cast(pl.String).alias(title)
    if not columns:
        raise PartnerKitError(
            f"{what} {path.name}, sheet '{name}', has no header row: export it again"
        )
    return pl.DataFrame(list(columns.values()))
