"""A registry's producer may compress with any codec Kafka offers: registrations sent with
gzip, snappy, lz4 and zstd, each by its own producer onto one topic, all take effect."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from adapters.civil_registry import ensure_topics
from ledger.application import Ledger
from tests.conftest import Files, death, enrolment, query_store
from tests.integration.test_death_consumer import consume_once, v2_bytes

pytestmark = pytest.mark.integration

CODECS = ("gzip", "snappy", "lz4", "zstd")


def test_registrations_in_every_codec_take_effect(kafka_bootstrap: str, tmp_path: Path) -> None:
    from kafka import KafkaProducer

    store = f"sqlite:///{tmp_path / 'store' / 'ledger.sqlite'}"
    people = {codec: f"0030000000{i:02d}" for i, codec in enumerate(CODECS)}
    with Ledger(store) as ledger:
        ledger.enrol(Files(tmp_path).enrolments([enrolment(p) for p in people.values()]), "o")
    topic = f"civil-registry.deaths.test-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    for codec, person in people.items():
        producer = KafkaProducer(
            bootstrap_servers=kafka_bootstrap, acks="all", compression_type=codec
        )
        try:
            row = death(person, registration_number=f"KT-{codec}")
            producer.send(topic, key=person.encode(), value=v2_bytes(row)).get(timeout=30)
        finally:
            producer.close()
    consumed = consume_once(store, kafka_bootstrap, topic)
    assert consumed.returncode == 0, consumed.stderr
    registered = query_store(store, "SELECT personal_id, registration_number FROM deaths")
    assert sorted(registered) == sorted((p, f"KT-{c}") for c, p in people.items())
