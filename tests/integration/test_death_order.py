"""A correction that arrives before its registration (a registry that sent them out of order,
or a producer that placed one person's messages on two partitions) is rejected
`unknown-registration`, kept on the rejected topic with its reason: the ledger never guesses
at a registration it has not seen. Once the registration is in, the operator copies the
rejected message back to the input topic; it then applies, and a message rejected again after
being copied back carries one set of the ledger's headers, not one per trip."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from adapters.death_consumer import DETAIL, REASON, REJECTED_SUFFIX, SOURCE_OFFSET
from ledger.application import Ledger
from tests.conftest import Files, death, enrolment, query_store
from tests.integration.test_death_consumer import Sent, consume_once, publish
from tests.integration.test_publish import consume_all

pytestmark = pytest.mark.integration

PERSON = "002100000001"


def copy_back(bootstrap: str, records: list, topic: str) -> None:
    """What an operator does with a rejected message once its cause is gone: the same key,
    value and headers, on the input topic."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for r in records:
            producer.send(topic, key=r.key, value=r.value, headers=r.headers).get(timeout=30)
    finally:
        producer.close()


def test_a_correction_before_its_registration_is_rejected_then_applies_when_copied_back(
    tmp_path: Path, files: Files, kafka_bootstrap: str
) -> None:
    store = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger(store) as ledger:
        ledger.enrol(files.enrolments([enrolment(PERSON)]), "officer")
    topic = f"civil-registry.deaths.order-{uuid.uuid4().hex[:8]}"
    correction = death(
        PERSON, event_type="CORRECTED", registration_number="KT-O1", date_of_death="2025-07-02"
    )
    sent = Sent()
    sent.good(correction, expect="rejected:unknown-registration")
    publish(kafka_bootstrap, topic, sent)
    assert consume_once(store, kafka_bootstrap, topic).returncode == 0
    (rejected,) = consume_all(kafka_bootstrap, topic + REJECTED_SUFFIX)
    assert dict(rejected.headers)[REASON] == b"unknown-registration"
    assert not query_store(store, "SELECT * FROM deaths")

    # the registration arrives; the rejected correction is copied back and then applies
    registration = Sent()
    registration.good(death(PERSON, registration_number="KT-O1", date_of_death="2025-07-20"))
    publish(kafka_bootstrap, topic, registration)
    copy_back(kafka_bootstrap, [rejected], topic)
    assert consume_once(store, kafka_bootstrap, topic).returncode == 0
    assert query_store(
        store, "SELECT date_of_death FROM deaths WHERE personal_id = ?", (PERSON,)
    ) == [("2025-07-02",)]
    assert len(consume_all(kafka_bootstrap, topic + REJECTED_SUFFIX)) == 1

    # a message that is rejected again after a copy back: one reason, one source, not two
    orphan = Sent()
    orphan.good(
        death("002100000002", event_type="CORRECTED", registration_number="KT-O9"),
        expect="rejected:unknown-registration",
    )
    publish(kafka_bootstrap, topic, orphan)
    assert consume_once(store, kafka_bootstrap, topic).returncode == 0
    first_rejection = consume_all(kafka_bootstrap, topic + REJECTED_SUFFIX)[-1]
    copy_back(kafka_bootstrap, [first_rejection], topic)
    assert consume_once(store, kafka_bootstrap, topic).returncode == 0
    again = consume_all(kafka_bootstrap, topic + REJECTED_SUFFIX)[-1]
    names = [k for k, _ in again.headers]
    for name in (REASON, DETAIL, SOURCE_OFFSET):
        assert names.count(name) == 1, names
    # and the source it names is the copy's place on the input topic, not the first one's
    assert dict(again.headers)[SOURCE_OFFSET] != dict(first_rejection.headers)[SOURCE_OFFSET]
