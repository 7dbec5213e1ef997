"""`ledger deaths consume` against the real broker, on both stores: every message takes effect
once or is rejected with its reason, poison messages between good ones do not stop the
consumer, one person's registrations apply in the order they were sent, messages of schema
v1 and v2 mix in one topic, and a second run changes nothing."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import fastavro
import pytest

from adapters import avro
from adapters.civil_registry import SUBJECT, avro_record, ensure_topics
from adapters.death_consumer import REJECTED_SUFFIX, tracking_name
from ledger.application import Ledger
from ledger.inputs import DeathRow
from tests.conftest import REVOKE, SOURCE, Files, death, enrolment, query_store
from tests.integration.test_publish import consume_all

pytestmark = pytest.mark.integration


def v1_bytes(row: dict[str, Any]) -> bytes:
    v1 = fastavro.parse_schema(
        json.loads(resources.files("schemas").joinpath("death_registration.v1.avsc").read_text())
    )
    body = io.BytesIO()
    body.write(struct.pack(">bI", 0, 2))  # schema id 2: DeathRegistration v1
    fastavro.schemaless_writer(body, v1, avro_record(DeathRow.model_validate(row)))
    return body.getvalue()


def v2_bytes(row: dict[str, Any], system: str | None = None) -> bytes:
    record = avro_record(DeathRow.model_validate(row))
    if system:
        record["registry_system"] = system
    return avro.encode(SUBJECT, record)


@dataclass
class Sent:
    """What the test sent, in order, with what it expects of each message."""

    messages: list[tuple[bytes, bytes | None, str]] = field(default_factory=list)

    def good(self, row: dict[str, Any], expect: str = "applied", v1: bool = False) -> None:
        value = v1_bytes(row) if v1 else v2_bytes(row, "registry-test")
        self.messages.append((row["personal_id"].encode(), value, expect))

    def raw(self, key: bytes, value: bytes | None, expect: str) -> None:
        self.messages.append((key, value, expect))


def scenario() -> tuple[Sent, dict[str, str]]:
    """Registrations of five people, with poison, duplicates and refusals between them;
    returns what is sent and the death in force expected for each person at the end."""
    sent = Sent()
    a, b, c, d, e = (f"00200000000{i}" for i in range(1, 6))
    first_a = death(a, registration_number="KT-A1", date_of_death="2025-07-15")
    sent.good(first_a, v1=True)
    sent.raw(b"junk", b"not avro at all", "rejected:undecodable")
    sent.good(death(b, registration_number="KT-B1"))
    sent.good(dict(first_a), expect="unchanged")  # the same event again, as v2
    sent.raw(a.encode(), b"\x00\x00\x00\x00\x63abc", "rejected:unknown-schema-id")
    sent.good(death(a, registration_number="KT-A2"), expect="rejected:already-registered")
    sent.good(
        death(a, event_type="CORRECTED", registration_number="KT-A1", date_of_death="2025-07-10")
    )
    bad = avro_record(DeathRow.model_validate(death(c)))
    bad["personal_id"] = c[:11]
    sent.raw(c[:11].encode(), avro.encode(SUBJECT, bad), "rejected:invalid-personal-id")
    sent.good(
        death(c, event_type="CORRECTED", registration_number="KT-C9"),
        expect="rejected:unknown-registration",
    )
    sent.good(death(a, registration_number="KT-A1") | REVOKE)
    sent.good(death(a, registration_number="KT-A3", date_of_death="2025-07-18"), v1=True)
    sent.good(death(d, registration_number="KT-D1"))
    sent.raw(e.encode(), v2_bytes(death(d, registration_number="KT-D2")), "rejected:wrong-key")
    sent.good(death(b, registration_number="KT-B1") | REVOKE)
    sent.good(death(e, registration_number="KT-E1", date_of_death="2025-06-30"))
    expected = {a: "2025-07-18", d: "2025-07-15", e: "2025-06-30"}  # b revoked, c never
    return sent, expected


def publish(bootstrap: str, topic: str, sent: Sent) -> None:
    from kafka import KafkaProducer

    ensure_topics(bootstrap, [topic], partitions=3)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value, _ in sent.messages:
            producer.send(topic, key=key, value=value).get(timeout=30)
    finally:
        producer.close()


def consume_once(store: str, bootstrap: str, topic: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LEDGER_KAFKA": bootstrap,
        "LEDGER_DEATHS_TOPIC": topic,
        "LEDGER_USER": "civil-registry-consumer",
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.ledger_as_role",
            "deaths",
            "consume",
            "--once",
            "--store",
            store,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def consumed(
    store_kind: str,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> dict[str, Any]:
    from tests.conftest import new_store

    store = new_store(store_kind, tmp_path_factory.mktemp("deaths"), request)
    topic = f"civil-registry.deaths.test-{uuid.uuid4().hex[:8]}"
    sent, expected = scenario()
    files = Files(tmp_path_factory.mktemp("files"))
    with Ledger(store) as ledger:  # d is a beneficiary: a death matters to the payroll
        ledger.enrol(files.enrolments([enrolment("002000000004")]), "officer")
    publish(kafka_bootstrap, topic, sent)
    first = consume_once(store, kafka_bootstrap, topic)
    events_after_first = query_store(store, f"SELECT COUNT(*) FROM {_events(store)}")[0][0]
    second = consume_once(store, kafka_bootstrap, topic)
    return {
        "store": store,
        "topic": topic,
        "sent": sent,
        "expected": expected,
        "first": first,
        "second": second,
        "events_after_first": events_after_first,
        "inputs": consume_all(kafka_bootstrap, topic),
        "rejected": consume_all(kafka_bootstrap, topic + REJECTED_SUFFIX),
    }


def _events(store: str) -> str:
    return "stored_events" if store.startswith("sqlite") else "ledger_events"


def test_the_consumer_reports_what_it_did(consumed: dict[str, Any]) -> None:
    first = consumed["first"]
    assert first.returncode == 0, first.stderr
    sent: Sent = consumed["sent"]
    applied = sum(1 for *_, x in sent.messages if x == "applied")
    assert re.search(rf"applied\s*│\s*{applied}\s", first.stdout), first.stdout
    assert re.search(r"unchanged \(event_id applied before\)\s*│\s*1\s", first.stdout)
    assert re.search(rf"all\s*│\s*{len(sent.messages)}\s", first.stdout)
    assert "rejected: wrong-key" in first.stdout


def test_every_offset_is_applied_or_rejected_once(consumed: dict[str, Any]) -> None:
    store, topic, sent = consumed["store"], consumed["topic"], consumed["sent"]
    by_position = {(r.partition, r.offset): r for r in consumed["inputs"]}
    assert len(by_position) == len(sent.messages)
    expect_of = {(k, v): x for k, v, x in sent.messages}
    with Ledger(store) as _:
        pass  # brings the audit trail up to date
    applied: dict[tuple[int, int], int] = {}
    for (source,) in query_store(
        store,
        "SELECT source FROM audit_trail WHERE event_type LIKE 'DeathRecord.%'",
    ):
        m = SOURCE.match(source)
        assert m and m["topic"] == topic, source
        position = (int(m["partition"]), int(m["offset"]))
        applied[position] = applied.get(position, 0) + 1
    assert all(n == 1 for n in applied.values())  # no message took effect twice
    rejected: dict[tuple[int, int], str] = {}
    for r in consumed["rejected"]:
        headers = {k: v.decode() for k, v in r.headers}
        assert headers["ledger.source.topic"] == topic
        position = (int(headers["ledger.source.partition"]), int(headers["ledger.source.offset"]))
        original = by_position[position]
        assert (r.key, r.value) == (original.key, original.value)  # the bytes as received
        assert headers["ledger.rejected.detail"]
        rejected[position] = headers["ledger.rejected.reason"]
    assert len(rejected) == len(consumed["rejected"])  # each rejection sent once here
    unchanged = set(by_position) - set(applied) - set(rejected)
    assert not set(applied) & set(rejected)
    for position, record in by_position.items():
        expect = expect_of[(record.key, record.value)]
        if expect == "applied":
            assert position in applied, position
        elif expect == "unchanged":
            assert position in unchanged, position
        else:
            assert rejected.get(position) == expect.removeprefix("rejected:"), position
    assert len(unchanged) == 1


def test_one_persons_registrations_apply_in_order(consumed: dict[str, Any]) -> None:
    store, expected = consumed["store"], consumed["expected"]
    with Ledger(store) as _:
        pass
    in_force = dict(
        query_store(store, "SELECT personal_id, date_of_death FROM deaths WHERE in_force = 1")
    )
    assert in_force == expected
    # b was registered and then revoked; c's correction of an unknown registration left
    # nothing
    known = {r[0] for r in query_store(store, "SELECT personal_id FROM deaths")}
    assert "002000000003" not in known
    assert "002000000002" in known


def test_the_positions_are_in_the_store_and_a_second_run_changes_nothing(
    consumed: dict[str, Any],
) -> None:
    store, topic = consumed["store"], consumed["topic"]
    second = consumed["second"]
    assert second.returncode == 0, second.stderr
    assert re.search(r"all\s*│\s*0\s", second.stdout), second.stdout
    assert (
        query_store(store, f"SELECT COUNT(*) FROM {_events(store)}")[0][0]
        == consumed["events_after_first"]
    )
    ends: dict[int, int] = {}
    for r in consumed["inputs"]:
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    with Ledger(store) as ledger:
        assert {p: ledger.tracked_position(tracking_name(topic, p)) for p in ends} == ends


def test_a_consumed_death_reaches_the_payroll(consumed: dict[str, Any], tmp_path: Path) -> None:
    with Ledger(consumed["store"]) as ledger:
        account = ledger.account("002000000004")
        assert account is not None
    assert account.dead
    assert account.entitlement.death_month is not None


def test_a_topic_that_no_longer_holds_the_stored_position_stops_the_consumer(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The store applied up to offset 100 of partition 0, but the topic (recreated) has only
    a few messages: reading them would skip or re-apply registrations silently."""
    from eventsourcing.persistence import Tracking

    store = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    topic = f"civil-registry.deaths.test-{uuid.uuid4().hex[:8]}"
    sent = Sent()
    sent.good(death("002000000001"))
    publish(kafka_bootstrap, topic, sent)
    with Ledger(store) as ledger:
        nothing = ledger.decide_death_registrations([], "test")
        for p in range(3):
            ledger.record_death_registrations(nothing, Tracking(tracking_name(topic, p), 100))
    run = consume_once(store, kafka_bootstrap, topic)
    assert run.returncode == 1, run.stdout
    assert "the store has applied up to offset 100" in run.stderr
    assert query_store(store, "SELECT COUNT(*) FROM deaths")[0][0] == 0
