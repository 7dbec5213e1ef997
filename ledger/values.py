"""The values every way in shares: a CSV row, an Avro record (a Kafka message or a container
file) and a command-line argument are checked by the same function, with one message each.

Each function takes the text as received and returns it as recorded, or raises InvalidValue
saying what the value must be and what was given; the caller names the field or the option.
Pure: no I/O beyond the reference data shipped in the package (the province codes).

Digits are the ASCII digits 0-9 and nothing else. `str.isdigit()` is true for Arabic-Indic
(٠١٢), Devanagari, fullwidth and other Unicode digits too, and `int()`, `Decimal()`, `UUID()`
and the `re` module's `\\d` read them as numbers: an id written with them would be a second
spelling of the same person, commune or payment."""

from __future__ import annotations

import re
from datetime import date, datetime
from uuid import UUID

from ledger.months import VIETNAM, InvalidMonth, parse_month
from ledger.reference import province_codes


class InvalidValue(ValueError):
    """A value that is not what it must be; the message says what and what was given."""


def is_ascii_digits(text: str, length: int | None = None) -> bool:
    """Only the digits 0-9 (at least one), and exactly `length` of them when given."""
    return (
        bool(text) and text.isascii() and text.isdigit() and (length is None or len(text) == length)
    )


def personal_id(text: str) -> str:
    """The national personal identification number: exactly 12 digits 0-9."""
    if not is_ascii_digits(text, 12):
        raise InvalidValue(f"must be 12 digits 0-9, got {text!r}")
    return text


def province_code(text: str) -> str:
    """A province code in force (reference data)."""
    if text not in province_codes():
        raise InvalidValue(f"unknown province code {text!r}")
    return text


def commune_code(text: str) -> str:
    """A commune code: exactly 5 digits 0-9."""
    if not is_ascii_digits(text, 5):
        raise InvalidValue(f"must be 5 digits 0-9, got {text!r}")
    return text


def month(text: str) -> str:
    """A period YYYY-MM."""
    try:
        if text.isascii():
            parse_month(text)
            return text
    except InvalidMonth:
        pass
    raise InvalidValue(f"must be a month YYYY-MM, got {text!r}")


# rule 8: period, province code, personal id, and F for a funeral line
_PAYMENT_ID = re.compile(r"(\d{4}-\d{2})-(\d{2})-(\d{12})(F?)", re.ASCII)


def payment_id(text: str) -> str:
    """A payment id as rule 8 makes it: `2025-07-27-001234567890`, `F` appended for a funeral
    line."""
    match = _PAYMENT_ID.fullmatch(text)
    try:
        if match is not None:
            parse_month(match[1])
            return text
    except InvalidMonth:
        pass
    raise InvalidValue(
        f"must be a payment id such as 2025-07-27-001234567890 (F appended for a funeral "
        f"line), got {text!r}"
    )


def payment_list_of(text: str) -> tuple[str, str]:
    """The (period, province code) of the list a valid payment id is on."""
    return text[:7], text[8:10]


def iso_date(text: str) -> str:
    """A day YYYY-MM-DD."""
    try:
        if len(text) == 10 and text.isascii():
            return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    raise InvalidValue(f"must be a date YYYY-MM-DD, got {text!r}")


def _instant(text: str) -> datetime:
    try:
        if not text.isascii():
            raise ValueError
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidValue(f"must be an ISO 8601 time with offset, got {text!r}") from None
    if moment.tzinfo is None:
        raise InvalidValue(f"must carry a UTC offset, got {text!r}")
    return moment


def timestamp(text: str) -> str:
    """An ISO 8601 time with its UTC offset, kept in the offset given."""
    return _instant(text).isoformat()


def vietnam_time(text: str) -> str:
    """An ISO 8601 time with a UTC offset, recorded in Vietnam's time (UTC+7): the same
    instant reads the same whether it came as text with any offset or as an Avro
    timestamp (UTC)."""
    return _instant(text).astimezone(VIETNAM).isoformat()


def vietnam_day(text: str) -> str:
    """The day in Vietnam (YYYY-MM-DD) of an ISO 8601 time with offset."""
    return _instant(text).astimezone(VIETNAM).date().isoformat()


def death_registered_after(date_of_death: str, registered_at: str) -> str:
    """A date of death (YYYY-MM-DD) that is not after the day, in Vietnam, on which the death
    was registered: a registry's day is Vietnam's, whatever offset the time was sent with."""
    died = iso_date(date_of_death)
    day = vietnam_day(registered_at)
    if died > day:
        raise InvalidValue(f"{died} is after the day registered_at falls on in Vietnam ({day})")
    return died


def event_id(text: str) -> str:
    """A registry's event id: a UUID, in its canonical lower-case form."""
    try:
        if text.isascii():
            return str(UUID(text))
    except ValueError:
        pass
    raise InvalidValue(f"must be a UUID, got {text!r}")


def whole_number(text: str) -> int:
    """A whole number written with the digits 0-9 (an optional minus sign before them)."""
    if not is_ascii_digits(text.removeprefix("-")):
        raise InvalidValue(f"must be a whole number written with the digits 0-9, got {text!r}")
    return int(text)
