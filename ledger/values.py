"""The values every way in shares: a CSV row, an Avro record (a Kafka message or a container
file) and a command-line argument are checked by the same function, with one message each.

Each function takes the text as received and returns it as recorded, or raises InvalidValue
saying what the value must be and what was given; the caller names the field or the option.
Pure: no I/O beyond the reference data shipped in the package (provinces, categories, banks),
and no clock: "now" is always the caller's, the ledger's clock (`ports.clock.now()`), given as
an argument; None means "no check against the clock" (a value read back, a test).

Digits are the ASCII digits 0-9 and nothing else. `str.isdigit()` is true for Arabic-Indic
(٠١٢), Devanagari, fullwidth and other Unicode digits too, and `int()`, `Decimal()`, `UUID()`
and the `re` module's `\\d` read them as numbers: an id written with them would be a second
spelling of the same person, commune or payment.

Time bounds, so that a typo cannot become a fact (a death dated 2099 would stop a living
person's allowance and pay a funeral allowance):

- a day or a moment (a birth, a death, a registration, a settlement) is not before 1900-01-01
  and not in the future: a moment not after `now` plus CLOCK_SKEW (5 minutes, for a sender
  whose clock runs a little ahead), a day not after today in Vietnam;
- a month (an effective month, `--from`, `--period`) is from 1900-01 on and at most
  MONTHS_AHEAD (12) months after the current month in Vietnam: far enough to record a
  decision or a new level a year ahead, near enough to refuse 2205-07 for 2025-07.

Text people wrote (names, references, reasons) is recorded in Unicode NFC, so that one name
typed on two keyboards (precomposed or combining accents) is one name, and may hold no
control, format or line-break character: those are invisible on a screen and in a bank's file
(a zero-width space, a right-to-left override), so the same-looking name would be another."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Set as AbstractSet
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from uuid import UUID

from ledger.months import VIETNAM, InvalidMonth, format_month, month_of, parse_month
from ledger.reference import banks, built_in_province_codes, categories

EARLIEST_DAY = date(1900, 1, 1)
EARLIEST_MONTH = "1900-01"
CLOCK_SKEW = timedelta(minutes=5)
MONTHS_AHEAD = 12

# Lengths of text, in characters after NFC: generous for what each holds, short enough that a
# file's line, an export and a screen stay readable and a pasted document is refused.
NAME_MAX = 200  # a person's or a registry office's name
DEBTOR_NAME_MAX = 140  # the holder of a province's paying account (ISO 20022's Max140Text)
REFERENCE_MAX = 64  # an identifier another system gave: a decision, registration, bank reference
REASON_MAX = 500  # a sentence or two for whoever reads the record later
ACTOR_MAX = 100  # who acted: a user name

# a Vietnamese bank account number: 6 to 19 digits (the banks' own lengths lie in between)
ACCOUNT_DIGITS = (6, 19)

SHOWN_MAX = 60  # characters of a refused value quoted in a message


class InvalidValue(ValueError):
    """A value that is not what it must be; the message says what and what was given."""


def shown(text: str) -> str:
    """A refused value as a message quotes it: its repr, cut to SHOWN_MAX characters, so that
    a 200,000-character field makes one line of a report, not a page."""
    if len(text) <= SHOWN_MAX:
        return repr(text)
    return f"{text[:SHOWN_MAX]!r}... ({len(text):,} characters)"


def is_ascii_digits(text: str, length: int | None = None) -> bool:
    """Only the digits 0-9 (at least one), and exactly `length` of them when given."""
    return (
        bool(text) and text.isascii() and text.isdigit() and (length is None or len(text) == length)
    )


# Ids and codes


def personal_id(text: str) -> str:
    """The national personal identification number: exactly 12 digits 0-9."""
    if not is_ascii_digits(text, 12):
        raise InvalidValue(f"must be 12 digits 0-9, got {shown(text)}")
    return text


def province_code(text: str, known: AbstractSet[str] | None = None) -> str:
    """A province code that was in force at some time: one of `known` (a store's, with the
    codes its reorganisations made), by default the reference data's (the 63 provinces before
    the 2025 reorganisation, the 34 after it among them). The list a person is paid on
    follows every reorganisation (rule 9)."""
    if text not in (built_in_province_codes() if known is None else known):
        raise InvalidValue(f"unknown province code {shown(text)}")
    return text


def province_code_form(text: str) -> str:
    """What a province code looks like: 2 digits 0-9 (which ones are known is the store's:
    province_code)."""
    if not is_ascii_digits(text, 2):
        raise InvalidValue(f"must be 2 digits 0-9, got {shown(text)}")
    return text


def commune_code(text: str) -> str:
    """A commune code: exactly 5 digits 0-9."""
    if not is_ascii_digits(text, 5):
        raise InvalidValue(f"must be 5 digits 0-9, got {shown(text)}")
    return text


def category(text: str) -> str:
    """A beneficiary category of the reference data (categories.csv)."""
    if text not in categories():
        raise InvalidValue(
            f"unknown category {shown(text)} (the categories are in "
            "ledger/reference_data/categories.csv)"
        )
    return text


def coefficient(text: str) -> str:
    """A coefficient such as 1.5: above 0, at most 3.0, two decimals at most."""
    try:
        if not text.isascii():  # Decimal() reads Arabic-Indic and other Unicode digits too
            raise InvalidOperation
        c = Decimal(text)
    except InvalidOperation:
        raise InvalidValue(f"must be a decimal such as 1.5, got {shown(text)}") from None
    if not c.is_finite() or c <= 0 or c > 3 or c.as_tuple().exponent < -2:  # type: ignore[operator]
        raise InvalidValue(
            f"must be above 0 and at most 3.0, with two decimals at most, got {shown(text)}"
        )
    return str(c)


def coefficient_for(category_code: str, coefficient_text: str) -> str:
    """A valid coefficient within the range its (valid) category allows (categories.csv)."""
    low, high = categories()[category_code]
    if not low <= Decimal(coefficient_text) <= high:
        allowed = str(low) if low == high else f"from {low} to {high}"
        raise InvalidValue(f"must be {allowed} for {category_code}, got {shown(coefficient_text)}")
    return coefficient_text


def bank_code(text: str) -> str:
    """A bank of the reference list (banks.csv)."""
    if text not in banks():
        raise InvalidValue(
            f"unknown bank code {shown(text)} (the banks are in ledger/reference_data/banks.csv)"
        )
    return text


_BANK_AMOUNT = re.compile(r"(\d{1,15})(?:[.,](0*))?", re.ASCII)


def bank_amount(text: str) -> str:
    """An amount as a bank's file writes it (`3500000`, `3500000.00`, `3500000,`): whole VND,
    given back as digits alone."""
    match = _BANK_AMOUNT.fullmatch(text)
    if match is None:
        raise InvalidValue(f"must be a whole amount of VND (digits 0-9), got {shown(text)}")
    return str(int(match[1]))


def account_number(text: str) -> str:
    """A bank account number: 6 to 19 digits 0-9, nothing else (no space, dash or letter)."""
    shortest, longest = ACCOUNT_DIGITS
    if not (is_ascii_digits(text) and shortest <= len(text) <= longest):
        raise InvalidValue(f"must be {shortest} to {longest} digits 0-9, got {shown(text)}")
    return text


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
        f"line), got {shown(text)}"
    )


def payment_list_of(text: str) -> tuple[str, str]:
    """The (period, province code) of the list a valid payment id is on."""
    return text[:7], text[8:10]


def payment_ids_of(period: str, province_code: str | None = None) -> tuple[str, str]:
    """The first and the last payment id rule 8 can give on a period's lists (on one
    province's list, given one). The ids of those lines sort between the two and every other
    id outside, in any collation (digits and dashes in fixed places): a range of the payment
    lines' own key finds them, with no index on period and province to keep up."""
    lowest, highest = (province_code, province_code) if province_code else ("00", "99")
    return f"{period}-{lowest}-000000000000", f"{period}-{highest}-999999999999F"


def event_id(text: str) -> str:
    """A registry's event id: a UUID, in its canonical lower-case form."""
    try:
        if text.isascii():
            return str(UUID(text))
    except ValueError:
        pass
    raise InvalidValue(f"must be a UUID, got {shown(text)}")


def whole_number(text: str) -> int:
    """A whole number written with the digits 0-9 (an optional minus sign before them)."""
    if not is_ascii_digits(text.removeprefix("-")):
        raise InvalidValue(f"must be a whole number written with the digits 0-9, got {shown(text)}")
    return int(text)


# Months, days and moments


def month(text: str, now: datetime | None = None) -> str:
    """A period YYYY-MM from 1900-01 on and, given `now`, at most MONTHS_AHEAD months after
    the current month in Vietnam."""
    try:
        if not text.isascii():
            raise InvalidMonth(text)
        index = parse_month(text)
    except InvalidMonth:
        raise InvalidValue(f"must be a month YYYY-MM, got {shown(text)}") from None
    if text < EARLIEST_MONTH:
        raise InvalidValue(f"{text} is before {EARLIEST_MONTH}")
    if now is not None:
        current = month_of(now.astimezone(VIETNAM).date())
        if index > current + MONTHS_AHEAD:
            raise InvalidValue(
                f"{text} is more than {MONTHS_AHEAD} months after the current month "
                f"({format_month(current)})"
            )
    return text


def iso_date(text: str, now: datetime | None = None) -> str:
    """A day YYYY-MM-DD from 1900-01-01 on and, given `now`, not in the future (in Vietnam)."""
    try:
        if len(text) == 10 and text.isascii():
            day = date.fromisoformat(text)
        else:
            raise ValueError
    except ValueError:
        raise InvalidValue(f"must be a date YYYY-MM-DD, got {shown(text)}") from None
    if day < EARLIEST_DAY:
        raise InvalidValue(f"{day} is before {EARLIEST_DAY}")
    if now is not None and day > now.astimezone(VIETNAM).date():
        raise InvalidValue(
            f"{day} is in the future (it is {now.astimezone(VIETNAM).date()} in Vietnam)"
        )
    return day.isoformat()


def _instant(text: str, now: datetime | None = None) -> datetime:
    moment = _moment(text)
    if now is not None and moment > now + CLOCK_SKEW:
        at = now.astimezone(VIETNAM).isoformat(timespec="minutes")
        raise InvalidValue(f"{text} is in the future (it is {at} in Vietnam)")
    return moment


@lru_cache(maxsize=1024)
def _moment(text: str) -> datetime:
    """An ISO 8601 time with offset, from 1900-01-01 in Vietnam on. Kept for the texts seen
    last: a row's time is read by its check and again by the checks across its fields, and
    a bank's results file gives many rows the same time."""
    try:
        if not text.isascii():
            raise ValueError
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidValue(f"must be an ISO 8601 time with offset, got {shown(text)}") from None
    if moment.tzinfo is None:
        raise InvalidValue(f"must carry a UTC offset, got {shown(text)}")
    try:
        in_vietnam = moment.astimezone(VIETNAM)
    except OverflowError:  # 9999-12-31T23:00-05:00 is in year 10000 anywhere else
        raise InvalidValue(f"{text} is in the future") from None
    if in_vietnam.date() < EARLIEST_DAY:
        raise InvalidValue(f"{text} is before {EARLIEST_DAY} in Vietnam")
    return moment


# The checks of times are pure and a file repeats its times (a bank's batch settles many
# payments at one time): kept for the texts seen last, as _moment is.
@lru_cache(maxsize=1024)
def timestamp(text: str, now: datetime | None = None) -> str:
    """An ISO 8601 time with its UTC offset, kept in the offset given; from 1900-01-01 on and,
    given `now`, not in the future."""
    return _instant(text, now).isoformat()


@lru_cache(maxsize=1024)
def vietnam_time(text: str, now: datetime | None = None) -> str:
    """An ISO 8601 time with a UTC offset, recorded in Vietnam's time (UTC+7): the same
    instant reads the same whether it came as text with any offset or as an Avro
    timestamp (UTC). From 1900-01-01 on and, given `now`, not in the future."""
    return _instant(text, now).astimezone(VIETNAM).isoformat()


@lru_cache(maxsize=1024)
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


def born_by(date_of_birth: str, effective_month: str) -> str:
    """A (valid) date of birth no later than the last day of the (valid) month the allowance
    starts: nobody is paid for a month before they were born."""
    if date_of_birth[:7] > effective_month:
        raise InvalidValue(
            f"{date_of_birth} is after effective_month {effective_month}: the allowance "
            "cannot start before the person is born"
        )
    return date_of_birth


def settled_in_period(settled_at: str, payment: str) -> str:
    """A (valid) settlement time not before the first day, in Vietnam, of the period of its
    (valid) payment id: a payment of July is not settled in June. Late entries of history are
    fine, so nothing ties it to the approval."""
    period, _ = payment_list_of(payment)
    day = vietnam_day(settled_at)
    if day < f"{period}-01":
        raise InvalidValue(
            f"{day} (in Vietnam) is before the period {period} of payment {payment} began"
        )
    return settled_at


# Text people wrote

# control (Cc), format (Cf: zero-width space, bidi overrides...), surrogates, line and
# paragraph separators: invisible or breaking a line, on a screen as in a bank's file
_NOT_IN_TEXT = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NFC_SHRINK = 4  # NFC composes at most 4 code points into 1: longer text is too long anyway


def _NONCHARACTER(c: str) -> bool:  # noqa: N802  (a character class, read as one)
    """Unicode's non-characters (U+FDD0 to U+FDEF, and the last two of every plane): never
    text, and no XML file may hold U+FFFE or U+FFFF."""
    n = ord(c)
    return 0xFDD0 <= n <= 0xFDEF or n & 0xFFFE == 0xFFFE


def free_text(text: str, max_len: int) -> str:
    """Text as recorded: trimmed, in NFC, at most `max_len` characters, without a control,
    format or line-break character. May be empty (the caller says whether it is required)."""
    if len(text) > _NFC_SHRINK * max_len:  # refused before normalising a pasted document
        raise InvalidValue(f"must be at most {max_len:,} characters, got {len(text):,}")
    value = unicodedata.normalize("NFC", text.strip())
    # printable: no character of those categories (nor one of Zs but the space, Co or Cn,
    # which are let through below), found at C speed for nearly every text
    for i, c in enumerate("" if value.isprintable() else value):
        if unicodedata.category(c) in _NOT_IN_TEXT:
            raise InvalidValue(
                f"must not contain control, format or line-break characters "
                f"(U+{ord(c):04X} at character {i + 1})"
            )
        if _NONCHARACTER(c):
            raise InvalidValue(
                f"must not contain a non-character (U+{ord(c):04X} at character {i + 1})"
            )
    if len(value) > max_len:
        raise InvalidValue(f"must be at most {max_len:,} characters, got {len(value):,}")
    return value


def person_name(text: str) -> str:
    """A person's name (full_name, claimant_name): free text of at most NAME_MAX characters."""
    return free_text(text, NAME_MAX)


def name_key(name: str) -> str:
    """A person's name as the population register's check compares it: in NFC, case folded
    and its spacing aside (`Nguyễn  văn AN` is `nguyễn văn an`); never a letter's accent."""
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())
    return " ".join(folded.split())


def office_name(text: str) -> str:
    """A registry office's name: free text of at most NAME_MAX characters."""
    return free_text(text, NAME_MAX)


def debtor_name(text: str) -> str:
    """The name a province pays from (its paying account's holder): free text of at most
    DEBTOR_NAME_MAX characters, what a credit transfer's name holds."""
    return free_text(text, DEBTOR_NAME_MAX)


def reference(text: str) -> str:
    """An identifier another system gave (decision_ref, registration_number, a settlement's
    reference): free text of at most REFERENCE_MAX characters."""
    return free_text(text, REFERENCE_MAX)


def reason(text: str) -> str:
    """A reason (a settlement's, a hold's, a termination's): free text of at most REASON_MAX
    characters; may be empty."""
    return free_text(text, REASON_MAX)


def required_reason(text: str) -> str:
    """A reason that must be given (`--reason` of hold and terminate)."""
    value = reason(text)
    if not value:
        raise InvalidValue("a reason is required")
    return value


# Who acts

# invisible characters outside the Cc/Cf/Zl/Zp categories: the combining grapheme joiner, the
# Hangul fillers, the Khmer inherent vowels, the variation selectors
_INVISIBLE = frozenset(
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x3164, 0xFFA0]
    + list(range(0xFE00, 0xFE10))
    + list(range(0xE0100, 0xE01F0))
)


def _invisible(c: str) -> bool:
    """A character that shows nothing, or that is not a space yet spaces: in a name that
    decides who may approve, it would make one person two (U+200B-U+200F, U+2060-U+2064,
    U+FEFF, U+00AD and the rest of Cc and Cf among them)."""
    kind = unicodedata.category(c)
    return (
        kind in _NOT_IN_TEXT
        or kind == "Cn"  # unassigned: nobody can see what it is
        or (kind == "Zs" and c != " ")
        or ord(c) in _INVISIBLE
    )


# an actor is a user name: letters and digits of one script, and these
_ACTOR_MARKS = frozenset(" .-_@'")


def _script(c: str) -> str:
    """The script of a letter, as the first word of its Unicode name (LATIN, CYRILLIC...)."""
    return unicodedata.name(c, "UNKNOWN").split(" ", 1)[0]


def _actor_problem(value: str) -> str | None:
    """Why a user name could pass for someone else's: a character that is neither a letter,
    a digit nor one of `_ACTOR_MARKS` (a braille blank U+2800 looks like nothing), or
    letters of two scripts (a Cyrillic `е` among Latin letters looks like `e`)."""
    for i, c in enumerate(value):
        kind = unicodedata.category(c)
        if not (kind[0] in "LN" or c in _ACTOR_MARKS):
            marks = " ".join(sorted(_ACTOR_MARKS - {" "}))
            return (
                f"must be letters, digits, spaces and {marks} only "
                f"(U+{ord(c):04X} at character {i + 1})"
            )
    scripts = {_script(c) for c in value if unicodedata.category(c)[0] == "L"}
    if len(scripts) > 1:
        return f"must be written in one script, not {' and '.join(sorted(scripts))} mixed"
    return None


def actor(text: str) -> str:
    """Who acts (`--by`, LEDGER_USER), as recorded: trimmed, in NFKC (fullwidth letters and
    ligatures as their plain letters), not empty, at most ACTOR_MAX characters, and with no
    invisible, control or format character, so that two spellings that look alike cannot
    pass for two people (a maker approving their own draft)."""
    value = unicodedata.normalize("NFKC", text).strip()
    if not value:
        raise InvalidValue("an actor is required (who is acting: --by or LEDGER_USER)")
    for i, c in enumerate(value):
        if _invisible(c):
            raise InvalidValue(
                f"must not contain invisible, control or format characters "
                f"(U+{ord(c):04X} at character {i + 1})"
            )
    if len(value) > ACTOR_MAX:
        raise InvalidValue(f"must be at most {ACTOR_MAX} characters, got {len(value):,}")
    problem = _actor_problem(value)
    if problem is not None:
        raise InvalidValue(problem)
    return value


def _actor_key(text: str) -> str:
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(c for c in folded if not _invisible(c)).strip()


def same_actor(a: str, b: str) -> bool:
    """Whether two actors are one person: compared trimmed, in NFKC and case-folded, and
    without invisible characters (an actor recorded before they were refused must not pass
    for someone else), so that `Nguyen`, `nguyen `, `NGUYEN` and a fullwidth `Ｎguyen` are
    one."""
    return _actor_key(a) == _actor_key(b)
