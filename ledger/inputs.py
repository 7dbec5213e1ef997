"""Validation of everything that comes in from files, with pydantic: one error line per bad row
and field, naming the file and the row as a spreadsheet shows it (the header is row 1)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from ledger.months import InvalidMonth, parse_month
from ledger.reference import province_codes


class InputRejected(Exception):
    """Input that cannot be applied; `problems` holds one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def _digits(n: int, what: str) -> Any:
    def check(v: str) -> str:
        if len(v) != n or not v.isascii() or not v.isdigit():
            raise ValueError(f"{what} must be {n} digits, got {v!r}")
        return v

    return AfterValidator(check)


def _required(v: str) -> str:
    if not v:
        raise ValueError("is required")
    return v


def _month(v: str) -> str:
    try:
        parse_month(v)
    except InvalidMonth:
        raise ValueError(f"must be a month YYYY-MM, got {v!r}") from None
    return v


def _province(v: str) -> str:
    if v not in province_codes():
        raise ValueError(f"unknown province code {v!r}")
    return v


def _coefficient(v: str) -> str:
    try:
        c = Decimal(v)
    except InvalidOperation:
        raise ValueError(f"must be a decimal such as 1.5, got {v!r}") from None
    if not c.is_finite() or c <= 0 or c > 3 or c.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValueError(f"must be above 0 and at most 3.0, with two decimals at most, got {v!r}")
    return str(c)


def _iso_date(v: str) -> str:
    try:
        if len(v) == 10:
            return date.fromisoformat(v).isoformat()
    except ValueError:
        pass
    raise ValueError(f"must be a date YYYY-MM-DD, got {v!r}")


def _timestamp(v: str) -> str:
    try:
        t = datetime.fromisoformat(v)
    except ValueError:
        raise ValueError(f"must be an ISO 8601 time with offset, got {v!r}") from None
    if t.tzinfo is None:
        raise ValueError(f"must carry a UTC offset, got {v!r}")
    return t.isoformat()


def _blank_to_str(v: Any) -> Any:
    return "" if v is None else v


Text = Annotated[str, BeforeValidator(_blank_to_str)]
Required = Annotated[Text, AfterValidator(_required)]
PersonalId = Annotated[Text, _digits(12, "a personal id")]
Month = Annotated[Text, AfterValidator(_month)]
IsoDate = Annotated[Text, AfterValidator(_iso_date)]
Timestamp = Annotated[Text, AfterValidator(_timestamp)]
Channel = Literal["POST", "BANK"]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class EnrolmentRow(_Row):
    personal_id: PersonalId
    full_name: Required
    date_of_birth: IsoDate
    sex: Literal["M", "F"]
    province_code: Annotated[Text, AfterValidator(_province)]
    commune_code: Annotated[Text, _digits(5, "a commune code")]
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
    event_id: Annotated[Text, AfterValidator(lambda v: str(UUID(v)))]
    event_type: Literal["REGISTERED", "CORRECTED", "REVOKED"]
    registration_number: Required
    personal_id: PersonalId
    full_name: Text
    date_of_death: Text
    registered_at: Timestamp
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
                _iso_date(self.date_of_death)
            except ValueError as err:
                raise ValueError(f"date_of_death: {err}") from None
            if self.date_of_death > self.registered_at[:10]:
                raise ValueError("date_of_death: is after registered_at")
        if self.event_type == "REGISTERED" and not self.full_name:
            raise ValueError("full_name: is required for REGISTERED")
        if self.claimant_given:
            if len(self.claimant_personal_id) != 12 or not self.claimant_personal_id.isdigit():
                raise ValueError("claimant_personal_id: must be 12 digits")
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


def _payment_id(v: str) -> str:
    period, _, rest = v[:7], v[7:8], v[8:]
    province, person = rest[:2], rest[3:]
    ok = (
        len(v) in (23, 24)
        and v[7] == "-"
        and v[10] == "-"
        and province.isdigit()
        and person[:12].isdigit()
        and person[12:] in ("", "F")
    )
    try:
        parse_month(period)
    except InvalidMonth:
        ok = False
    if not ok:
        raise ValueError(f"must be a payment id such as 2025-07-27-001234567890, got {v!r}")
    return v


class SettlementRow(_Row):
    payment_id: Annotated[Text, AfterValidator(_payment_id)]
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


def read_rows(path: Path, model: type[RowModel]) -> list[tuple[int, RowModel]]:
    """Every row of a CSV file as (row number, validated row), or InputRejected naming each
    bad row and field. Column names and order must be exactly the contract's."""
    name = path.name
    columns = tuple(model.model_fields)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputRejected([f"{path}: no such file"]) from None
    except IsADirectoryError:
        raise InputRejected([f"{path}: is a directory; give the CSV file"]) from None
    except PermissionError:
        raise InputRejected([f"{path}: cannot be read (permission denied)"]) from None
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
    problems: list[str] = []
    numbers: list[int] = []
    records: list[dict[str, str]] = []
    for number, cells in enumerate(reader, start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(columns):
            problems.append(
                f"{name}: row {number}: has {len(cells)} fields, expected {len(columns)}"
            )
            continue
        numbers.append(number)
        records.append(dict(zip(columns, cells, strict=True)))
    validated = validate(name, numbers, records, model, problems)
    return list(zip(numbers, validated, strict=True))


def validate(
    name: str,
    numbers: Sequence[int],
    records: list[dict[str, Any]],
    model: type[RowModel],
    problems: list[str] | None = None,
    unit: str = "row",
) -> list[RowModel]:
    """Validate records (numbered as the source numbers them: a file's rows, a container
    file's records); InputRejected lists every problem with its number and field."""
    problems = list(problems or [])
    try:
        validated = _adapter(model).validate_python(records)
    except ValidationError as err:
        for index, field, message in _field_problems(err):
            problems.append(f"{name}: {unit} {numbers[int(index)]}: {field}: {message}")
        validated = []
    if problems:
        raise InputRejected(sorted(problems, key=_row_order))
    return validated


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


def _row_order(problem: str) -> tuple[int, str]:
    try:
        rest = (
            problem.split(": row ", 1)[1]
            if ": row " in problem
            else problem.split(": record ", 1)[1]
        )
        return int(rest.split(":", 1)[0]), problem
    except (IndexError, ValueError):
        return 0, problem
