"""Validation of everything that comes in from files, with pydantic: one error line per bad row
and field, naming the file and the row as a spreadsheet shows it (the header is row 1). The
values themselves (ids, codes, months, dates, times, names, references) are checked by
ledger.values, which the Avro records and the command line's arguments go through too; the
row models here say which value each field holds and check the fields against each other.

A file is checked as a stream, CHUNK_ROWS rows at a time, so that a file of millions of rows
is checked in bounded memory: once it has a problem (nothing of it will be applied) its valid
rows are no longer kept, every row is still checked, and the report keeps the first
MAX_PROBLEM_LINES lines in row order with the count of all of them (`Problems`)."""

from __future__ import annotations

import bisect
import codecs
import csv
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from ledger import values

MAX_FILE_BYTES = 2 * 1024**3  # 2 GiB: the whole country's enrolments are well under 1 GB
CHUNK_ROWS = 5_000  # rows validated together: pydantic's speed, in bounded memory
MAX_PROBLEM_LINES = 1_000  # problem lines kept for a report; the rest are counted

# The csv module refuses a field longer than 131,072 characters with an error that ends the
# reading; no field can be longer than the file, and the value checks refuse a long one with
# a line naming its row and field.
csv.field_size_limit(min(MAX_FILE_BYTES, 2**31 - 1))


def row_order(problem: str) -> tuple[int, str]:
    """A problem line's sort key: its row (or record) number, then its text; a problem of the
    whole file comes first."""
    try:
        unit = next(u for u in (": row ", ": record ", ": entry ") if u in problem)
        rest = problem.split(unit, 1)[1]
        return int(rest.split(":", 1)[0]), problem
    except StopIteration:
        return 0, problem
    except (IndexError, ValueError):
        return 0, problem


class Problems(list[str]):
    """Problem lines as a report keeps them: the first `cap` in row order, each once, and
    `total`, how many were added, so that a file with a problem on each of a million rows
    costs a thousand lines of memory, and the report can say how many more there are. Add
    lines with append, extend or +=; a plain list keeps every line instead."""

    def __init__(self, lines: Iterable[str] = (), cap: int = MAX_PROBLEM_LINES) -> None:
        super().__init__()
        self.cap = cap
        self.total = 0
        self._kept: set[str] = set()
        self.extend(lines)

    def append(self, line: str) -> None:
        if line in self._kept:
            return
        self.total += 1
        if len(self) >= self.cap and row_order(line) >= row_order(self[-1]):
            return
        bisect.insort(self, line, key=row_order)
        self._kept.add(line)
        if len(self) > self.cap:
            self._kept.discard(super().pop())

    def extend(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.append(line)

    def __iadd__(self, lines: Iterable[str]) -> Problems:  # type: ignore[override,misc]
        self.extend(lines)
        return self

    @property
    def more(self) -> int:
        """How many problems were counted beyond the lines kept."""
        return self.total - len(self)


class InputRejected(Exception):
    """Input that cannot be applied. `problems` holds the report's lines, one per problem (at
    most MAX_PROBLEM_LINES, the first in row order when given as `Problems`), and `total`
    counts every problem, so that a caller can show the first ones and say how many more."""

    def __init__(self, problems: Sequence[str], total: int | None = None) -> None:
        lines = list(problems[:MAX_PROBLEM_LINES])
        if total is None:
            total = problems.total if isinstance(problems, Problems) else len(problems)
        self.problems = lines
        self.total = max(total, len(lines))
        more = f"\n... and {self.more:,} more problems" if self.more else ""
        super().__init__("\n".join(lines) + more)

    @property
    def more(self) -> int:
        return self.total - len(self.problems)


# Row fields: which value each holds


def _now(info: ValidationInfo) -> datetime | None:
    """The ledger's "now" given to a validation as its context (None: no check of the
    future, as for a row built directly)."""
    return (info.context or {}).get("now")


def _value(check: Callable[..., Any], *, dated: bool = False, optional: bool = False) -> Any:
    """A validator from one of ledger.values' checks (their InvalidValue is a ValueError);
    `dated`: the check takes the ledger's now too; `optional`: an empty field is let through
    (the checks across fields say when it is required)."""

    if not (dated or optional):
        return AfterValidator(check)

    def run(v: str, info: ValidationInfo) -> Any:
        if optional and not v:
            return v
        return check(v, _now(info)) if dated else check(v)

    return AfterValidator(run)


def _required(v: str) -> str:
    if not v:
        raise ValueError("is required")
    return v


def _blank_to_str(v: Any) -> Any:
    return "" if v is None else v


Text = Annotated[str, BeforeValidator(_blank_to_str)]
Required = Annotated[Text, AfterValidator(_required)]
PersonalId = Annotated[Text, _value(values.personal_id)]
# its form; whether the store knows it is checked against the store (enrolment)
ProvinceCode = Annotated[Text, _value(values.province_code_form)]
CommuneCode = Annotated[Text, _value(values.commune_code)]
Category = Annotated[Required, _value(values.category)]
Coefficient = Annotated[Text, _value(values.coefficient)]
Month = Annotated[Text, _value(values.month, dated=True)]
PastDate = Annotated[Text, _value(values.iso_date, dated=True)]
Timestamp = Annotated[Text, _value(values.timestamp, dated=True)]
VietnamTime = Annotated[Text, _value(values.vietnam_time, dated=True)]
EventId = Annotated[Text, _value(values.event_id)]
PaymentId = Annotated[Text, _value(values.payment_id)]
BankCode = Annotated[Text, _value(values.bank_code, optional=True)]
AccountNumber = Annotated[Text, _value(values.account_number, optional=True)]
Name = Annotated[Required, _value(values.person_name)]
Reference = Annotated[Required, _value(values.reference)]
Channel = Literal["POST", "BANK"]

Problem = tuple[str, str]  # (field, message)


class _Row(BaseModel):
    """A row's fields, each checked on its own. The checks across fields are `cross_field`,
    run on the raw values of every row, valid or not, so that a file is reported whole."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    @classmethod
    def cross_field(cls, raw: dict[str, str], bad: set[str]) -> list[Problem]:
        """Every problem across fields as (field, message), from the raw values; a check that
        reads a field in `bad` (already refused on its own) is skipped. (The checks against
        the ledger's clock are the fields' own.)"""
        return []

    @model_validator(mode="after")
    def _across_fields(self, info: ValidationInfo) -> _Row:
        if (info.context or {}).get("across_checked"):  # check_records runs them on raw values
            return self
        problems = self.cross_field(self.model_dump(), set())
        if problems:  # a row built directly, not through `check_records`
            field, message = problems[0]
            raise ValueError(f"{field}: {message}")
        return self


def _check(field: str, check: Callable[[], object]) -> list[Problem]:
    """A check across fields as a list of at most one problem, naming `field`."""
    try:
        check()
    except values.InvalidValue as err:
        return [(field, str(err))]
    return []


def _bank_details(raw: dict[str, str], bad: set[str], prefix: str = "") -> list[Problem]:
    """Both bank details for BANK, neither for POST (each valid on its own, if given)."""
    channel = raw[f"{prefix}channel"]
    found = []
    for field in (f"{prefix}bank_code", f"{prefix}account_number"):
        if field in bad:
            continue
        if channel == "BANK" and not raw[field]:
            found.append((field, "is required when the channel is BANK"))
        if channel == "POST" and raw[field]:
            found.append((field, "must be empty when the channel is POST"))
    return found


class EnrolmentRow(_Row):
    personal_id: PersonalId
    full_name: Name
    date_of_birth: PastDate
    sex: Literal["M", "F"]
    province_code: ProvinceCode
    commune_code: CommuneCode
    category: Category
    coefficient: Coefficient
    effective_month: Month
    channel: Channel
    bank_code: BankCode
    account_number: AccountNumber
    decision_ref: Reference

    @classmethod
    def cross_field(cls, raw: dict[str, str], bad: set[str]) -> list[Problem]:
        found = [] if "channel" in bad else _bank_details(raw, bad)
        if not bad & {"category", "coefficient"}:
            found += _check(
                "coefficient", lambda: values.coefficient_for(raw["category"], raw["coefficient"])
            )
        if not bad & {"date_of_birth", "effective_month"}:
            found += _check(
                "date_of_birth",
                lambda: values.born_by(raw["date_of_birth"], raw["effective_month"]),
            )
        return found


CLAIMANT_FIELDS = ("personal_id", "name", "channel", "bank_code", "account_number")


class DeathRow(_Row):
    event_id: EventId
    event_type: Literal["REGISTERED", "CORRECTED", "REVOKED"]
    registration_number: Reference
    personal_id: PersonalId
    full_name: Annotated[Text, _value(values.person_name, optional=True)]
    date_of_death: Annotated[Text, _value(values.iso_date, dated=True, optional=True)]
    registered_at: VietnamTime  # the registry's day is Vietnam's, from every way in
    registry_office: Annotated[Required, _value(values.office_name)]
    claimant_personal_id: Annotated[Text, _value(values.personal_id, optional=True)]
    claimant_name: Annotated[Text, _value(values.person_name, optional=True)]
    claimant_channel: Text
    claimant_bank_code: BankCode
    claimant_account_number: AccountNumber

    @classmethod
    def cross_field(cls, raw: dict[str, str], bad: set[str]) -> list[Problem]:
        found: list[Problem] = []
        kind = None if "event_type" in bad else raw["event_type"]
        if (kind != "REVOKED" or raw["date_of_death"]) and not bad & {
            "date_of_death",
            "registered_at",
        }:
            found += _check(
                "date_of_death",
                lambda: values.death_registered_after(raw["date_of_death"], raw["registered_at"]),
            )
        if kind == "REGISTERED" and not raw["full_name"] and "full_name" not in bad:
            found.append(("full_name", "is required for REGISTERED"))
        if any(raw[f"claimant_{f}"] for f in CLAIMANT_FIELDS):
            found += _claimant(raw, bad, kind)
        return found

    @property
    def claimant_given(self) -> bool:
        return any(getattr(self, f"claimant_{f}") for f in CLAIMANT_FIELDS)

    @property
    def claimant(self) -> dict[str, str] | None:
        if not self.claimant_given:
            return None
        return {f: getattr(self, f"claimant_{f}") for f in CLAIMANT_FIELDS}


def _claimant(raw: dict[str, str], bad: set[str], kind: str | None) -> list[Problem]:
    """A named funeral claimant: all of their fields, someone other than the dead person, and
    only on a registration or a correction."""
    found: list[Problem] = []
    if kind == "REVOKED":
        found.append(("claimant_personal_id", "a REVOKED registration names no claimant"))
    claimant = raw["claimant_personal_id"]
    if "claimant_personal_id" not in bad:
        found += _check("claimant_personal_id", lambda: values.personal_id(claimant))
        if claimant and claimant == raw["personal_id"] and "personal_id" not in bad:
            found.append(
                (
                    "claimant_personal_id",
                    f"{claimant} is the person who died: the funeral allowance is paid to "
                    "someone else",
                )
            )
    if not raw["claimant_name"] and "claimant_name" not in bad:
        found.append(("claimant_name", "is required with a claimant"))
    if raw["claimant_channel"] not in ("POST", "BANK"):
        found.append(("claimant_channel", "must be POST or BANK"))
    return found + _bank_details(raw, bad, "claimant_")


class SettlementRow(_Row):
    payment_id: PaymentId
    status: Literal["PAID", "FAILED", "RETURNED"]
    settled_at: Timestamp
    reference: Annotated[Text, _value(values.reference)]
    reason: Annotated[Text, _value(values.reason)]

    @classmethod
    def cross_field(cls, raw: dict[str, str], bad: set[str]) -> list[Problem]:
        found: list[Problem] = []
        status = None if "status" in bad else raw["status"]
        if status == "PAID" and not raw["reference"] and "reference" not in bad:
            found.append(("reference", "is required for PAID"))
        if status in ("FAILED", "RETURNED") and not raw["reason"] and "reason" not in bad:
            found.append(("reason", f"is required for {status}"))
        if not bad & {"settled_at", "payment_id"}:
            found += _check(
                "settled_at", lambda: values.settled_in_period(raw["settled_at"], raw["payment_id"])
            )
        return found


class UnitRow(_Row):
    """A row of a reorganisation (`ledger units import`): a whole province when both commune
    columns are empty, else one commune."""

    effective_month: Month
    old_province_code: ProvinceCode
    old_commune_code: Annotated[Text, _value(values.commune_code, optional=True)]
    new_province_code: ProvinceCode
    new_commune_code: Annotated[Text, _value(values.commune_code, optional=True)]

    @classmethod
    def cross_field(cls, raw: dict[str, str], bad: set[str]) -> list[Problem]:
        old, new = raw["old_commune_code"], raw["new_commune_code"]
        if bad & {"old_commune_code", "new_commune_code"} or bool(old) == bool(new):
            return []
        field = "new_commune_code" if old else "old_commune_code"
        return [(field, "both commune codes or neither (a whole province)")]


class PayingAccountRow(_Row):
    """A province's paying account (`ledger paying-accounts import`): the account its bank
    transfers are paid from."""

    province_code: ProvinceCode
    debtor_name: Annotated[Required, _value(values.debtor_name)]
    bank_code: Annotated[Required, _value(values.bank_code)]
    account_number: Annotated[Required, _value(values.account_number)]


class BankSettlementRow(SettlementRow):
    """A settlement read from a bank's file (ledger.bank_results): the amount it moved too,
    in VND, which must be the line's (required but for a rejection, which moved nothing), and
    the id of the transfer message it answers, when the file names it."""

    amount: Annotated[Text, _value(values.bank_amount, optional=True)]
    instruction: Text = ""

    @classmethod
    def cross_field(cls, raw: dict[str, str], bad: set[str]) -> list[Problem]:
        found = super().cross_field(raw, bad)
        if not raw.get("amount") and raw.get("status") != "FAILED" and "amount" not in bad:
            found.append(("amount", "is required: the amount the bank moved, in VND"))
        return found


class PopulationRow(_Row):
    """A person as the national population register's extract holds them
    (`ledger population import`)."""

    personal_id: PersonalId
    full_name: Name
    date_of_birth: PastDate
    sex: Literal["M", "F"]
    date_of_death: Annotated[Text, _value(values.iso_date, dated=True, optional=True)]

    @classmethod
    def cross_field(cls, raw: dict[str, str], bad: set[str]) -> list[Problem]:
        died, born = raw["date_of_death"], raw["date_of_birth"]
        if died and not bad & {"date_of_death", "date_of_birth"} and died < born:
            return [("date_of_death", f"{died} is before the date of birth {born}")]
        return []


ENROLMENT_COLUMNS = tuple(EnrolmentRow.model_fields)
DEATH_COLUMNS = tuple(DeathRow.model_fields)
SETTLEMENT_COLUMNS = tuple(SettlementRow.model_fields)
UNIT_COLUMNS = tuple(UnitRow.model_fields)
PAYING_ACCOUNT_COLUMNS = tuple(PayingAccountRow.model_fields)
POPULATION_COLUMNS = tuple(PopulationRow.model_fields)

RowModel = TypeVar("RowModel", bound=_Row)

# (number, the record's fields), or (number, a problem of the entry as a whole)
Entry = tuple[int, dict[str, Any] | str]
# a row not applied: its number and the fields (those asked for) that passed on their own
Refused = tuple[int, dict[str, str]]


@cache
def _adapter(model: type[_Row]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


@cache
def _fields(model: type[_Row]) -> tuple[str, ...]:
    """The model's fields (pydantic computes `model_fields` at each reading of it)."""
    return tuple(model.model_fields)


# Reading files


class InputFile:
    """A file as it came in: its name (for the error lines) and its bytes, either given (the
    handlers are tested without a file system) or read from its path a block at a time each
    time they are asked for: a national file is never held whole. `sha256` is the digest of
    the bytes the last complete reading gave, which are the bytes that were checked."""

    BLOCK = 1 << 20

    def __init__(self, name: str, data: bytes = b"", path: Path | None = None) -> None:
        self.name = name
        self._data = data
        self._path = path
        self._sha256: str | None = None

    @classmethod
    def read(cls, path: Path) -> InputFile:
        """A regular file of at most MAX_FILE_BYTES. Its kind and size are looked at before a
        byte is read, so that a device (/dev/zero), a pipe or a huge file is refused with a
        line instead of being read for ever or filling the memory."""
        try:
            # O_NONBLOCK: opening a FIFO does not wait for a writer
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise InputRejected([f"{path}: no such file"]) from None
        except IsADirectoryError:
            raise InputRejected([f"{path}: is a directory; give the file"]) from None
        except PermissionError:
            raise InputRejected([f"{path}: cannot be read (permission denied)"]) from None
        except OSError as err:
            raise InputRejected([f"{path}: cannot be read ({err.strerror or err})"]) from None
        try:
            found = os.fstat(fd)
            if stat.S_ISDIR(found.st_mode):
                raise InputRejected([f"{path}: is a directory; give the file"])
            if not stat.S_ISREG(found.st_mode):
                raise InputRejected(
                    [f"{path}: is not a regular file (a device, a pipe or a socket); give the file"]
                )
            if found.st_size > MAX_FILE_BYTES:
                raise InputRejected([_too_large(path)])
        finally:
            os.close(fd)
        return cls(path.name, path=path)

    def blocks(self) -> Iterator[bytes]:
        """The file's bytes a block at a time; a file that grew past MAX_FILE_BYTES since it
        was looked at is refused when the reading gets there."""
        digest = hashlib.sha256()
        if self._path is None:
            for i in range(0, len(self._data), self.BLOCK):
                block = self._data[i : i + self.BLOCK]
                digest.update(block)
                yield block
        else:
            size = 0
            try:
                with self._path.open("rb") as f:
                    while block := f.read(self.BLOCK):
                        size += len(block)
                        if size > MAX_FILE_BYTES:
                            raise InputRejected([_too_large(self._path)])
                        digest.update(block)
                        yield block
            except OSError as err:
                raise InputRejected(
                    [f"{self._path}: cannot be read ({err.strerror or err})"]
                ) from None
        self._sha256 = digest.hexdigest()

    @property
    def data(self) -> bytes:
        """The whole file in memory: for the small files that are read whole (Avro)."""
        return b"".join(self.blocks())

    @property
    def sha256(self) -> str:
        """The digest of what the last complete reading of the file gave."""
        if self._sha256 is None:
            for _ in self.blocks():
                pass
        assert self._sha256 is not None
        return self._sha256

    def head(self, n: int) -> bytes:
        """The file's first `n` bytes (what kind of file it is)."""
        return next(self.blocks(), b"")[:n]

    def count_lines(self) -> int:
        return sum(block.count(b"\n") for block in self.blocks())


def _too_large(path: Path) -> str:
    return (
        f"{path}: is larger than {MAX_FILE_BYTES:,} bytes, the most an input file may be: split it"
    )


# a line as the csv module takes one: \r\n, \r or \n ends it, the ending kept
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def _lines(file: InputFile) -> Iterator[str]:
    """A file's text, a line at a time: the text of a large file is never held whole. A line
    break byte is never part of a UTF-8 sequence, so each line decodes on its own."""
    number = 0
    for piece, offset in _pieces(file):
        for line in _LINE.finditer(piece):
            number += 1
            yield _decoded(file, line, number, offset)


def _pieces(file: InputFile) -> Iterator[tuple[bytes, int]]:
    """The file's bytes in pieces that end with a line break (the last may not), each with
    its offset in the file; a UTF-8 byte order mark at the start left out."""
    bom = codecs.BOM_UTF8
    blocks = file.blocks()
    rest = b""
    for block in blocks:  # enough bytes to tell whether the file starts with one
        rest += block
        if len(rest) >= len(bom):
            break
    offset = len(bom) if rest.startswith(bom) else 0
    rest = rest[offset:]
    for block in blocks:
        buffer = rest + block
        # the lines ended in this buffer; a \r at its very end may be the start of \r\n
        cut = max(buffer.rfind(b"\n"), buffer.rfind(b"\r", 0, len(buffer) - 1)) + 1
        yield buffer[:cut], offset
        offset += cut
        rest = buffer[cut:]
    yield rest, offset


def _decoded(file: InputFile, line: re.Match[bytes], number: int, offset: int) -> str:
    try:
        return line[0].decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputRejected(
            [
                f"{file.name}: not UTF-8 text ({err.reason} at byte "
                f"{offset + line.start() + err.start}, line {number})"
            ]
        ) from None


def _csv_entries(file: InputFile, columns: tuple[str, ...]) -> Iterator[Entry]:
    """A CSV file's rows as entries, numbered as a spreadsheet numbers them, after its header
    is checked: a file that cannot be read as the contract says raises InputRejected."""
    name = file.name
    reader = csv.reader(_lines(file))
    header = next(reader, None)
    if header is None:
        raise InputRejected([f"{name}: empty file; expected the header {','.join(columns)}"])
    header = [h.strip() for h in header]
    if tuple(header) != columns:
        extra = [h for h in header if h not in columns]
        missing = [c for c in columns if c not in header]
        detail = []
        if extra:
            detail.append(f"unexpected column(s) {', '.join(values.shown(h) for h in extra)}")
        if missing:
            detail.append(f"missing column(s) {', '.join(missing)}")
        if not detail:
            detail.append("columns out of order")
        raise InputRejected(
            [f"{name}: row 1: header: {'; '.join(detail)}; expected {','.join(columns)}"]
        )
    number = 1
    while True:
        number += 1
        try:
            cells = next(reader, None)
        except csv.Error as err:  # the reader cannot go on after one
            raise InputRejected([f"{name}: row {number}: not readable as CSV ({err})"]) from None
        if cells is None:
            return
        if not "".join(cells).strip():
            continue
        if len(cells) != len(columns):
            yield number, f"has {len(cells)} fields, expected {len(columns)}"
        else:
            yield number, dict(zip(columns, cells, strict=True))


def read_rows(
    source: Path | InputFile,
    model: type[RowModel],
    problems: list[str] | None = None,
    refused: list[Refused] | None = None,
    *,
    now: datetime | None = None,
    keep: Sequence[str] | None = None,
) -> list[tuple[int, RowModel]]:
    """The rows of a CSV file as (row number, validated row). Column names and order must be
    exactly the contract's: a file that cannot be read as such raises InputRejected at once.
    `now`: the ledger's clock, for the values that may not be in the future (None: no check).

    Every problem of every row is one line, `FILE: row N: FIELD: message` (check_records)."""
    file = source if isinstance(source, InputFile) else InputFile.read(source)
    entries = _csv_entries(file, tuple(model.model_fields))
    return check_records(file.name, entries, model, problems, refused=refused, now=now, keep=keep)


def check_records(
    name: str,
    entries: Iterable[Entry],
    model: type[RowModel],
    problems: list[str] | None = None,
    *,
    unit: str = "row",
    refused: list[Refused] | None = None,
    now: datetime | None = None,
    keep: Sequence[str] | None = None,
) -> list[tuple[int, RowModel]]:
    """Validate entries (a file's rows, a container file's records), CHUNK_ROWS at a time:
    the valid ones as (number, row). Every problem of every entry, each field on its own and
    every check across fields, is one line naming the number and the field. Without
    `problems`, they are raised together as InputRejected once every entry is checked;
    given a list, they are added to it (a `Problems` keeps the first ones and counts all), in
    row order, so that the caller goes on checking and reports the whole file in one pass.

    `refused` receives, for each entry not returned, its fields that passed on their own (those
    in `keep`, when given), so that the caller checks those too (a reference to an unknown
    payment in a row with another problem). Once the file has a problem, nothing of it will be
    applied: its valid rows are no longer kept (and go to `refused`) when the problems are
    raised at the end or the caller says with `keep` which fields it still needs."""
    lines: list[str] = Problems() if problems is None else problems
    drop_valid = problems is None or keep is not None
    rows: list[tuple[int, RowModel]] = []
    bad_file = False
    for valid, bad, found in _checked(name, entries, model, now, unit):
        lines.extend(found)
        if refused is not None:
            refused.extend((n, _kept(fields, keep)) for n, _, fields in bad)
        if found and drop_valid and not bad_file:
            if refused is not None:
                refused.extend((n, _kept(row.model_dump(), keep)) for n, row in rows)
            rows = []
        bad_file = bad_file or bool(found)
        if bad_file and drop_valid:
            if refused is not None:
                refused.extend((n, _kept(row.model_dump(), keep)) for n, row in valid)
        else:
            rows += valid
    if problems is None and lines:
        raise InputRejected(lines)
    return rows


def entry_chunks(file: InputFile, model: type[_Row]) -> Iterator[list[Entry]]:
    """A CSV file's rows read CHUNK_ROWS at a time, not yet checked (check_entries): the file's
    own problems (its header, its encoding, a row the CSV reader cannot read) are raised as
    InputRejected as the reading gets to them."""
    entries = _csv_entries(file, _fields(model))
    while chunk := list(islice(entries, CHUNK_ROWS)):
        yield chunk


def check_entries(
    name: str,
    chunk: list[Entry],
    model: type[RowModel],
    *,
    now: datetime | None = None,
    keep: Sequence[str] | None = None,
    unit: str = "row",
) -> tuple[list[tuple[int, RowModel]], list[Refused], list[str]]:
    """A chunk of a file's rows (or entries: `unit`) checked: the valid ones, for each refused
    one its fields that passed on their own (those in `keep`), and the problem lines in row
    order. A function of its arguments alone, so that another process can check a chunk while
    this one reads the next."""
    valid, bad, found = _checked_chunk(name, chunk, model, now, unit)
    return valid, [(n, _kept(fields, keep)) for n, _, fields in bad], found


def _checked(
    name: str, entries: Iterable[Entry], model: type[RowModel], now: datetime | None, unit: str
) -> Iterator[
    tuple[list[tuple[int, RowModel]], list[tuple[int, list[Problem], dict[str, str]]], list[str]]
]:
    """Each chunk: its valid rows, its bad ones, and their problem lines in row order."""
    iterator = iter(entries)
    while chunk := list(islice(iterator, CHUNK_ROWS)):
        yield _checked_chunk(name, chunk, model, now, unit)


def _checked_chunk(
    name: str, chunk: Sequence[Entry], model: type[RowModel], now: datetime | None, unit: str
) -> tuple[list[tuple[int, RowModel]], list[tuple[int, list[Problem], dict[str, str]]], list[str]]:
    """One chunk, whatever its length: its valid rows, its bad ones, and their problem lines
    in row order."""
    numbers = [n for n, e in chunk if not isinstance(e, str)]
    records = [e for _, e in chunk if not isinstance(e, str)]
    valid, bad = _check_chunk(model, numbers, records, now)
    found = [f"{name}: {unit} {n}: {e}" for n, e in chunk if isinstance(e, str)]
    found += [f"{name}: {unit} {n}: {f}: {m}" for n, pb, _ in bad for f, m in pb]
    return valid, bad, sorted(found, key=row_order)


def _kept(fields: dict[str, str], keep: Sequence[str] | None) -> dict[str, str]:
    return fields if keep is None else {f: fields[f] for f in keep if f in fields}


def _check_chunk(
    model: type[RowModel],
    numbers: Sequence[int],
    records: list[dict[str, Any]],
    now: datetime | None,
) -> tuple[list[tuple[int, RowModel]], list[tuple[int, list[Problem], dict[str, str]]]]:
    """The valid records as (number, row), and the bad ones as (number, every problem, the
    fields that passed on their own)."""
    context = {"now": now, "across_checked": True}
    field_errors: dict[int, list[Problem]] = {}
    validated: list[Any] | None = None
    try:
        validated = _adapter(model).validate_python(records, context=context)
    except ValidationError as err:
        for e in err.errors(include_url=False, include_input=False):
            if len(e["loc"]) > 1:  # a field on its own; the checks across fields come below
                message = e["msg"].removeprefix("Value error, ")
                field_errors.setdefault(int(e["loc"][0]), []).append((str(e["loc"][1]), message))
    bad: list[tuple[int, list[Problem], dict[str, str]]] = []
    refused: set[int] = set()
    fields = _fields(model)
    every_field = frozenset(fields)
    for i, record in enumerate(records):
        own = field_errors.get(i, [])
        raw = {f: "" if (v := record.get(f)) is None else str(v).strip() for f in fields}
        # a field refused on its own, or one the record lacks: checks across it are skipped
        skip = {f for f, _ in own}
        if not record.keys() >= every_field:
            skip |= every_field - record.keys()
        across = model.cross_field(raw, skip)
        if own or across:
            every = list(dict.fromkeys([*own, *across]))
            bad.append((numbers[i], every, {f: v for f, v in raw.items() if f not in skip}))
            refused.add(i)
    good = [i for i in range(len(records)) if i not in refused]
    if validated is None or refused:  # each of the others is valid on its own
        validated = _adapter(model).validate_python([records[i] for i in good], context=context)
    return list(zip([numbers[i] for i in good], validated, strict=True)), bad


def validate(
    name: str,
    numbers: Sequence[int],
    records: list[dict[str, Any]],
    model: type[RowModel],
    problems: list[str] | None = None,
    unit: str = "row",
    refused: list[Refused] | None = None,
    now: datetime | None = None,
) -> list[tuple[int, RowModel]]:
    """Records already in memory, numbered as their source numbers them: check_records."""
    entries: list[Entry] = list(zip(numbers, records, strict=True))
    return check_records(name, entries, model, problems, unit=unit, refused=refused, now=now)


def validate_one(
    model: type[RowModel], record: dict[str, Any], now: datetime | None = None
) -> RowModel | list[Problem]:
    """One record (a Kafka message): the validated row, or every problem as (field, message),
    ordered as a file's lines are."""
    return validate_each(model, [record], now)[0]


def validate_each(
    model: type[RowModel], records: list[dict[str, Any]], now: datetime | None = None
) -> list[RowModel | list[Problem]]:
    """Records that stand each on its own (a poll of Kafka messages), checked together (a
    third cheaper than one at a time): for each, what validate_one gives it."""
    valid, bad = _check_chunk(model, range(len(records)), records, now)
    each: list[Any] = [None] * len(records)
    for i, row in valid:
        each[i] = row
    for i, problems, _ in bad:
        each[i] = sorted(problems)
    return each
