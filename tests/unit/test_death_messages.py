"""Death registrations one message at a time, as the Kafka consumer hands them to the ledger:
what each message does (applied, unchanged, refused with a reason), and that the store takes a
batch's events and its position together, once. The broker is not needed here: the messages
are the bytes a registry would send."""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from importlib import resources
from typing import Any

import fastavro
import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from adapters import avro
from adapters.civil_registry import SUBJECT, avro_record
from adapters.death_consumer import Rejection, registration_of, tracking_name
from ledger.application import APPLIED, REFUSED, UNCHANGED, Ledger
from ledger.inputs import DeathRow, InputRejected
from ledger.service_layer.deaths import Registration
from tests.conftest import REVOKE, Files, death, enrolment, query_store

TOPIC = "civil-registry.deaths"


@dataclass
class Message:  # the fields of a kafka-python ConsumerRecord that the consumer reads
    value: bytes | None
    key: bytes | None
    offset: int = 0
    partition: int = 0
    topic: str = TOPIC
    headers: list[tuple[str, bytes]] | None = None


def wire(row: dict[str, Any]) -> bytes:
    return avro.encode(SUBJECT, avro_record(DeathRow.model_validate(row)))


def message(row: dict[str, Any], offset: int = 0) -> Message:
    return Message(wire(row), row["personal_id"].encode(), offset)


def registrations(rows: list[dict[str, Any]]) -> list[tuple[str, str, DeathRow]]:
    out = []
    for offset, row in enumerate(rows):
        got = registration_of(message(row, offset))
        assert not isinstance(got, Rejection), got
        out.append((got[1], f"offset {offset}", got[0]))
    return out


# Reading a message


def test_a_v1_message_and_a_v2_message_read_alike() -> None:
    row = death("001000000001")
    v1 = fastavro.parse_schema(
        json.loads(resources.files("schemas").joinpath("death_registration.v1.avsc").read_text())
    )
    body = io.BytesIO()
    body.write(struct.pack(">bI", 0, 2))  # schema id 2: version 1
    fastavro.schemaless_writer(body, v1, avro_record(DeathRow.model_validate(row)))
    old = registration_of(Message(body.getvalue(), row["personal_id"].encode(), 4))
    new = registration_of(message(row, 4))
    assert not isinstance(old, Rejection) and not isinstance(new, Rejection)
    assert old == new
    assert old[1] == f"{TOPIC} partition 0 offset 4"


def test_the_registry_system_of_a_v2_message_is_named_in_the_source() -> None:
    row = death("001000000001")
    record = {**avro_record(DeathRow.model_validate(row)), "registry_system": "HCM-CRS"}
    got = registration_of(Message(avro.encode(SUBJECT, record), row["personal_id"].encode(), 9))
    assert not isinstance(got, Rejection)
    assert got[1] == f"{TOPIC} partition 0 offset 9 (HCM-CRS)"


def _bad_personal_id() -> Message:
    record = avro_record(DeathRow.model_validate(death("001000000001")))
    record["personal_id"] = "12345678901"  # 11 digits
    return Message(avro.encode(SUBJECT, record), b"12345678901")


def _bad_field() -> Message:
    record = avro_record(DeathRow.model_validate(death("001000000001")))
    record["registration_number"] = "  "
    return Message(avro.encode(SUBJECT, record), b"001000000001")


@pytest.mark.parametrize(
    ("received", "reason", "detail"),
    [
        (Message(b"hello", b"001000000001"), "undecodable", "wire format"),
        (Message(None, b"001000000001"), "undecodable", "wire format"),
        (Message(b"\x00\x00\x00\x00\x63xyz", b"001000000001"), "unknown-schema-id", "99"),
        (Message(b"\x00\x00\x00\x00\x01xyz", b"001000000001"), "unknown-schema-id", "id 1"),
        (Message(b"\x00\x00\x00\x00\x03\xff\xff", b"001000000001"), "undecodable", "Avro body"),
        (_bad_personal_id(), "invalid-personal-id", "personal_id: "),
        (_bad_field(), "invalid-field", "registration_number: "),
        (Message(wire(death("001000000001")), b"001000000002"), "wrong-key", "key: "),
        (Message(wire(death("001000000001")), None), "wrong-key", "None"),
    ],
    ids=[
        "not-wire-format",
        "tombstone",
        "unknown-id",
        "id-of-another-subject",
        "bad-body",
        "personal-id",
        "registration-number",
        "key-of-another-person",
        "no-key",
    ],
)
def test_a_message_that_cannot_be_read_is_rejected_with_its_reason(
    received: Message, reason: str, detail: str
) -> None:
    got = registration_of(received)
    assert isinstance(got, Rejection)
    assert got.reason == reason
    assert detail in got.detail


# What each registration does


def outcomes(ledger: Ledger, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    decision = ledger.decide_death_registrations(registrations(rows), "registry-bot")
    return [(o.outcome, o.reason) for o in decision.outcomes]


def test_each_registration_is_decided_in_order(ledger: Ledger) -> None:
    pid = "001000000001"
    first = death(pid, registration_number="KT-1")
    rows = [
        first,
        dict(first),  # the same event again: unchanged
        death(pid, registration_number="KT-2"),  # a second death while KT-1 is in force
        death(pid, event_type="CORRECTED", registration_number="KT-9"),  # unknown number
        death("001000000002", registration_number="KT-3") | REVOKE,
        death(pid, event_type="CORRECTED", registration_number="KT-1", date_of_death="2025-07-10"),
        death(pid, registration_number="KT-1") | REVOKE,
        death(pid, event_type="CORRECTED", registration_number="KT-1"),  # revoked
        death(pid, registration_number="KT-1"),  # a revoked number is not used again
        death(pid, registration_number="KT-4"),  # after a revocation a new one is valid
    ]
    assert outcomes(ledger, rows) == [
        (APPLIED, ""),
        (UNCHANGED, ""),
        (REFUSED, "already-registered"),
        (REFUSED, "unknown-registration"),
        (REFUSED, "unknown-registration"),
        (APPLIED, ""),
        (APPLIED, ""),
        (REFUSED, "revoked-registration"),
        (REFUSED, "registration-number-taken"),
        (APPLIED, ""),
    ]


def test_a_registration_is_changed_only_by_the_registry_system_that_registered_it(
    ledger: Ledger,
) -> None:
    """A system's registration: another system's correction or revocation is refused; one
    that names no system (a file an operator imports, a v1 message) is taken."""
    pid = "001000000001"
    sent = [
        (death(pid, registration_number="KT-1"), "HTTP-CR-HN"),
        (death(pid, event_type="CORRECTED", registration_number="KT-1"), "HTTP-CR-HCM"),
        (death(pid, registration_number="KT-1") | REVOKE, "HTTP-CR-HCM"),
        (death(pid, event_type="CORRECTED", registration_number="KT-1"), "HTTP-CR-HN"),
        (death(pid, event_type="CORRECTED", registration_number="KT-1"), None),
        (death(pid, registration_number="KT-1") | REVOKE, None),
    ]
    registrations = [
        Registration(f"src {n}", f"row {n}", DeathRow.model_validate(row), system)
        for n, (row, system) in enumerate(sent)
    ]
    decision = ledger.decide_death_registrations(registrations, "registry-bot")
    assert [(o.outcome, o.reason) for o in decision.outcomes] == [
        (APPLIED, ""),
        (REFUSED, "other-registry"),
        (REFUSED, "other-registry"),
        (APPLIED, ""),
        (APPLIED, ""),
        (APPLIED, ""),
    ]


def test_a_decision_saves_nothing_and_a_refusal_changes_no_record(ledger: Ledger) -> None:
    pid = "001000000001"
    rows = [death(pid, registration_number="KT-1"), death(pid, registration_number="KT-2")]
    decision = ledger.decide_death_registrations(registrations(rows), "registry-bot")
    (record,) = decision.records
    assert record.in_force == "KT-1"
    assert list(record.registrations) == ["KT-1"]
    assert query_store(ledger.location.url, "SELECT COUNT(*) FROM deaths")[0][0] == 0


def test_a_batch_and_its_position_are_recorded_together_and_once(ledger: Ledger) -> None:
    rows = [death("001000000001"), death("001000000002")]
    name = tracking_name(TOPIC, 3)
    decision = ledger.decide_death_registrations(registrations(rows), "registry-bot")
    ledger.record_death_registrations(decision, Tracking(name, 2))
    assert ledger.tracked_position(name) == 2
    assert query_store(ledger.location.url, "SELECT COUNT(*) FROM deaths")[0][0] == 2

    # the same messages again (a redelivery decided before the first save was visible)
    again = ledger.decide_death_registrations(registrations([death("001000000003")]), "bot")
    with pytest.raises(IntegrityError):
        ledger.record_death_registrations(again, Tracking(name, 2))
    assert ledger.tracked_position(name) == 2
    assert query_store(ledger.location.url, "SELECT COUNT(*) FROM deaths")[0][0] == 2

    # a batch of nothing but duplicates still moves the position
    same = ledger.decide_death_registrations(registrations(rows), "registry-bot")
    assert [o.outcome for o in same.outcomes] == [UNCHANGED, UNCHANGED]
    ledger.record_death_registrations(same, Tracking(name, 4))
    assert ledger.tracked_position(name) == 4
    assert ledger.tracked_position(tracking_name(TOPIC, 0)) is None


def test_a_death_of_someone_not_enrolled_is_recorded_and_bars_enrolment(
    ledger: Ledger, files: Files
) -> None:
    pid = "001000000001"
    decision = ledger.decide_death_registrations(registrations([death(pid)]), "registry-bot")
    ledger.record_death_registrations(decision, Tracking(tracking_name(TOPIC, 0), 1))
    with pytest.raises(InputRejected, match="death"):
        ledger.enrol(files.enrolments([enrolment(pid)]), "officer")
    assert query_store(ledger.location.url, "SELECT COUNT(*) FROM beneficiaries")[0][0] == 0


def test_a_record_changed_by_an_import_since_the_decision_is_not_overwritten(
    ledger: Ledger, files: Files
) -> None:
    pid = "001000000001"
    ledger.import_deaths(files.deaths([death(pid, registration_number="KT-1")]), "officer")
    stale = ledger.decide_death_registrations(
        registrations([death(pid, event_type="CORRECTED", registration_number="KT-1")]), "bot"
    )
    ledger.import_deaths(
        files.deaths(
            [
                death(
                    pid,
                    event_type="CORRECTED",
                    registration_number="KT-1",
                    date_of_death="2025-07-01",
                )
            ]
        ),
        "officer",
    )
    with pytest.raises(IntegrityError):
        ledger.record_death_registrations(stale, Tracking(tracking_name(TOPIC, 0), 1))
    assert ledger.tracked_position(tracking_name(TOPIC, 0)) is None
    date = query_store(ledger.location.url, "SELECT date_of_death FROM deaths")[0][0]
    assert date == "2025-07-01"


def test_a_death_registered_early_in_the_morning_on_its_day_is_accepted() -> None:
    """Avro carries the instant in UTC: 06:30 on 1 July in Vietnam is 30 June in UTC, and the
    death on 1 July is not 'after registered_at'."""
    row = death(
        "001000000001", date_of_death="2025-07-01", registered_at="2025-07-01T06:30:00+07:00"
    )
    got = registration_of(message(row))
    assert not isinstance(got, Rejection), got
    assert got[0].registered_at == "2025-07-01T06:30:00+07:00"


def test_a_message_sent_in_utc_gives_the_row_the_csv_file_gives() -> None:
    """Issue 10: registered at 20:00 UTC on 22 March (03:00 on 23 March in Vietnam), died on
    23 March: accepted from Kafka as from a CSV file, and the same row either way."""
    row = death("001000000001", date_of_death="2025-03-23", registered_at="2025-03-22T20:00:00Z")
    got = registration_of(message(row))
    assert not isinstance(got, Rejection), got
    assert got[0] == DeathRow.model_validate(row)
    assert got[0].registered_at == "2025-03-23T03:00:00+07:00"


def test_a_personal_id_in_arabic_indic_digits_is_rejected() -> None:
    """str.isdigit() is true for '٠١٢...': the id must be ASCII digits 0-9."""
    record = avro_record(DeathRow.model_validate(death("001000000001")))
    record["personal_id"] = "٠٠١٠٠٠٠٠٠٠٠١"
    got = registration_of(Message(avro.encode(SUBJECT, record), "٠٠١٠٠٠٠٠٠٠٠١".encode()))
    assert isinstance(got, Rejection)
    assert got.reason == "invalid-personal-id"
    assert "personal_id: must be 12 digits 0-9" in got.detail
