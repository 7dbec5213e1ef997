"""Validation of everything that comes in from files, with pydantic: one error line per bad row
and field, naming the file and the row as a spreadsheet shows it (the header is row 1). The
values themselves (ids, codes, months, dates, times) are checked by ledger.values, which the
Avro records and the command line's arguments go through too."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from ledger import values


class InputRejected(Exception):
    """Input that cannot be applied; `problems` holds one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def _value(check: Callable[[str], Any]) -> Any:
    """A validator from one of ledger.values' checks (their InvalidValue is a ValueError)."""
    return AfterValidator(check)


def _required(v: str) -> str:
    if not v:
        raise ValueError("is required")
    return v


def _coefficient(v: str) -> str:
    try:
        if not v.isascii():  # Decimal() reads Arabic-Indic and other Unicode digits too
            raise InvalidOperation
        c = Decimal(v)
    except InvalidOperation:
        raise ValueError(f"must be a decimal such as 1.5, got {v!r}") from None
    if not c.is_finite() or c <= 0 or c > 3 or c.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValueError(f"must be above 0 and at most 3.0, with two decimals at most, got {v!r}")
    return str(c)


def _blank_to_str(v: Any) -> Any:
    return "" if v is None else v


Text = Annotated[str, BeforeValidator(_blank_to_str)]
Required = Annotated[Text, AfterValidator(_required)]
PersonalId = Annotated[Text, _value(values.personal_id)]
ProvinceCode = Annotated[Text, _value(values.province_code)]
CommuneCode = Annotated[Text, _value(values.commune_code)]
Month = Annotated[Text, _value(values.month)]
IsoDate = Annotated[Text, _value(values.iso_date)]
Timestamp = Annotated[Text, _value(values.timestamp)]
VietnamTime = Annotated[Text, _value(values.vietnam_time)]
EventId = Annotated[Text, _value(values.event_id)]
PaymentId = Annotated[Text, _value(values.payment_id)]
Channel = Literal["POST", "BANK"]


class _Row(BaseModel):
    """A row's fields, each checked on its own. The checks across fields are `cross_field`,
    run on the raw values of every row, valid or not, so that a file is reported whole."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    @classmethod
    def cross_field(cls, raw: dict[str, str], bad: set[str]) -> list[tuple[str, str]]:
        """Every problem across fields as (field, message), from the raw values; a check that
        reads a field in `bad` (already refused on its own) is skipped."""
        return []

    @model_validator(mode="after")
    def _across_fields(self) -> _Row:
        problems = self.cross_field(self.model_dump(), set())
        if problems:  # a row built directly, not through `validate`
            field, message = problems[0]
            raise ValueError(f"{field}: {message}")
        return self


class EnrolmentRow(_Row):
    personal_id: PersonalId
    full_name: Required
    date_of_birth: IsoDate
    sex: Literal["M", "F"]
    province_code: ProvinceCode
    commune_code: CommuneCode
    category: Required
    coefficient: Annotated[Text, AfterValidator(_coefficient)]
    effective_month: Month
    channel: Channel
    bank_code: Text
    account_number: Text
    decision_ref: Required

    @classmethod
    def cross_field(cls, raw: dict[str, str], bad: set[str]) -> list[tuple[str, str]]:
        if bad & {"channel", "bank_code", "account_number"}:
            return []
        return _bank_details(raw["channel"], raw["bank_code"], raw["account_number"], "")


def _bank_details(channel: str, bank_code: str, account: str, prefix: str) -> list[tuple[str, str]]:
    """Both bank details for BANK, neither for POST."""
    found = []
    for field, value in ((f"{prefix}bank_code", bank_code), (f"{prefix}account_number", account)):
        if channel == "BANK" and not value:
            found.append((field, "is required when the channel is BANK"))
        if channel == "POST" and value:
            found.append((field, "must be empty when the channel is POST"))
    return found


class DeathRow(_Row):
    event_id: EventId
    event_type: Literal["REGISTERED", "CORRECTED", "REVOKED"]
    registration_number: Required
    personal_id: PersonalId
    full_name: Text
    date_of_death: Text
    registered_at: VietnamTime  # the registry's day is Vietnam's, from every way in
    registry_office: Required
    claimant_personal_id: Text
    claimant_name: Text
    claimant_channel: Text
    claimant_bank_code: Text
    claimant_account_number: Text

    @classmethod
    def cross_field(cls, raw: dict[str, str], bad: set[str]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        kind = None if "event_type" in bad else raw["event_type"]
        if (kind != "REVOKED" or raw["date_of_death"]) and "registered_at" not in bad:
            try:
                values.death_registered_after(raw["date_of_death"], raw["registered_at"])
            except ValueError as err:
                found.append(("date_of_death", str(err)))
        if kind == "REGISTERED" and not raw["full_name"]:
            found.append(("full_name", "is required for REGISTERED"))
        claimant = [raw[f"claimant_{f}"] for f in CLAIMANT_FIELDS]
        if any(claimant):
            if kind == "REVOKED":
                found.append(("claimant_personal_id", "a REVOKED registration names no claimant"))
            try:
                values.personal_id(raw["claimant_personal_id"])
            except ValueError as err:
                found.append(("claimant_personal_id", str(err)))
            if not raw["claimant_name"]:
                found.append(("claimant_name", "is required with a claimant"))
            channel = raw["claimant_channel"]
            if channel not in ("POST", "BANK"):
                found.append(("claimant_channel", "must be POST or BANK"))
            found += _bank_details(
                channel, raw["claimant_bank_code"], raw["claimant_account_number"], "claimant_"
            )
        return found

    @property
    def claimant_given(self) -> bool:
        return any(
            (
                self.claimant_personal_id,
                self.claimant_name,
                self.claimant_channel,
                self.claimant_bank_code,
                self.claimant_account_number,
            )
        )

    @property
    def claimant(self) -> dict[str, str] | None:
        if not self.claimant_given:
            return None
        return {
            "personal_id": self.claimant_personal_id,
            "name": self.claimant_name,
            "channel": self.claimant_channel,
            "bank_code": self.claimant_bank_code,
            "account_number": self.claimant_account_number,
        }


class SettlementRow(_Row):
    payment_id: PaymentId
    status: Literal["PAID", "FAILED", "RETURNED"]
    settled_at: Timestamp
    reference: Text
    reason: Text

    @classmethod
    def cross_field(cls, raw: dict[str, str], bad: set[str]) -> list[tuple[str, str]]:
        if "status" not in bad and raw["status"] != "PAID" and not raw["reason"]:
            return [("reason", f"is required for {raw['status']}")]
        return []


CLAIMANT_FIELDS = ("personal_id", "name", "channel", "bank_code", "account_number")
ENROLMENT_COLUMNS = tuple(EnrolmentRow.model_fields)
DEATH_COLUMNS = tuple(DeathRow.model_fields)
SETTLEMENT_COLUMNS = tuple(SettlementRow.model_fields)

RowModel = TypeVar("RowModel", bound=_Row)


@cache
def _adapter(model: type[_Row]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


@dataclass(frozen=True)
class InputFile:
    """A file as it came in: its name (for the error lines) and its bytes. Handlers take these,
    so that they are tested without a file system."""

    name: str
    data: bytes

    @classmethod
    def read(cls, path: Path) -> InputFile:
        try:
            return cls(path.name, path.read_bytes())
        except FileNotFoundError:
            raise InputRejected([f"{path}: no such file"]) from None
        except IsADirectoryError:
            raise InputRejected([f"{path}: is a directory; give the file"]) from None
        except PermissionError:
            raise InputRejected([f"{path}: cannot be read (permission denied)"]) from None


def read_rows(
    source: Path | InputFile,
    model: type[RowModel],
    problems: list[str] | None = None,
    refused: list[tuple[int, dict[str, str]]] | None = None,
) -> list[tuple[int, RowModel]]:
    """The rows of a CSV file as (row number, validated row). Column names and order must be
    exactly the contract's: a file that cannot be read as such raises InputRejected at once.

    A bad row is reported as one line per problem, `FILE: row N: FIELD: message`: without
    `problems`, InputRejected lists them all; with a list, they are added to it (in row
    order) and the valid rows are returned, so that the caller goes on checking those and
    reports every problem of the file in one pass."""
    file = source if isinstance(source, InputFile) else InputFile.read(source)
    name = file.name
    columns = tuple(model.model_fields)
    try:
        text = file.data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputRejected(
            [f"{name}: not UTF-8 text ({err.reason} at byte {err.start})"]
        ) from None
    # newline="" keeps line breaks inside quoted fields as they are (csv module's rule)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise InputRejected([f"{name}: empty file; expected the header {','.join(columns)}"])
    header = [h.strip() for h in header]
    if tuple(header) != columns:
        extra = [h for h in header if h not in columns]
        missing = [c for c in columns if c not in header]
        detail = []
        if extra:
            detail.append(f"unexpected column(s) {', '.join(extra)}")
        if missing:
            detail.append(f"missing column(s) {', '.join(missing)}")
        if not detail:
            detail.append("columns out of order")
        raise InputRejected(
            [f"{name}: row 1: header: {'; '.join(detail)}; expected {','.join(columns)}"]
        )
    found: list[str] = []
    numbers: list[int] = []
    records: list[dict[str, str]] = []
    for number, cells in enumerate(reader, start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(columns):
            found.append(f"{name}: row {number}: has {len(cells)} fields, expected {len(columns)}")
            continue
        numbers.append(number)
        records.append(dict(zip(columns, cells, strict=True)))
    return validate(name, numbers, records, model, problems, found=found, refused=refused)


def validate(
    name: str,
    numbers: Sequence[int],
    records: list[dict[str, Any]],
    model: type[RowModel],
    problems: list[str] | None = None,
    unit: str = "row",
    found: Sequence[str] = (),
    refused: list[tuple[int, dict[str, str]]] | None = None,
) -> list[tuple[int, RowModel]]:
    """Validate records, numbered as the source numbers them (a file's rows, a container
    file's records): the valid ones as (number, row). Every problem of every record, each
    field on its own and every check across fields, is one line naming the number and the
    field; they and those the caller `found` already are, in row order, raised as
    InputRejected, or added to `problems` when a list is given. `refused` receives each bad
    record's fields that passed on their own, so that the caller checks those too (a
    reference to an unknown payment in a row with another problem)."""
    field_errors: dict[int, list[tuple[str, str]]] = {}
    validated: list[Any] | None = None
    try:
        validated = _adapter(model).validate_python(records)
    except ValidationError as err:
        for e in err.errors(include_url=False):
            if len(e["loc"]) > 1:  # a field on its own; the checks across fields come below
                message = e["msg"].removeprefix("Value error, ")
                field_errors.setdefault(int(e["loc"][0]), []).append((str(e["loc"][1]), message))
    bad: dict[int, list[tuple[str, str]]] = {}
    for i, record in enumerate(records):
        own = field_errors.get(i, [])
        given = {k: "" if v is None else str(v).strip() for k, v in record.items()}
        # a field refused on its own, or one the record lacks: checks across it are skipped
        skip = {f for f, _ in own} | (set(model.model_fields) - set(given))
        raw = {f: given.get(f, "") for f in model.model_fields}
        every = list(dict.fromkeys([*own, *model.cross_field(raw, skip)]))
        if every:
            bad[i] = every
            if refused is not None:
                refused.append((numbers[i], {f: v for f, v in raw.items() if f not in skip}))
    good = [i for i in range(len(records)) if i not in bad]
    if validated is None or bad:  # each of the others is valid on its own
        validated = _adapter(model).validate_python([records[i] for i in good])
    rows = list(zip([numbers[i] for i in good], validated, strict=True))
    every_line = [f"{name}: {unit} {numbers[i]}: {f}: {m}" for i, pb in bad.items() for f, m in pb]
    lines = sorted([*found, *every_line], key=row_order)
    if problems is None:
        if lines:
            raise InputRejected(lines)
    else:
        problems.extend(lines)
    return rows


def validate_one(model: type[RowModel], record: dict[str, Any]) -> RowModel | list[tuple[str, str]]:
    """One record (a Kafka message): the validated row, or every problem as (field, message)."""
    problems: list[str] = []
    rows = validate("", [1], [record], model, problems)
    if rows:
        return rows[0][1]
    return [tuple(p.split(": ", 3)[2:4]) for p in problems]  # type: ignore[misc]


def row_order(problem: str) -> tuple[int, str]:
    """A problem line's sort key: its row (or record) number, then its text; a problem of the
    whole file comes first."""
    try:
        rest = (
            problem.split(": row ", 1)[1]
            if ": row " in problem
            else problem.split(": record ", 1)[1]
        )
        return int(rest.split(":", 1)[0]), problem
    except (IndexError, ValueError):
        return 0, problem
