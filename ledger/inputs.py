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
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


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

    @model_validator(mode="after")
    def _bank_details(self) -> EnrolmentRow:
        _check_bank_details(self.channel, self.bank_code, self.account_number, "")
        return self


def _check_bank_details(channel: str, bank_code: str, account: str, prefix: str) -> None:
    if channel == "BANK" and not (bank_code and account):
        missing = f"{prefix}bank_code" if not bank_code else f"{prefix}account_number"
        raise ValueError(f"{missing}: is required when the channel is BANK")
    if channel == "POST" and (bank_code or account):
        given = f"{prefix}bank_code" if bank_code else f"{prefix}account_number"
        raise ValueError(f"{given}: must be empty when the channel is POST")


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

    @model_validator(mode="after")
    def _consistent(self) -> DeathRow:
        if self.event_type != "REVOKED" or self.date_of_death:
            try:
                values.death_registered_after(self.date_of_death, self.registered_at)
            except ValueError as err:
                raise ValueError(f"date_of_death: {err}") from None
        if self.event_type == "REGISTERED" and not self.full_name:
            raise ValueError("full_name: is required for REGISTERED")
        if self.claimant_given:
            try:
                values.personal_id(self.claimant_personal_id)
            except ValueError as err:
                raise ValueError(f"claimant_personal_id: {err}") from None
            if not self.claimant_name:
                raise ValueError("claimant_name: is required with a claimant")
            if self.claimant_channel not in ("POST", "BANK"):
                raise ValueError("claimant_channel: must be POST or BANK")
            _check_bank_details(
                self.claimant_channel,
                self.claimant_bank_code,
                self.claimant_account_number,
                "claimant_",
            )
            if self.event_type == "REVOKED":
                raise ValueError("claimant_personal_id: a REVOKED registration names no claimant")
        return self

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

    @model_validator(mode="after")
    def _reason(self) -> SettlementRow:
        if self.status != "PAID" and not self.reason:
            raise ValueError(f"reason: is required for {self.status}")
        return self


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
    source: Path | InputFile, model: type[RowModel], problems: list[str] | None = None
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
    return validate(name, numbers, records, model, problems, found=found)


def validate(
    name: str,
    numbers: Sequence[int],
    records: list[dict[str, Any]],
    model: type[RowModel],
    problems: list[str] | None = None,
    unit: str = "row",
    found: Sequence[str] = (),
) -> list[tuple[int, RowModel]]:
    """Validate records, numbered as the source numbers them (a file's rows, a container
    file's records): the valid ones as (number, row). Each problem is one line naming the
    number and the field; they and those the caller `found` already are, in row order,
    raised as InputRejected, or added to `problems` when a list is given."""
    bad: dict[int, list[str]] = {}
    try:
        validated = _adapter(model).validate_python(records)
    except ValidationError as err:
        for index, field, message in _field_problems(err):
            i = int(index)
            bad.setdefault(i, []).append(f"{name}: {unit} {numbers[i]}: {field}: {message}")
        good = [i for i in range(len(records)) if i not in bad]
        # each of the others is valid on its own: validated again, without the bad ones
        validated = _adapter(model).validate_python([records[i] for i in good])
        numbers = [numbers[i] for i in good]
    rows = list(zip(numbers, validated, strict=True))
    lines = sorted([*found, *(line for lines in bad.values() for line in lines)], key=row_order)
    if problems is None:
        if lines:
            raise InputRejected(lines)
    else:
        problems.extend(lines)
    return rows


def validate_one(model: type[RowModel], record: dict[str, Any]) -> RowModel | list[tuple[str, str]]:
    """One record (a Kafka message): the validated row, or its problems as (field, message)."""
    try:
        return model.model_validate(record)
    except ValidationError as err:
        return [(field, message) for _, field, message in _field_problems(err, indexed=False)]


def _field_problems(err: ValidationError, indexed: bool = True) -> list[tuple[Any, str, str]]:
    """(index, field, message) of each error; index is None when a single record failed."""
    found = []
    for e in err.errors(include_url=False):
        index, *where = e["loc"] if indexed else (None, *e["loc"])
        message = e["msg"].removeprefix("Value error, ")
        if where:
            field = str(where[0])
        else:  # a check across fields names the field first: "FIELD: message"
            field, _, message = message.partition(": ")
        found.append((index, field, message))
    return found


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
