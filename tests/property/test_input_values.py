"""Properties of the values every way in shares (ledger.values, issue 10 point 3, issue 11
points 1, 4 and 7):

- an id, code or month written with any digit that is not one of the ASCII 0-9 (Arabic-Indic,
  Devanagari, fullwidth, ...: `str.isdigit()` is true for each) is refused by every path: the
  value check, a CSV file, a Kafka message, an Avro container file and the command line;
- a death registration gives the same row, or the same problems, whether it comes as a CSV
  row (its time with any UTC offset) or as an Avro record (the same instant, in UTC);
- a day after today, or a moment more than five minutes ahead, is refused, and no other; a
  name with a control or format character is refused; a name is recorded in NFC; a
  coefficient outside its category's range is refused; an account number is 6 to 19 ASCII
  digits; an actor is the same actor whatever the case, the width or the spaces around;
- a file's report does not depend on how many rows are checked together.
"""

from __future__ import annotations

import re
import string
import tempfile
import unicodedata
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest.mock import patch

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import avro
from adapters.civil_registry import SUBJECT, read_container, row_fields
from ledger import inputs, values
from ledger.cli import build_parser, check_arguments
from ledger.inputs import (
    DEATH_COLUMNS,
    ENROLMENT_COLUMNS,
    DeathRow,
    EnrolmentRow,
    InputRejected,
    SettlementRow,
    read_rows,
    validate_each,
    validate_one,
)
from ledger.months import VIETNAM
from ledger.reference import built_in_province_codes, categories
from ledger.service_layer.ports import FixedDay
from tests.conftest import NO_CLAIMANT, avro_death_record, death, enrolment, settlement, write_csv

NOT_ASCII_DIGITS = st.characters(categories=["Nd"]).filter(lambda c: not c.isascii())


@st.composite
def foreign_digits(draw: Any, length: int, template: str | None = None) -> str:
    """`length` digits (or the digits of `template`, its other characters kept), at least one
    of them a Unicode digit other than 0-9."""
    text = list(template or draw(st.text("0123456789", min_size=length, max_size=length)))
    places = [i for i, c in enumerate(text) if c.isdigit()]
    for i in draw(st.sets(st.sampled_from(places), min_size=1)):
        text[i] = draw(NOT_ASCII_DIGITS)
    word = "".join(text)
    assert not word.isascii()
    return word


def refused_by(check: Any, text: str) -> None:
    with pytest.raises(values.InvalidValue):
        check(text)


def fields_refused(model: Any, record: dict[str, Any], now: datetime | None = None) -> list[str]:
    problems = validate_one(model, record, now)
    assert isinstance(problems, list), record
    return [field for field, _ in problems]


@settings(max_examples=150, deadline=None)
@given(
    pid=foreign_digits(12),
    commune=foreign_digits(5),
    province=foreign_digits(2, "01"),
    month=foreign_digits(7, "2025-07"),
)
def test_digits_other_than_ascii_are_refused_by_every_path(
    pid: str, commune: str, province: str, month: str
) -> None:
    assert pid.isdigit() and commune.isdigit()  # what the checks before let through
    # the values themselves
    refused_by(values.personal_id, pid)
    refused_by(values.commune_code, commune)
    refused_by(values.province_code, province)
    refused_by(values.month, month)
    refused_by(values.payment_id, f"2025-07-01-{pid}")
    refused_by(values.payment_id, f"{month}-01-001234567890")
    # the rows of the files
    ok = "001234567890"
    assert fields_refused(EnrolmentRow, enrolment(pid)) == ["personal_id"]
    assert fields_refused(EnrolmentRow, enrolment(ok, commune_code=commune)) == ["commune_code"]
    assert fields_refused(EnrolmentRow, enrolment(ok, province_code=province)) == ["province_code"]
    assert fields_refused(EnrolmentRow, enrolment(ok, effective_month=month)) == ["effective_month"]
    assert fields_refused(DeathRow, death(pid)) == ["personal_id"]
    assert fields_refused(DeathRow, death(ok, claimant_personal_id=pid)) == ["claimant_personal_id"]
    assert fields_refused(SettlementRow, settlement(f"2025-07-01-{pid}")) == ["payment_id"]
    # a CSV file, a Kafka message and an Avro container file
    row = death(pid)
    with tempfile.TemporaryDirectory() as folder:
        csv_path = write_csv(Path(folder) / "deaths.csv", DEATH_COLUMNS, [row])
        with pytest.raises(InputRejected, match=r"deaths\.csv: row 2: personal_id: "):
            read_rows(csv_path, DeathRow)
        record = avro_death_record(row)
        message = avro.decode(SUBJECT, avro.encode(SUBJECT, record))
        assert fields_refused(DeathRow, row_fields(message)) == ["personal_id"]
        container = Path(folder) / "deaths.avro"
        with container.open("wb") as f:
            fastavro.writer(f, avro.latest(SUBJECT).schema, [record])
        with pytest.raises(InputRejected, match=r"deaths\.avro: record 1: personal_id: "):
            read_container(container)
    # the command line
    parser = build_parser()
    for argv, option in (
        (["hold", pid, "--reason", "x"], "personal id"),
        (["explain", pid], "personal id"),
        (["payroll", "run", "--period", month], "--period"),
        (["receivables", "--period", month], "--period"),
        (["terminate", ok, "--from", month, "--reason", "x"], "--from"),
    ):
        with pytest.raises(InputRejected) as refusal:
            check_arguments(parser.parse_args(argv))
        assert [p.split(": ")[0] for p in refusal.value.problems] == [option]
    # `move` checks its values itself, against the store's codes, with these (test_rule9)
    with pytest.raises(values.InvalidValue):
        values.commune_code(commune)
    with pytest.raises(values.InvalidValue):
        values.province_code(province, known=built_in_province_codes())


@st.composite
def registrations(draw: Any) -> dict[str, Any]:
    """A registration whose time is any instant (to the millisecond, as Avro keeps it) written
    with any UTC offset of the world, and whose date of death lies a few days around the day
    it was registered in Vietnam."""
    instant = draw(
        st.datetimes(datetime(2024, 1, 1), datetime(2026, 12, 31), timezones=st.just(UTC))
    )
    instant = instant.replace(microsecond=instant.microsecond // 1000 * 1000)
    offset = timedelta(minutes=15 * draw(st.integers(-12 * 4, 14 * 4)))
    text = instant.astimezone(timezone(offset)).isoformat()
    if offset == timedelta(0) and draw(st.booleans()):
        text = text.replace("+00:00", "Z")
    day = instant.astimezone(VIETNAM).date() + timedelta(days=draw(st.integers(-3, 2)))
    kind = draw(st.sampled_from(["REGISTERED", "CORRECTED", "REVOKED"]))
    extra: dict[str, Any] = {"event_type": kind, "date_of_death": day.isoformat()}
    if kind == "REVOKED":
        extra |= NO_CLAIMANT | {"date_of_death": draw(st.sampled_from(["", day.isoformat()]))}
    elif draw(st.booleans()):
        extra |= NO_CLAIMANT
    return death(
        "001000000001",
        event_id=str(uuid.UUID(int=draw(st.integers(0, 2**122)), version=4)),
        registered_at=text,
        **extra,
    )


def _problems_without_where(problems: list[str]) -> list[str]:
    """'FIELD: message' of each 'FILE: row N: FIELD: message'."""
    return [p.split(": ", 2)[2] for p in problems]


@settings(max_examples=300, deadline=None)
@given(row=registrations())
def test_csv_and_avro_of_one_registration_give_the_same_row(row: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        csv_path = write_csv(Path(folder) / "deaths.csv", DEATH_COLUMNS, [row])
        container = Path(folder) / "deaths.avro"
        with container.open("wb") as f:
            fastavro.writer(f, avro.latest(SUBJECT).schema, [avro_death_record(row)])
        from_csv: list[str] = []
        from_avro: list[str] = []
        csv_rows = read_rows(csv_path, DeathRow, from_csv)
        avro_rows = read_container(container, from_avro)
    assert _problems_without_where(from_csv) == _problems_without_where(from_avro)
    registered_day = values.vietnam_day(row["registered_at"])
    died_in_time = not row["date_of_death"] or row["date_of_death"] <= registered_day
    assert (len(csv_rows), len(avro_rows)) == ((1, 1) if died_in_time else (0, 0))
    if not died_in_time:
        assert [p.split(": ")[0] for p in _problems_without_where(from_csv)] == ["date_of_death"]
        return
    (_, got_csv), (_, got_avro) = csv_rows[0], avro_rows[0]
    if row["event_type"] == "REVOKED" and not row["date_of_death"]:
        # the record carries the day in Vietnam where the CSV row may leave the date empty
        assert got_avro.date_of_death == registered_day
        got_avro = got_avro.model_copy(update={"date_of_death": ""})
    assert got_csv == got_avro
    # the time is recorded in Vietnam's, the same instant as given
    assert got_csv.registered_at.endswith("+07:00")
    assert datetime.fromisoformat(got_csv.registered_at) == datetime.fromisoformat(
        row["registered_at"]
    )


# Issue 11 point 1: what each value means, whatever is drawn

TODAY = date(2025, 7, 31)
NOW = FixedDay(lambda: TODAY).now()  # the last moment of that day, in Vietnam
LETTERS = st.characters(categories=["L", "N"])  # nothing a trim would take away
VIETNAMESE = (
    "aăâbcdđeêghiklmnoôơpqrstuưvxyàáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵ"
)


def enrolment_problems(record: dict[str, Any]) -> list[str]:
    problems = validate_one(EnrolmentRow, record, NOW)
    return [field for field, _ in problems] if isinstance(problems, list) else []


@settings(max_examples=200, deadline=None)
@given(day=st.dates(min_value=date(1900, 1, 1)))
def test_a_day_after_today_is_refused_and_no_other(day: date) -> None:
    text = day.isoformat()
    if day > TODAY:
        refused_by(lambda t: values.iso_date(t, NOW), text)
        assert enrolment_problems(enrolment("001234567890", date_of_birth=text)) == [
            "date_of_birth"
        ]
        row = death("001234567890", date_of_death=text, **NO_CLAIMANT)
        assert "date_of_death" in fields_refused(DeathRow, row, NOW)
    else:
        assert values.iso_date(text, NOW) == text


@settings(max_examples=100, deadline=None)
@given(day=st.dates(max_value=date(1899, 12, 31)))
def test_a_day_before_1900_is_refused(day: date) -> None:
    refused_by(values.iso_date, day.isoformat())


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(datetime(1900, 1, 2), datetime(9999, 12, 30)),
    minutes=st.integers(-14 * 60, 14 * 60),
)
def test_a_moment_more_than_five_minutes_ahead_is_refused_and_no_other(
    moment: datetime, minutes: int
) -> None:
    text = moment.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat()
    instant = datetime.fromisoformat(text)
    if instant > NOW + values.CLOCK_SKEW:
        refused_by(lambda t: values.timestamp(t, NOW), text)
        refused_by(lambda t: values.vietnam_time(t, NOW), text)
        row = settlement("2025-07-01-001234567890", settled_at=text)
        assert fields_refused(SettlementRow, row, NOW) == ["settled_at"]
    else:
        assert datetime.fromisoformat(values.vietnam_time(text, NOW)) == instant


@settings(max_examples=200, deadline=None)
@given(
    left=st.text(LETTERS, min_size=1, max_size=40),
    bad=st.characters(categories=["Cc", "Cf"]),
    right=st.text(LETTERS, min_size=1, max_size=40),
)
def test_a_name_with_a_control_or_format_character_is_refused(
    left: str, bad: str, right: str
) -> None:
    name = left + bad + right
    refused_by(values.person_name, name)
    refused_by(values.actor, name)
    assert enrolment_problems(enrolment("001234567890", full_name=name)) == ["full_name"]
    assert fields_refused(DeathRow, death("001234567890", claimant_name=name)) == ["claimant_name"]


@settings(max_examples=200, deadline=None)
@given(name=st.text(st.characters(categories=["L", "M", "N", "P", "Zs"]), max_size=60))
def test_a_name_is_recorded_in_nfc_and_normalising_again_changes_nothing(name: str) -> None:
    recorded = values.person_name(name)
    assert unicodedata.is_normalized("NFC", recorded)
    assert values.person_name(recorded) == recorded
    assert values.person_name(unicodedata.normalize("NFD", name)) == recorded


@settings(max_examples=200, deadline=None)
@given(category=st.sampled_from(sorted(categories())), hundredths=st.integers(1, 300))
def test_a_coefficient_outside_its_categorys_range_is_refused(
    category: str, hundredths: int
) -> None:
    coefficient = f"{hundredths // 100}.{hundredths % 100:02d}"
    low, high = categories()[category]
    found = enrolment_problems(
        enrolment("001234567890", category=category, coefficient=coefficient)
    )
    assert found == ([] if low <= Decimal(coefficient) <= high else ["coefficient"])


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=25), st.text("0123456789 -", max_size=25)))
def test_an_account_number_is_six_to_nineteen_ascii_digits_and_nothing_else(text: str) -> None:
    if re.fullmatch(r"[0-9]{6,19}", text):
        assert values.account_number(text) == text
    else:
        refused_by(values.account_number, text)


@settings(max_examples=100, deadline=None)
@given(digits=foreign_digits(10))
def test_an_account_number_in_other_digits_is_refused(digits: str) -> None:
    refused_by(values.account_number, digits)
    row = enrolment("001234567890", channel="BANK", bank_code="VCB", account_number=digits)
    assert enrolment_problems(row) == ["account_number"]


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_an_actor_is_the_same_actor_as_itself(text: str) -> None:
    assert values.same_actor(text, text)


@settings(max_examples=300, deadline=None)
@given(
    name=st.text(string.ascii_letters + string.digits + VIETNAMESE + "._- ", max_size=40),
    spaces=st.tuples(st.integers(0, 3), st.integers(0, 3)),
)
def test_the_same_actor_whatever_the_case_the_width_or_the_spaces_around(
    name: str, spaces: tuple[int, int]
) -> None:
    for other in (
        name.upper(),
        name.lower(),
        fullwidth(name),
        " " * spaces[0] + name + " " * spaces[1],
        unicodedata.normalize("NFD", name),
    ):
        assert values.same_actor(name, other), (name, other)
        assert values.same_actor(other, name)
    if name.strip():
        assert values.same_actor(values.actor(fullwidth(name)), name)
    assert not values.same_actor(name, name + "x")


@settings(max_examples=50, deadline=None)
@given(
    bad=st.lists(st.sampled_from(["", "sex", "commune_code", "coefficient"]), max_size=12),
    chunk=st.integers(1, 5),
)
def test_the_report_is_the_same_whatever_the_chunk_size(bad: list[str], chunk: int) -> None:
    rows = []
    for i, field in enumerate(bad):
        row = enrolment(f"0010000000{i:02d}")
        if field:
            row[field] = "X"
        rows.append(row)
    reports = []
    with tempfile.TemporaryDirectory() as folder:
        path = write_csv(Path(folder) / "e.csv", ENROLMENT_COLUMNS, rows)
        for size in (chunk, 10_000):
            with patch.object(inputs, "CHUNK_ROWS", size):
                problems: list[str] = []
                valid = read_rows(path, EnrolmentRow, problems, now=NOW)
            reports.append((problems, [n for n, _ in valid]))
    assert reports[0] == reports[1]
    assert reports[0][1] == [i + 2 for i, field in enumerate(bad) if not field]


@st.composite
def registrations_some_spoiled(draw: Any) -> dict[str, Any]:
    """A registration, one of its fields sometimes given any text instead."""
    row = draw(registrations())
    if draw(st.booleans()):
        row[draw(st.sampled_from(sorted(row)))] = draw(st.text(max_size=12))
    return row


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(registrations_some_spoiled(), max_size=6))
def test_messages_checked_together_get_what_each_gets_alone(rows: list[dict[str, Any]]) -> None:
    """A poll's messages are checked in one go: each gets the row, or the problems, that it
    gets checked on its own, whatever the others hold."""
    now = datetime(2027, 1, 1, tzinfo=UTC)
    assert validate_each(DeathRow, rows, now) == [validate_one(DeathRow, r, now) for r in rows]
