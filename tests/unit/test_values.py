"""The values every way in shares (ledger.values): one definition and one message each, ASCII
digits only, and the same answer from a CSV row, an Avro record and a command-line argument."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest

from adapters import avro
from adapters.civil_registry import SUBJECT, read_container, row_fields
from ledger import values
from ledger.application import Ledger
from ledger.cli import build_parser, check_arguments, main
from ledger.inputs import DeathRow, EnrolmentRow, InputRejected, SettlementRow, validate_one
from tests.conftest import Files, avro_death_record, death, enrolment, settlement

ARABIC = "٠١٢٣٤٥٦٧٨٩"  # Arabic-Indic digits: str.isdigit() is true for each
FULLWIDTH = "０１２３４５６７８９"


def arabic(text: str) -> str:
    return "".join(ARABIC[int(c)] if c.isascii() and c.isdigit() else c for c in text)


def refused(check: Any, text: str) -> str:
    with pytest.raises(values.InvalidValue) as problem:
        check(text)
    return str(problem.value)


# One definition each


def test_a_personal_id_is_twelve_ascii_digits() -> None:
    assert values.personal_id("001234567890") == "001234567890"
    for bad in ("12345", "0012345678901", "00123456789a", "", " 01234567890", "00123456789-"):
        assert refused(values.personal_id, bad) == f"must be 12 digits 0-9, got {bad!r}"
    for bad in (arabic("001234567890"), "00123456789" + ARABIC[0], FULLWIDTH[:10] + "00"):
        assert bad.isdigit() and len(bad) == 12  # what the old checks let through
        assert refused(values.personal_id, bad).startswith("must be 12 digits 0-9")


def test_a_commune_code_is_five_ascii_digits() -> None:
    assert values.commune_code("00001") == "00001"
    for bad in ("1", "000001", "0000a", arabic("00001"), "0000" + FULLWIDTH[1]):
        assert refused(values.commune_code, bad) == f"must be 5 digits 0-9, got {bad!r}"


def test_a_province_code_is_one_ever_in_force() -> None:
    assert values.province_code("01") == "01"
    assert values.province_code("02") == "02"  # Hà Giang, merged into Tuyên Quang in 2025
    for bad in ("99", "1", arabic("01"), ""):
        assert refused(values.province_code, bad) == f"unknown province code {bad!r}"
    assert values.province_code("99", known=frozenset({"99"})) == "99"
    for bad in ("1", "001", arabic("01"), "", "0a"):
        assert refused(values.province_code_form, bad) == f"must be 2 digits 0-9, got {bad!r}"


def test_a_month_a_date_and_a_time_are_written_in_ascii_digits() -> None:
    assert values.month("2025-07") == "2025-07"
    for bad in ("2025-13", "2025-7", arabic("2025-07"), "2025-" + arabic("07")):
        assert refused(values.month, bad) == f"must be a month YYYY-MM, got {bad!r}"
    assert values.iso_date("2025-07-15") == "2025-07-15"
    for bad in ("2025-02-30", "15/07/2025", arabic("2025-07-15")):
        assert refused(values.iso_date, bad) == f"must be a date YYYY-MM-DD, got {bad!r}"
    assert values.timestamp("2025-07-20T09:00:00+07:00") == "2025-07-20T09:00:00+07:00"
    assert refused(values.timestamp, "2025-07-20T09:00:00").startswith("must carry a UTC offset")
    bad = arabic("2025-07-20T09:00:00+07:00")
    assert refused(values.timestamp, bad) == f"must be an ISO 8601 time with offset, got {bad!r}"


def test_a_payment_id_is_period_province_and_person() -> None:
    for good in ("2025-07-27-001234567890", "2025-07-27-001234567890F"):
        assert values.payment_id(good) == good
    assert values.payment_list_of("2025-07-27-001234567890F") == ("2025-07", "27")
    for bad in (
        "not-a-payment",
        "2025-13-27-001234567890",
        "2025-07-27-00123456789",
        "2025-07-27-001234567890X",
        "2025-07-2-7001234567890",
        "2025-07-27-" + arabic("001234567890"),
        arabic("2025-07-27-001234567890"),
    ):
        assert refused(values.payment_id, bad).startswith("must be a payment id such as ")


def test_an_event_id_is_a_uuid_in_ascii() -> None:
    given = str(uuid.UUID(int=7))
    assert values.event_id(given.upper()) == given
    for bad in ("not-a-uuid", arabic(given)):
        assert refused(values.event_id, bad) == f"must be a UUID, got {bad!r}"


def test_a_whole_number_is_written_in_ascii_digits() -> None:
    assert values.whole_number("500000") == 500_000
    assert values.whole_number("-5") == -5
    for bad in (arabic("500000"), "5e5", "", "-"):
        assert refused(values.whole_number, bad).startswith("must be a whole number")


def test_a_coefficient_is_written_in_ascii_digits() -> None:
    for coefficient in (arabic("1.5"), FULLWIDTH[1] + ".5"):
        with pytest.raises(InputRejected) as problem:
            _enrolment_rows(enrolment("001234567890", coefficient=coefficient))
        assert problem.value.problems == [
            f"e.csv: row 2: coefficient: must be a decimal such as 1.5, got {coefficient!r}"
        ]


def _enrolment_rows(*rows: dict[str, Any]) -> list[Any]:
    from ledger.inputs import validate

    return validate("e.csv", list(range(2, 2 + len(rows))), list(rows), EnrolmentRow)


# Every way in


def test_every_row_model_refuses_arabic_indic_digits() -> None:
    pid = arabic("001234567890")
    ok = "001234567890"
    digits12, digits5 = "must be 12 digits 0-9", "must be 5 digits 0-9"
    cases: list[tuple[Any, dict[str, Any], str, str]] = [
        (EnrolmentRow, enrolment(pid), "personal_id", digits12),
        (EnrolmentRow, enrolment(ok, commune_code=arabic("00001")), "commune_code", digits5),
        (EnrolmentRow, enrolment(ok, province_code=arabic("01")), "province_code", "must"),
        (EnrolmentRow, enrolment(ok, effective_month=arabic("2025-01")), "effective_month", "must"),
        (DeathRow, death(pid), "personal_id", digits12),
        (DeathRow, death(ok, claimant_personal_id=pid), "claimant_personal_id", digits12),
        (SettlementRow, settlement(f"2025-07-01-{pid}"), "payment_id", "must be a payment id"),
    ]
    for model, record, field, message in cases:
        problems = validate_one(model, record)
        assert isinstance(problems, list), (model, record)
        assert [f for f, _ in problems] == [field]
        assert problems[0][1].startswith(message), problems


def test_a_message_and_a_container_file_refuse_arabic_indic_digits(tmp_path: Path) -> None:
    pid = arabic("001234567890")
    record = avro_death_record(death(pid, claimant_personal_id=arabic("009999999999")))
    message = avro.decode(SUBJECT, avro.encode(SUBJECT, record))
    problems = validate_one(DeathRow, row_fields(message))
    assert isinstance(problems, list)
    # the claimant's id too, in the same pass: every problem of the record
    assert [f for f, _ in problems] == ["claimant_personal_id", "personal_id"]
    path = tmp_path / "deaths.avro"
    with path.open("wb") as f:
        fastavro.writer(f, avro.latest(SUBJECT).schema, [record])
    with pytest.raises(InputRejected) as refusal:
        read_container(path)
    claimant = arabic("009999999999")
    assert refusal.value.problems == [
        f"deaths.avro: record 1: claimant_personal_id: must be 12 digits 0-9, got {claimant!r}",
        f"deaths.avro: record 1: personal_id: must be 12 digits 0-9, got {pid!r}",
    ]


def test_the_command_line_refuses_arabic_indic_digits() -> None:
    parser = build_parser()
    pid = arabic("001000000101")
    for argv, expected in (
        (["hold", pid, "--reason", "x"], [f"personal id: must be 12 digits 0-9, got {pid!r}"]),
        (
            ["payroll", "run", "--period", arabic("2025-07"), "--province", "01"],
            [f"--period: must be a month YYYY-MM, got {arabic('2025-07')!r}"],
        ),
        (
            ["terminate", "001000000101", "--from", arabic("2025-07"), "--reason", "x"],
            [f"--from: must be a month YYYY-MM, got {arabic('2025-07')!r}"],
        ),
    ):
        with pytest.raises(InputRejected) as refusal:
            check_arguments(parser.parse_args(argv))
        assert refusal.value.problems == expected
    # `move` checks its values itself, against the store's codes (test_rule9)
    check_arguments(
        parser.parse_args(["move", "001000000101", "--province", "01", "--commune", "00002"])
    )
    with pytest.raises(SystemExit) as usage:  # an amount is a usage error, as "abc" is
        parser.parse_args(["rates", "set", "--from", "2025-09", "--amount", arabic("600000")])
    assert usage.value.code == 2


def test_a_bad_argument_is_refused_before_the_store_is_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store" / "ledger.sqlite"
    code = main(["release", arabic("001000000101"), "--store", f"sqlite:///{store}"])
    assert code == 1
    assert capsys.readouterr().err.splitlines()[0].startswith("personal id: must be 12 digits")
    assert not store.exists()


def test_the_service_layer_checks_the_same_values(tmp_path: Path) -> None:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
        with pytest.raises(InputRejected) as refusal:
            ledger.hold(arabic("001000000101"), "check", "maker")
        assert refusal.value.problems[0].startswith("personal id: must be 12 digits 0-9")
        with pytest.raises(InputRejected) as refusal:
            ledger.move(arabic("001000000101"), "99", arabic("00001"), "maker")
        assert [p.split(":")[0] for p in refusal.value.problems] == [
            "personal id",
            "--province",
            "--commune",
        ]


# One day: Vietnam's


def test_the_death_check_uses_the_day_in_vietnam() -> None:
    # 20:00 UTC on 22 March is 03:00 on 23 March in Vietnam
    assert values.vietnam_day("2025-03-22T20:00:00Z") == "2025-03-23"
    assert values.vietnam_time("2025-03-22T20:00:00Z") == "2025-03-23T03:00:00+07:00"
    assert values.death_registered_after("2025-03-23", "2025-03-22T20:00:00Z") == "2025-03-23"
    # 01:00 on 23 March in Tokyo is 23:00 on 22 March in Vietnam
    assert (
        refused(
            lambda d: values.death_registered_after(d, "2025-03-23T01:00:00+09:00"), "2025-03-23"
        )
        == "2025-03-23 is after the day registered_at falls on in Vietnam (2025-03-22)"
    )


def test_a_registration_in_utc_before_seven_is_taken_from_csv_as_from_avro(
    files: Files, tmp_path: Path
) -> None:
    """The case of issue 10: registered at 20:00 UTC on 22 March, died on 23 March."""
    row = death("001000000001", date_of_death="2025-03-23", registered_at="2025-03-22T20:00:00Z")
    csv_path = files.deaths([row])
    avro_path = tmp_path / "deaths.avro"
    with avro_path.open("wb") as f:
        fastavro.writer(f, avro.latest(SUBJECT).schema, [avro_death_record(row)])
    seen = []
    for path in (csv_path, avro_path):
        with Ledger(f"sqlite:///{tmp_path / path.stem / 'ledger.sqlite'}") as ledger:
            assert ledger.import_deaths(path, "registry").applied == 1
            seen.append(
                ledger.db.query(
                    "SELECT personal_id, date_of_death, registered_at, in_force FROM deaths"
                )
            )
    assert seen[0] == seen[1] == [("001000000001", "2025-03-23", "2025-03-23T03:00:00+07:00", 1)]
