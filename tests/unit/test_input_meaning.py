"""Issue 11 point 1: every input field is checked against what it means, by the one set of
value types (ledger.values) that CSV rows, Avro records and command-line arguments share:
dates neither in the future nor before 1900, months within a year ahead, categories and their
coefficients, banks and account numbers from the reference data, names and free text without
invisible characters and of bounded length, recorded in NFC; a funeral claimant who is not the
dead person, a PAID settlement with its reference. Issue 11 point 4: who acts (`actor`,
`same_actor`). Issue 11 point 7: a file checked as a stream, its report capped and counted, a
file that is not a regular file refused without reading it."""

from __future__ import annotations

import os
import signal
import unicodedata
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fastavro
import pytest

from adapters import avro
from adapters.civil_registry import SUBJECT, read_container, registrations_in
from adapters.death_consumer import Rejection, registration_of
from ledger import inputs, values
from ledger.application import Ledger
from ledger.inputs import (
    DEATH_COLUMNS,
    ENROLMENT_COLUMNS,
    DeathRow,
    EnrolmentRow,
    InputFile,
    InputRejected,
    Problems,
    SettlementRow,
    read_rows,
    validate_one,
)
from ledger.months import VIETNAM
from ledger.reference import banks, categories
from ledger.service_layer.ports import FixedDay
from tests.conftest import (
    NO_CLAIMANT,
    Files,
    avro_death_record,
    death,
    enrolment,
    settlement,
    write_csv,
)

TODAY = date(2025, 7, 31)
NOW = FixedDay(lambda: TODAY).now()  # the last moment of 31 July 2025, in Vietnam
P1, P2 = "001000000001", "001000000002"


def refused(check: Any, *args: Any) -> str:
    with pytest.raises(values.InvalidValue) as problem:
        check(*args)
    return str(problem.value)


def problems_of(model: Any, record: dict[str, Any], now: datetime | None = NOW) -> list[str]:
    """'FIELD: message' of every problem of one record, checked as of NOW."""
    result = validate_one(model, record, now)
    assert isinstance(result, list), f"accepted: {record}"
    return [f"{field}: {message}" for field, message in result]


def accepted(model: Any, record: dict[str, Any], now: datetime | None = NOW) -> Any:
    result = validate_one(model, record, now)
    assert not isinstance(result, list), result
    return result


# Days, moments and months


def test_a_day_is_from_1900_and_not_in_the_future() -> None:
    assert values.iso_date("2025-07-31", NOW) == "2025-07-31"
    assert values.iso_date("1900-01-01", NOW) == "1900-01-01"
    assert refused(values.iso_date, "2025-08-02", NOW) == (
        "2025-08-02 is in the future (it is 2025-07-31 in Vietnam)"
    )
    assert refused(values.iso_date, "2099-01-01", NOW).startswith("2099-01-01 is in the future")
    assert refused(values.iso_date, "1899-12-31", NOW) == "1899-12-31 is before 1900-01-01"
    assert refused(values.iso_date, "0001-01-01") == "0001-01-01 is before 1900-01-01"
    assert values.iso_date("2099-01-01") == "2099-01-01"  # no clock given: no future check


def test_a_moment_may_be_five_minutes_ahead_of_the_clock_and_no_more() -> None:
    now = datetime(2025, 7, 20, 9, 0, tzinfo=VIETNAM)
    assert values.timestamp("2025-07-20T09:04:59+07:00", now) == "2025-07-20T09:04:59+07:00"
    assert values.vietnam_time("2025-07-20T02:05:00Z", now) == "2025-07-20T09:05:00+07:00"
    assert refused(values.timestamp, "2025-07-20T09:05:01+07:00", now) == (
        "2025-07-20T09:05:01+07:00 is in the future (it is 2025-07-20T09:00+07:00 in Vietnam)"
    )
    assert refused(values.vietnam_time, "2025-07-20T02:06:00Z", now).endswith(
        "is in the future (it is 2025-07-20T09:00+07:00 in Vietnam)"
    )
    # the last moment of a fixed day: anything that day is not in the future
    assert values.timestamp("2025-07-31T23:59:00+07:00", NOW)
    assert refused(values.timestamp, "1899-12-31T23:00:00+07:00") == (
        "1899-12-31T23:00:00+07:00 is before 1900-01-01 in Vietnam"
    )
    # 9999-12-31 23:00 at UTC-5 is in the year 10000 in Vietnam: refused, no OverflowError
    assert "in the future" in refused(values.vietnam_time, "9999-12-31T23:00:00-05:00", NOW)


def test_a_month_is_from_1900_and_at_most_twelve_months_ahead() -> None:
    assert values.month("1900-01", NOW) == "1900-01"
    assert values.month("2026-07", NOW) == "2026-07"  # July 2025 + 12
    assert refused(values.month, "2026-08", NOW) == (
        "2026-08 is more than 12 months after the current month (2025-07)"
    )
    assert refused(values.month, "1899-12", NOW) == "1899-12 is before 1900-01"
    assert values.month("2205-07") == "2205-07"  # no clock given: only the floor


def test_an_enrolment_refuses_dates_in_the_future_and_a_birth_after_the_first_month() -> None:
    assert problems_of(EnrolmentRow, enrolment(P1, date_of_birth="2025-08-05")) == [
        "date_of_birth: 2025-08-05 is in the future (it is 2025-07-31 in Vietnam)"
    ]
    assert problems_of(EnrolmentRow, enrolment(P1, date_of_birth="1899-01-01")) == [
        "date_of_birth: 1899-01-01 is before 1900-01-01"
    ]
    assert problems_of(EnrolmentRow, enrolment(P1, effective_month="2027-01")) == [
        "effective_month: 2027-01 is more than 12 months after the current month (2025-07)"
    ]
    born_later = enrolment(P1, date_of_birth="2025-05-02", effective_month="2025-04")
    assert problems_of(EnrolmentRow, born_later) == [
        "date_of_birth: 2025-05-02 is after effective_month 2025-04: the allowance cannot "
        "start before the person is born"
    ]
    # born during the first paid month, or a back-dated enrolment of a newborn: fine
    accepted(EnrolmentRow, enrolment(P1, date_of_birth="2025-04-30", effective_month="2025-04"))
    accepted(EnrolmentRow, enrolment(P1, date_of_birth="2025-07-31", effective_month="2025-07"))


def test_a_death_dated_2099_registered_in_2099_is_refused() -> None:
    row = death(P1, date_of_death="2099-07-01", registered_at="2099-07-02T09:00:00+07:00")
    assert problems_of(DeathRow, row) == [
        "date_of_death: 2099-07-01 is in the future (it is 2025-07-31 in Vietnam)",
        "registered_at: 2099-07-02T09:00:00+07:00 is in the future (it is "
        "2025-07-31T23:59+07:00 in Vietnam)",
    ]
    old = death(P1, date_of_death="1899-07-01", registered_at="2025-07-02T09:00:00+07:00")
    assert problems_of(DeathRow, old) == ["date_of_death: 1899-07-01 is before 1900-01-01"]


def test_a_settlement_is_not_in_the_future_nor_before_its_period() -> None:
    pid = f"2025-07-01-{P1}"
    assert problems_of(SettlementRow, settlement(pid, settled_at="2025-08-02T10:00:00+07:00")) == [
        "settled_at: 2025-08-02T10:00:00+07:00 is in the future (it is 2025-07-31T23:59+07:00 "
        "in Vietnam)"
    ]
    assert problems_of(SettlementRow, settlement(pid, settled_at="2025-06-30T10:00:00+07:00")) == [
        f"settled_at: 2025-06-30 (in Vietnam) is before the period 2025-07 of payment {pid} began"
    ]
    # 20:00 UTC on 30 June is 03:00 on 1 July in Vietnam: within the period
    accepted(SettlementRow, settlement(pid, settled_at="2025-06-30T20:00:00Z"))
    # history entered late: a settlement of July entered a year later is fine
    later = FixedDay(lambda: date(2026, 7, 31)).now()
    accepted(SettlementRow, settlement(pid, settled_at="2026-07-01T10:00:00+07:00"), later)


def test_the_future_is_told_by_the_ledgers_clock(tmp_path: Path, files: Files) -> None:
    """The handlers read "now" from the ledger's clock (a fixed day here), not the machine's."""
    born = files.enrolments([enrolment(P1, date_of_birth="2025-08-01", effective_month="2025-08")])
    with (
        Ledger(f"sqlite:///{tmp_path / 'a.sqlite'}", today=lambda: TODAY) as ledger,
        pytest.raises(InputRejected) as refusal,
    ):
        ledger.enrol(born, "maker")
    assert refusal.value.problems == [
        f"{born.name}: row 2: date_of_birth: 2025-08-01 is in the future (it is 2025-07-31 in "
        "Vietnam)"
    ]
    with Ledger(f"sqlite:///{tmp_path / 'b.sqlite'}", today=lambda: date(2025, 8, 1)) as ledger:
        assert ledger.enrol(born, "maker") == 1
        with pytest.raises(InputRejected) as refusal:
            ledger.terminate(P1, "2026-09", "moved abroad", "maker")
        assert refusal.value.problems == [
            "--from: 2026-09 is more than 12 months after the current month (2025-08)"
        ]


def test_a_deaths_import_tells_the_future_by_the_ledgers_clock(
    tmp_path: Path, files: Files
) -> None:
    registered = death(P1, date_of_death="2025-08-01", registered_at="2025-08-01T09:00:00+07:00")
    path = files.deaths([registered])
    with Ledger(f"sqlite:///{tmp_path / 'b.sqlite'}", today=lambda: date(2025, 8, 1)) as ledger:
        assert ledger.import_deaths(path, "registry").applied == 1
    with (
        Ledger(f"sqlite:///{tmp_path / 'a.sqlite'}", today=lambda: TODAY) as ledger,
        pytest.raises(InputRejected) as refusal,
    ):
        ledger.import_deaths(path, "registry")
    assert [p.split(": ")[2] for p in refusal.value.problems] == [
        "date_of_death",
        "registered_at",
    ]


# Categories and coefficients


def test_the_categories_and_their_coefficients_are_reference_data() -> None:
    found = {c: (str(low), str(high)) for c, (low, high) in categories().items()}
    assert found == {
        "elderly_80_plus_no_pension": ("1.0", "1.0"),
        "child_of_single_poor_parent": ("1.0", "1.0"),
        "severely_disabled_adult": ("1.5", "1.5"),
        "orphan_4_to_16": ("1.5", "1.5"),
        "poor_person_with_hiv": ("1.5", "1.5"),
        "especially_severely_disabled_adult": ("2.0", "2.0"),
        "severely_disabled_child_or_elderly": ("2.0", "2.0"),
        "orphan_under_4": ("2.5", "2.5"),
        "especially_severely_disabled_child_or_elderly": ("2.5", "2.5"),
        "combined_categories": ("1.0", "3.0"),
    }


def test_an_unknown_category_is_refused() -> None:
    assert problems_of(EnrolmentRow, enrolment(P1, category="elderly_80_plus")) == [
        "category: unknown category 'elderly_80_plus' (the categories are in "
        "ledger/reference_data/categories.csv)"
    ]
    assert problems_of(EnrolmentRow, enrolment(P1, category="")) == ["category: is required"]


def test_a_coefficient_outside_its_categorys_range_is_refused() -> None:
    wrong = enrolment(P1, category="severely_disabled_adult", coefficient="2.0")
    assert problems_of(EnrolmentRow, wrong) == [
        "coefficient: must be 1.5 for severely_disabled_adult, got '2.0'"
    ]
    low = enrolment(P1, category="combined_categories", coefficient="0.5")
    assert problems_of(EnrolmentRow, low) == [
        "coefficient: must be from 1.0 to 3.0 for combined_categories, got '0.5'"
    ]
    for coefficient in ("1.0", "1.25", "3.0", "3"):
        accepted(
            EnrolmentRow, enrolment(P1, category="combined_categories", coefficient=coefficient)
        )
    assert accepted(EnrolmentRow, enrolment(P1, category="orphan_under_4", coefficient="2.50"))


# Banks and account numbers


def test_the_banks_are_reference_data_with_their_napas_bins() -> None:
    found = banks()
    for code in ("VCB", "BIDV", "AGRIBANK", "VIETINBANK", "TECHCOMBANK", "MBBANK", "VPBANK"):
        assert code in found
    assert {"SACOMBANK", "ACB", "TPBANK", "HDBANK", "SHB", "VIB", "MSB"} <= set(found)
    assert found["VCB"][1] == "970436" and found["BIDV"][1] == "970418"
    bins = [bin_ for _, bin_ in found.values()]
    assert all(values.is_ascii_digits(b, 6) for b in bins) and len(set(bins)) == len(bins)
    sources = Path(values.__file__).parent / "reference_data" / "SOURCES.md"
    text = sources.read_text(encoding="utf-8")
    banks_entry = text.split("**`banks.csv`**", 1)[1].split("\n- **", 1)[0]
    assert "State Bank of Vietnam" in banks_entry and "VietQR" in banks_entry


def test_a_bank_code_must_be_one_of_the_list() -> None:
    row = enrolment(P1, channel="BANK", bank_code="XYZBANK", account_number="0011001234")
    assert problems_of(EnrolmentRow, row) == [
        "bank_code: unknown bank code 'XYZBANK' (the banks are in ledger/reference_data/banks.csv)"
    ]
    assert problems_of(EnrolmentRow, enrolment(P1, bank_code="vcb")) == [
        "bank_code: unknown bank code 'vcb' (the banks are in ledger/reference_data/banks.csv)"
    ]


def test_an_account_number_is_six_to_nineteen_digits() -> None:
    assert values.account_number("123456") == "123456"
    assert values.account_number("1" * 19) == "1" * 19
    for bad in ("12345", "1" * 20, "0011-001234", "0011 001234", "AB123456", "١٢٣٤٥٦٧", ""):
        assert refused(values.account_number, bad) == f"must be 6 to 19 digits 0-9, got {bad!r}"
    row = enrolment(P1, channel="BANK", bank_code="VCB", account_number="12345")
    assert problems_of(EnrolmentRow, row) == [
        "account_number: must be 6 to 19 digits 0-9, got '12345'"
    ]
    # a bad detail does not hide the other one missing
    row = enrolment(P1, channel="BANK", bank_code="XYZ", account_number="")
    assert problems_of(EnrolmentRow, row) == [
        "account_number: is required when the channel is BANK",
        "bank_code: unknown bank code 'XYZ' (the banks are in ledger/reference_data/banks.csv)",
    ]


def test_a_claimants_bank_details_are_checked_in_csv_and_in_avro(tmp_path: Path) -> None:
    row = death(
        P1,
        claimant_channel="BANK",
        claimant_bank_code="NOBANK",
        claimant_account_number="12-34",
    )
    expected = [
        "claimant_account_number: must be 6 to 19 digits 0-9, got '12-34'",
        "claimant_bank_code: unknown bank code 'NOBANK' (the banks are in "
        "ledger/reference_data/banks.csv)",
    ]
    assert problems_of(DeathRow, row) == expected
    path = tmp_path / "deaths.avro"
    with path.open("wb") as f:
        fastavro.writer(f, avro.latest(SUBJECT).schema, [avro_death_record(row)])
    with pytest.raises(InputRejected) as refusal:
        read_container(path, now=NOW)
    assert refusal.value.problems == [f"deaths.avro: record 1: {p}" for p in expected]
    good = death(P1, claimant_channel="BANK", claimant_bank_code="BIDV")
    good["claimant_account_number"] = "2211000007"
    assert accepted(DeathRow, good).claimant["bank_code"] == "BIDV"


# Names and free text


def test_a_name_is_recorded_in_nfc() -> None:
    composed = "Nguyễn Thị Ánh"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    assert values.person_name(decomposed) == composed
    row = accepted(EnrolmentRow, enrolment(P1, full_name=decomposed))
    assert row.full_name == composed
    claimant = accepted(DeathRow, death(P1, claimant_name=decomposed))
    assert claimant.claimant_name == composed


@pytest.mark.parametrize(
    ("char", "code"),
    [
        ("\n", "U+000A"),
        ("\t", "U+0009"),
        ("\x00", "U+0000"),
        ("\x1b", "U+001B"),
        ("\u200b", "U+200B"),  # zero-width space
        ("\u202e", "U+202E"),  # right-to-left override
        ("\u2066", "U+2066"),  # left-to-right isolate
        ("\u2028", "U+2028"),  # line separator
        ("\ufeff", "U+FEFF"),
    ],
)
def test_a_name_with_an_invisible_or_line_breaking_character_is_refused(
    char: str, code: str
) -> None:
    message = f"must not contain control, format or line-break characters ({code} at character 4)"
    assert refused(values.person_name, f"Anh{char}Ba") == message
    assert problems_of(EnrolmentRow, enrolment(P1, full_name=f"Anh{char}Ba")) == [
        f"full_name: {message}"
    ]
    assert problems_of(DeathRow, death(P1, claimant_name=f"Anh{char}Ba")) == [
        f"claimant_name: {message}"
    ]


def test_every_free_text_field_is_checked() -> None:
    bidi = "QĐ\u202e-123"
    message = "must not contain control, format or line-break characters (U+202E at character 3)"
    assert problems_of(EnrolmentRow, enrolment(P1, decision_ref=bidi)) == [
        f"decision_ref: {message}"
    ]
    assert problems_of(DeathRow, death(P1, registration_number=bidi)) == [
        f"registration_number: {message}"
    ]
    assert problems_of(DeathRow, death(P1, registry_office=bidi)) == [f"registry_office: {message}"]
    assert problems_of(DeathRow, death(P1, full_name=bidi)) == [f"full_name: {message}"]
    pid = f"2025-07-01-{P1}"
    assert problems_of(SettlementRow, settlement(pid, reference=bidi)) == [f"reference: {message}"]
    assert problems_of(SettlementRow, settlement(pid, "FAILED", reason=bidi)) == [
        f"reason: {message}"
    ]


def test_free_text_is_bounded() -> None:
    assert (values.NAME_MAX, values.REFERENCE_MAX, values.REASON_MAX) == (200, 64, 500)
    assert values.person_name("a" * 200) == "a" * 200
    assert refused(values.person_name, "a" * 201) == "must be at most 200 characters, got 201"
    assert refused(values.reference, "R" * 65) == "must be at most 64 characters, got 65"
    assert refused(values.reason, "x" * 501) == "must be at most 500 characters, got 501"
    # measured in NFC: 200 decomposed letters with their accents are 200 characters
    assert values.person_name(unicodedata.normalize("NFD", "ễ" * 200)) == "ễ" * 200
    pid = f"2025-07-01-{P1}"
    assert problems_of(EnrolmentRow, enrolment(P1, decision_ref="Q" * 65)) == [
        "decision_ref: must be at most 64 characters, got 65"
    ]
    assert problems_of(DeathRow, death(P1, registry_office="U" * 201)) == [
        "registry_office: must be at most 200 characters, got 201"
    ]
    assert problems_of(SettlementRow, settlement(pid, "RETURNED", reason="x" * 501)) == [
        "reason: must be at most 500 characters, got 501"
    ]


def test_a_huge_field_is_refused_in_one_short_line() -> None:
    name = "N" * 200_000
    assert problems_of(EnrolmentRow, enrolment(P1, full_name=name)) == [
        "full_name: must be at most 200 characters, got 200,000"
    ]
    (line,) = problems_of(EnrolmentRow, enrolment("1" * 200_000))
    assert (
        line == "personal_id: must be 12 digits 0-9, got '" + "1" * 60 + "'... (200,000 characters)"
    )


def test_a_reason_for_a_hold_or_termination_is_required_and_checked(tmp_path: Path) -> None:
    assert values.required_reason("  under review ") == "under review"
    assert refused(values.required_reason, "  ") == "a reason is required"
    bidi = (
        "--reason: must not contain control, format or line-break characters (U+202E at "
        "character 6)"
    )
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
        for reason, expected in (
            ("", "--reason: a reason is required"),
            ("under\u202ereview", bidi),
            ("x" * 501, "--reason: must be at most 500 characters, got 501"),
        ):
            with pytest.raises(InputRejected) as refusal:
                ledger.hold(P1, reason, "maker")
            assert refusal.value.problems == [expected]
            with pytest.raises(InputRejected) as refusal:
                ledger.terminate(P1, "2025-08", reason, "maker")
            assert refusal.value.problems == [expected]


# Across fields: the claimant, the reference of a payment


def test_a_claimant_who_is_the_dead_person_is_refused() -> None:
    assert problems_of(DeathRow, death(P1, claimant_personal_id=P1)) == [
        f"claimant_personal_id: {P1} is the person who died: the funeral allowance is paid to "
        "someone else"
    ]
    accepted(DeathRow, death(P1, claimant_personal_id=P2))


def test_a_paid_settlement_needs_its_reference() -> None:
    pid = f"2025-07-01-{P1}"
    assert problems_of(SettlementRow, settlement(pid, "PAID", reference="")) == [
        "reference: is required for PAID"
    ]
    accepted(SettlementRow, settlement(pid, "FAILED", reference=""))


# Who acts


def test_an_actor_is_trimmed_nfkc_and_visible() -> None:
    assert values.actor("  nguyen ") == "nguyen"
    assert values.actor("Ｎguyen") == "Nguyen"  # fullwidth N
    assert values.actor("Nguyễn Văn An") == "Nguyễn Văn An"
    assert (
        refused(values.actor, "   ") == "an actor is required (who is acting: --by or LEDGER_USER)"
    )
    for char in ("\u200b", "\u200d", "\u2060", "\u2063", "\ufeff", "\u00ad", "\u202e", "\x07"):
        assert refused(values.actor, f"ng{char}uyen") == (
            f"must not contain invisible, control or format characters (U+{ord(char):04X} at "
            "character 3)"
        )
    assert values.actor("a" * 100) == "a" * 100
    assert refused(values.actor, "a" * 101) == "must be at most 100 characters, got 101"


def test_the_same_actor_whatever_the_case_width_or_spaces() -> None:
    for other in (
        "Nguyen",
        "nguyen",
        "Nguyen ",
        " NGUYEN",
        "Ｎguyen",
        "ｎｇｕｙｅｎ",
        "ngu\u200byen",
    ):
        assert values.same_actor("Nguyen", other), other
    composed = "Nguyễn"
    assert values.same_actor(composed, unicodedata.normalize("NFD", composed).upper())
    assert not values.same_actor("nguyen", "tran")
    assert not values.same_actor("nguyen", "nguyen2")


# Files checked as a stream


def test_a_file_with_many_bad_rows_keeps_the_first_problems_and_counts_them_all(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inputs, "CHUNK_ROWS", 7)  # chunk boundaries inside the file
    rows = [enrolment(f"0010000{i:05d}", sex="X", commune_code="1") for i in range(600)]
    path = files.enrolments(rows)
    with pytest.raises(InputRejected) as refusal:
        read_rows(path, EnrolmentRow, now=NOW)
    rejected = refusal.value
    assert rejected.total == 1200 and len(rejected.problems) == 1000 and rejected.more == 200
    # every problem of a row, in row order
    assert rejected.problems[:3] == [
        f"{path.name}: row 2: commune_code: must be 5 digits 0-9, got '1'",
        f"{path.name}: row 2: sex: Input should be 'M' or 'F'",
        f"{path.name}: row 3: commune_code: must be 5 digits 0-9, got '1'",
    ]
    assert rejected.problems[-1] == f"{path.name}: row 501: sex: Input should be 'M' or 'F'"
    assert str(rejected).endswith("... and 200 more problems")


def test_the_report_keeps_the_first_lines_in_row_order_whatever_the_order_added() -> None:
    kept = Problems(cap=3)
    kept += [f"f.csv: row {n}: x: bad" for n in (9, 4, 12, 2)]
    kept.append("f.csv: row 4: x: bad")  # the same line again: once
    kept.append("f.csv: row 3: y: bad")
    assert list(kept) == ["f.csv: row 2: x: bad", "f.csv: row 3: y: bad", "f.csv: row 4: x: bad"]
    assert (kept.total, kept.more) == (5, 2)
    rejected = InputRejected(kept)
    assert (rejected.problems, rejected.total) == (list(kept), 5)
    assert InputRejected(["a", "b"], total=7).more == 5


def test_once_a_file_is_bad_its_valid_rows_are_not_kept(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inputs, "CHUNK_ROWS", 2)
    rows = [enrolment(f"00100000000{i}") for i in range(6)]
    rows[3]["sex"] = "X"
    path = files.enrolments(rows)
    problems = Problems()
    refused: list[tuple[int, dict[str, str]]] = []
    got = read_rows(path, EnrolmentRow, problems, refused, now=NOW, keep=("personal_id",))
    assert got == []  # nothing of a bad file is applied: no row kept whole
    assert sorted(refused) == [(n, {"personal_id": f"00100000000{n - 2}"}) for n in range(2, 8)]
    assert list(problems) == [f"{path.name}: row 5: sex: Input should be 'M' or 'F'"]
    # a good file: every row, nothing refused
    refused.clear()
    good = read_rows(files.enrolments(rows[:3]), EnrolmentRow, Problems(), refused, keep=("x",))
    assert [n for n, _ in good] == [2, 3, 4] and refused == []


def test_a_registry_file_gives_every_valid_registration_to_decide(files: Files) -> None:
    """The deaths import decides the valid registrations of a bad file too, to report their
    refusals in the same pass: they are kept."""
    path = files.deaths([death(P1), death(P2, event_id="x"), death("001000000003")])
    problems: list[str] = []
    unit, rows = registrations_in(InputFile.read(path), problems, NOW)
    assert (unit, [n for n, _ in rows]) == ("row", [2, 4])
    assert problems == [f"{path.name}: row 3: event_id: must be a UUID, got 'x'"]


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fails a test that would block (reading a pipe) instead of hanging the run."""

    def stop(*_: object) -> None:
        raise TimeoutError("blocked reading the file")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_file_that_is_not_a_regular_file_is_refused_unread(tmp_path: Path, alarm: None) -> None:
    fifo = tmp_path / "enrol.csv"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(InputRejected) as refusal:
            InputFile.read(path)
        assert refusal.value.problems == [
            f"{path}: is not a regular file (a device, a pipe or a socket); give the file"
        ]
    with pytest.raises(InputRejected) as refusal:
        InputFile.read(tmp_path)
    assert refusal.value.problems == [f"{tmp_path}: is a directory; give the file"]


def test_a_file_over_the_size_limit_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inputs, "MAX_FILE_BYTES", 100)
    path = write_csv(tmp_path / "e.csv", ENROLMENT_COLUMNS, [enrolment(P1)])
    with pytest.raises(InputRejected) as refusal:
        InputFile.read(path)
    assert refusal.value.problems == [
        f"{path}: is larger than 100 bytes, the most an input file may be: split it"
    ]


def test_a_field_longer_than_the_csv_modules_limit_is_reported_on_its_row(
    tmp_path: Path,
) -> None:
    rows = [enrolment(P1), enrolment(P2, full_name="N" * 200_000), death(P1)]
    path = write_csv(tmp_path / "e.csv", ENROLMENT_COLUMNS, rows[:2])
    with pytest.raises(InputRejected) as refusal:
        read_rows(path, EnrolmentRow, now=NOW)
    assert refusal.value.problems == [
        "e.csv: row 3: full_name: must be at most 200 characters, got 200,000"
    ]
    deaths = write_csv(tmp_path / "d.csv", DEATH_COLUMNS, [death(P1, **NO_CLAIMANT)])
    assert len(read_rows(deaths, DeathRow, now=NOW)) == 1


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "e.csv", ENROLMENT_COLUMNS, [enrolment(P1), enrolment(P2)])
    data = path.read_bytes()
    at = data.index("Người 0002".encode())
    path.write_bytes(data[:at] + b"Ng\xff" + data[at + 2 :])
    with pytest.raises(InputRejected) as refusal:
        read_rows(path, EnrolmentRow)
    assert refusal.value.problems == [
        f"e.csv: not UTF-8 text (invalid start byte at byte {at + 2}, line 3)"
    ]


def test_a_bom_and_line_breaks_of_every_kind_are_read(tmp_path: Path) -> None:
    header = ",".join(ENROLMENT_COLUMNS)
    cells = [str(enrolment(p)[c]) for p in (P1, P2) for c in ENROLMENT_COLUMNS]
    first, second = ",".join(cells[:13]), ",".join(cells[13:])
    for ending in ("\n", "\r\n", "\r"):
        path = tmp_path / "e.csv"
        path.write_bytes(("\ufeff" + header + ending + first + ending + second).encode())
        assert [n for n, _ in read_rows(path, EnrolmentRow)] == [2, 3], repr(ending)


def test_a_death_date_check_uses_the_clock_it_is_given_only(tmp_path: Path) -> None:
    future = death(P1, date_of_death=(TODAY + timedelta(days=3)).isoformat(), **NO_CLAIMANT)
    future["registered_at"] = f"{TODAY + timedelta(days=3)}T09:00:00+07:00"
    path = write_csv(tmp_path / "d.csv", DEATH_COLUMNS, [future])
    assert len(read_rows(path, DeathRow)) == 1  # no clock given (the lead wires the import)
    with pytest.raises(InputRejected):
        read_rows(path, DeathRow, now=NOW)


def test_a_message_dated_in_the_future_is_rejected_by_the_consumer() -> None:
    """A Kafka message is checked against the ledger's clock as a file's row is."""
    row = death(P1, date_of_death="2025-08-02", registered_at="2025-08-02T09:00:00+07:00")
    message = SimpleNamespace(
        topic="civil-registry.deaths",
        partition=0,
        offset=7,
        key=P1.encode(),
        value=avro.encode(SUBJECT, avro_death_record(row)),
        headers=[],
    )
    rejection = registration_of(message, NOW)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "invalid-field"
    assert rejection.detail == (
        "date_of_death: 2025-08-02 is in the future (it is 2025-07-31 in Vietnam); "
        "registered_at: 2025-08-02T02:00:00+00:00 is in the future (it is "
        "2025-07-31T23:59+07:00 in Vietnam)"
    )
    later = FixedDay(lambda: date(2025, 8, 2)).now()
    assert not isinstance(registration_of(message, later), Rejection)


@pytest.mark.parametrize(
    ("spelling", "why"),
    [
        ("nguyen\u2800", r"U\+2800"),  # a braille blank: looks like nothing, is not a space
        ("nguy\u0435n", "CYRILLIC and LATIN"),  # a Cyrillic е among Latin letters
        ("ngu\u0443en", "CYRILLIC and LATIN"),  # a Cyrillic у
        ("nguyen\u2063", "invisible"),
    ],
)
def test_an_actor_that_could_pass_for_another_is_refused(spelling: str, why: str) -> None:
    with pytest.raises(values.InvalidValue, match=why):
        values.actor(spelling)
