"""A partner's own column names, mapped to the kit's by a small YAML file the kit checks.

Nobody should rename columns by hand each month. The mapping file says, once, which column
of the partner's export holds what (``placelink partner prepare --mapping FILE``)::

    sheet: Referrals              # an .xlsx workbook with several sheets: the one to read
    columns:                      # kit column: the column in your export
      record_id: Client Ref
      given_name: Forename
      family_name: Surname
      referral_date: Date Referred
      date_of_birth:              # a date over three columns
        day: DOB Day
        month: DOB Month          # 1-12, or Jan / January
        year: DOB Year            # four digits
      # full_name:                # instead of given_name and family_name: one column, split
      #   column: Client Name
      #   order: given_first      # "Jane Mary Smith" (or "Smith, Jane"); family_first: "SMITH Jane"
      # address_line:             # the first line of the address over several columns
      #   join: [House No, Street]  # joined in this order with a space, blank parts left out
    ignore: [Notes, Keyworker]    # columns of your export that are neither read nor sent

A column of the export that the mapping does not name must be a kit column already, or be
listed under ``ignore``: nothing is read or dropped without being said. Errors name the
mapping file, the raw extract and the contract; they never quote a cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.governance.contracts import Contract, Dataset
from pipelines.partner_kit.errors import PartnerKitError

# Titles written before a name in a single name column ("Mrs Jane Smith").
_TITLES = r"(?i)^((MR|MRS|MS|MISS|MX|DR|PROF|REV|SIR|DAME|LADY|LORD|MASTER)\.?\s+)+"
_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("JAN", "JANUARY"),
            ("FEB", "FEBRUARY"),
            ("MAR", "MARCH"),
            ("APR", "APRIL"),
            ("MAY",),
            ("JUN", "JUNE"),
            ("JUL", "JULY"),
            ("AUG", "AUGUST"),
            ("SEP", "SEPT", "SEPTEMBER"),
            ("OCT", "OCTOBER"),
            ("NOV", "NOVEMBER"),
            ("DEC", "DECEMBER"),
        ],
        start=1,
    )
    for name in names
}
# A date whose parts are present but do not make a date: read as invalid, and counted so.
_UNUSABLE_DATE = "unusable date parts"
FULL_NAME = "full_name"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DateParts(_Strict):
    """A date written over three columns of the export."""

    day: str
    month: str
    year: str


class FullName(_Strict):
    """Given and family name in one column of the export."""

    column: str
    order: Literal["given_first", "family_first"]


class JoinedColumns(_Strict):
    """A text kit column written over several columns of the export (house number, street)."""

    join: list[str] = Field(min_length=2)


# Kit columns a mapping may join from several columns: free text, where a space between the
# parts is what a single column would hold.
JOINABLE = ("address_line",)


class _MappingFile(_Strict):
    sheet: str | None = None
    columns: dict[str, str | DateParts | FullName | JoinedColumns] = {}
    ignore: list[str] = []


@dataclass(frozen=True)
class MappedExtract:
    """The raw extract with the kit's column names, and counts of values the mapping could not
    use (a full name that would not split, date parts that are not a date)."""

    frame: pl.DataFrame
    unusable: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ColumnMapping:
    """A checked mapping file: kit column -> the export's column (or how it is made)."""

    path: Path
    sheet: str | None
    columns: dict[str, str | DateParts | FullName | JoinedColumns]
    ignore: tuple[str, ...]

    @classmethod
    def load(cls, path: Path) -> ColumnMapping:
        """Read and check the file's shape; raises :class:`PartnerKitError` naming the key."""
        path = Path(path)
        where = f"mapping file {path.name}"
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PartnerKitError(f"{where} does not exist: check the path") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PartnerKitError(f"{where} cannot be read ({type(exc).__name__})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark else ""
            raise PartnerKitError(
                f"{where} is not valid YAML{at}: fix the syntax "
                "(compare with the example in the README)"
            ) from None
        if not isinstance(document, dict) or "columns" not in document:
            raise PartnerKitError(
                f"{where} needs a 'columns:' section (kit column: your column), "
                "as in the example in the README"
            )
        try:
            parsed = _MappingFile.model_validate(document)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                # pydantic tries each shape of a column's value: name the key, not every attempt.
                key = ".".join(
                    str(p)
                    for p in error["loc"]
                    if p not in ("str", "DateParts", "FullName", "JoinedColumns")
                )
                problems.append(f"'{key}': {error['msg'].removeprefix('Value error, ')}")
            problems = list(dict.fromkeys(problems))
            raise PartnerKitError(
                f"{where}: {'; '.join(problems)}. A column is mapped as 'kit_column: Your Column', a "
                "date over three columns as {day: .., month: .., year: ..}, one name column as "
                "full_name: {column: .., order: given_first or family_first}, an address line over "
                "several columns as address_line: {join: [.., ..]}"
            ) from None
        columns = {
            k.strip(): v.strip() if isinstance(v, str) else v for k, v in parsed.columns.items()
        }
        return cls(
            path=path,
            sheet=parsed.sheet,
            columns=columns,
            ignore=tuple(c.strip() for c in parsed.ignore),
        )

    def sources(self) -> dict[str, list[str]]:
        """Each export column the mapping reads, with the kit columns it feeds."""
        used: dict[str, list[str]] = {}
        for target, source in self.columns.items():
            if isinstance(source, str):
                names = [source]
            elif isinstance(source, FullName):
                names = [source.column]
            elif isinstance(source, JoinedColumns):
                names = list(source.join)
            else:
                names = [source.day, source.month, source.year]
            for name in names:
                used.setdefault(name, []).append(target)
        return used

    def apply(
        self,
        frame: pl.DataFrame,
        input_path: Path,
        contract: Contract,
        dataset: Dataset,
        allowed: tuple[str, ...],
        used: tuple[str, ...] | None = None,
    ) -> MappedExtract:
        """``frame`` (the export, as read) with the kit's column names; ``allowed`` are the raw
        columns the contract lets the kit read for ``dataset``, ``used`` those it needs (named
        in messages; default ``allowed``)."""
        where = (
            f"mapping file {self.path.name} (raw extract {Path(input_path).name}, contract "
            f"{contract.label}, dataset '{dataset.name}')"
        )
        targets = set(self.columns)
        unknown = sorted(t for t in targets if t not in allowed and t != FULL_NAME)
        if unknown:
            raise PartnerKitError(
                f"{where}: {', '.join(repr(u) for u in unknown)} is not a column the kit takes for this "
                f"dataset (it takes: {', '.join(used or allowed)}, or full_name): correct the name on the left "
                "of the mapping, or ask your IG officer whether the contract should list it"
            )
        if FULL_NAME in targets and targets & {"given_name", "family_name"}:
            raise PartnerKitError(
                f"{where}: map either full_name or given_name and family_name, not both"
            )
        date_items = {"date_of_birth"} | {
            i.name
            for i in dataset.items
            if i.classification == "payload" and i.logical_type == "date"
        }
        for target, source in self.columns.items():
            if isinstance(source, DateParts) and target not in date_items:
                raise PartnerKitError(
                    f"{where}: '{target}' is not a date, so it cannot be made of "
                    "day, month and year columns"
                )
            if isinstance(source, FullName) and target != FULL_NAME:
                raise PartnerKitError(
                    f"{where}: only full_name is split into given and family names, not '{target}'"
                )
            if isinstance(source, JoinedColumns) and target not in JOINABLE:
                raise PartnerKitError(
                    f"{where}: '{target}' cannot be joined from several columns (only "
                    f"{', '.join(JOINABLE)} can): map it to one column"
                )
        sources = self.sources()
        twice = sorted(name for name, fed in sources.items() if len(fed) > 1)
        if twice:
            raise PartnerKitError(
                f"{where}: column(s) {', '.join(repr(t) for t in twice)} are mapped more "
                "than once: each column of the export feeds one kit column"
            )
        missing = [name for name in sources if name not in frame.columns]
        missing += [name for name in self.ignore if name not in frame.columns]
        if missing:
            raise PartnerKitError(
                f"{where} names column(s) {', '.join(repr(m) for m in missing)} that the extract's "
                "header row does not have: check the spelling (case and spaces count) against the "
                "export's first row"
            )
        unmapped = [c for c in frame.columns if c not in sources and c not in self.ignore]
        clashes = sorted(
            c
            for c in unmapped
            if c in targets or (c in ("given_name", "family_name") and FULL_NAME in targets)
        )
        if clashes:
            raise PartnerKitError(
                f"{where}: the extract has column(s) {', '.join(repr(c) for c in clashes)} and the mapping "
                "fills the same kit column(s) from other columns: list them under 'ignore', or map "
                "them instead"
            )
        strays = [c for c in unmapped if c not in allowed]
        if strays:
            raise PartnerKitError(
                f"{where}: the extract's column(s) {', '.join(repr(c) for c in strays)} are neither "
                "mapped nor kit columns: map them to a kit column, or list them under 'ignore' "
                "(they are then neither read nor sent)"
            )

        built: dict[str, pl.Series] = {c: frame[c] for c in unmapped}
        unusable: dict[str, int] = {}
        for target, source in self.columns.items():
            if isinstance(source, str):
                built[target] = frame[source].alias(target)
            elif isinstance(source, DateParts):
                built[target], unusable[target] = _join_date(frame, source, target)
            elif isinstance(source, JoinedColumns):
                built[target] = _join_text(frame, source.join, target)
            else:
                given, family, unsplit = _split_name(frame[source.column], source.order)
                built["given_name"], built["family_name"] = given, family
                unusable[FULL_NAME] = unsplit
        return MappedExtract(pl.DataFrame(list(built.values())), unusable)


def _join_date(frame: pl.DataFrame, parts: DateParts, target: str) -> tuple[pl.Series, int]:
    """ISO ``yyyy-mm-dd`` text from day, month and year columns; null where all are blank."""
    text = {
        k: pl.col(v).cast(pl.String).str.strip_chars().replace("", None)
        for k, v in (("day", parts.day), ("month", parts.month), ("year", parts.year))
    }
    # A spreadsheet may hold a whole number as 5.0.
    number = {k: e.str.replace(r"\.0+$", "").str.to_integer(strict=False) for k, e in text.items()}
    month = pl.coalesce(
        number["month"],
        text["month"]
        .str.to_uppercase()
        .replace_strict(_MONTHS, default=None, return_dtype=pl.Int64),
    )
    year_ok = text["year"].str.replace(r"\.0+$", "").str.contains(r"^\d{4}$")
    usable = number["day"].is_between(1, 31) & month.is_between(1, 12) & year_ok
    iso = pl.format(
        "{}-{}-{}",
        number["year"],
        month.cast(pl.String).str.zfill(2),
        number["day"].cast(pl.String).str.zfill(2),
    )
    any_part = pl.any_horizontal(e.is_not_null() for e in text.values())
    result = frame.select(
        pl.when(usable).then(iso).when(any_part).then(pl.lit(_UNUSABLE_DATE)).alias(target),
        (any_part & ~usable.fill_null(False)).alias("unusable"),
    )
    return result[target], int(result["unusable"].sum())


def _join_text(frame: pl.DataFrame, columns: list[str], target: str) -> pl.Series:
    """The columns' text joined with one space, in order; a blank part is left out, and a row
    whose parts are all blank is null (missing, as an empty single column would be)."""
    parts = [pl.col(c).cast(pl.String).str.strip_chars().replace("", None) for c in columns]
    joined = pl.concat_str(parts, separator=" ", ignore_nulls=True).replace("", None)
    return frame.select(joined.alias(target)).to_series()


def _split_name(names: pl.Series, order: str) -> tuple[pl.Series, pl.Series, int]:
    """Given and family name from one column; both null (and counted) where it will not split.

    A comma always separates family name from given names ("Smith, Jane"). Otherwise, for
    ``given_first`` the first word is the given name and the last the family name (middle
    names are dropped: other partners send a first given name); for ``family_first`` the
    first word is the family name and the second the given name. A leading title is dropped.
    """
    text = (
        pl.col("n")
        .cast(pl.String)
        .str.strip_chars()
        .str.replace(_TITLES, "")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
        .replace("", None)
    )
    comma = text.str.contains(",")
    before = text.str.split_exact(",", 1).struct.field("field_0").str.strip_chars()
    after = text.str.split_exact(",", 1).struct.field("field_1").str.strip_chars()
    words = text.str.split(" ")
    two_words = words.list.len() >= 2
    if order == "given_first":
        given, family = words.list.first(), words.list.last()
    else:
        given, family = words.list.get(1, null_on_oob=True), words.list.first()
    given = pl.when(comma).then(after.str.split(" ").list.first()).when(two_words).then(given)
    family = pl.when(comma).then(before).when(two_words).then(family)
    split = pl.DataFrame({"n": names}).select(
        given.replace("", None).alias("given_name"),
        family.replace("", None).alias("family_name"),
        text.is_not_null().alias("present"),
    )
    unsplit = split.filter(
        pl.col("present") & (pl.col("given_name").is_null() | pl.col("family_name").is_null())
    )
    both = pl.col("given_name").is_not_null() & pl.col("family_name").is_not_null()
    split = split.select(
        pl.when(both).then(pl.col("given_name")).alias("given_name"),
        pl.when(both).then(pl.col("family_name")).alias("family_name"),
    )
    return split["given_name"], split["family_name"], unsplit.height
