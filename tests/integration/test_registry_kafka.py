"""The endpoint on a PostgreSQL store: an acknowledged notification is on the deaths topic
(keyed by personal id, in the wire format, marked with its registry) before the answer, and
`ledger deaths consume` applies it to the store, whose next list no longer pays the person; a
notification sent again adds nothing to the topic, and a refused one puts nothing on it. Real
broker, real server, real client."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from adapters import avro
from adapters.civil_registry import SUBJECT
from ledger.aggregates import death_record_id
from ledger.application import Ledger
from tests.conftest import Files, enrolment, new_store
from tests.integration.test_death_consumer import consume_once
from tests.integration.test_publish import consume_all
from tests.integration.test_registry_http import send
from tests.registry_messages import Registry, death_event
from tests.registry_server import registry_server

pytestmark = pytest.mark.integration

PERSON, NEIGHBOUR = "002000000077", "002000000078"


def test_an_acknowledged_notification_is_on_the_topic_and_consumed_into_the_store(
    tmp_path: Path, kafka_bootstrap: str, request: pytest.FixtureRequest
) -> None:
    store = new_store("postgresql", tmp_path, request)
    with Ledger(store) as ledger:
        people = [enrolment(PERSON), enrolment(NEIGHBOUR)]
        ledger.enrol(Files(tmp_path).enrolments(people), "officer")
    topic = f"civil-registry.deaths.test-{uuid.uuid4().hex[:8]}"
    hanoi = Registry()
    env = {"LEDGER_KAFKA": kafka_bootstrap, "LEDGER_DEATHS_TOPIC": topic}
    notification = hanoi.notification(death_event(PERSON, registration_number="KT-HN-77"))
    with registry_server(store, tmp_path, hanoi, env=env) as base:
        first = send(base, notification, hanoi)
        # on the topic before the answer came back
        assert first.status_code == 200 and first.json()["message"]["ack_status"] == "ACK"
        on_topic = consume_all(kafka_bootstrap, topic)
        again = send(base, notification, hanoi)
        bad = hanoi.notification(death_event(PERSON, date_of_death="2999-01-01"))
        assert send(base, bad, hanoi).json()["message"]["ack_status"] == "ERR"

    assert again.content == first.content
    assert len(on_topic) == 1 and len(consume_all(kafka_bootstrap, topic)) == 1
    message = on_topic[0]
    assert message.key == PERSON.encode()
    value = avro.decode(SUBJECT, message.value)
    assert value["registry_system"] == hanoi.sender_id
    assert value["registration_number"] == "KT-HN-77"
    assert value["full_name"] == "Nguyễn Văn An"
    assert str(value["event_id"]) == notification["message"]["notify_event"][0]["reference_id"]

    consumed = consume_once(store, kafka_bootstrap, topic)
    assert consumed.returncode == 0, consumed.stderr
    assert re.search(r"applied\s*│\s*1\s", consumed.stdout), consumed.stdout
    with Ledger(store) as ledger:  # the death is in the record, in force
        record = ledger.events.get(death_record_id(PERSON))
        assert record.in_force == "KT-HN-77"
        assert record.has_applied(str(value["event_id"]))
        # and on the lists: August pays the neighbour, not the person who died in July
        ledger.run_payroll("2025-08", None, "maker")
        ledger.approve_payroll("2025-08", None, "checker")
        paid = ledger.db.query(
            "SELECT personal_id, kind FROM payment_lines WHERE period = '2025-08'"
        )
    assert (NEIGHBOUR, "REGULAR") in paid
    assert all(pid != PERSON for pid, _ in paid), paid
