"""Smoke test of the real services: bytes go through the Kafka broker and rows into the
PostgreSQL server, as the ledger's integration tests will need them."""

from __future__ import annotations

import uuid

import pytest

from ledger.application import Ledger
from tests.conftest import Files, enrolment, query_store
from tests.services import new_database

pytestmark = pytest.mark.integration


def test_kafka_broker_round_trip(kafka_bootstrap: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=30_000)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        admin.close()
    messages = [(f"00100000000{i}".encode(), f"message {i} — đồng".encode()) for i in range(5)]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush(timeout=30)
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"g-{topic}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=20_000,
    )
    received = []
    for record in consumer:
        received.append((record.key, record.value))
        if len(received) == len(messages):
            break
    consumer.close()
    assert sorted(received) == sorted(messages)


def test_postgresql_server_holds_the_ledger(postgres_server: str, files: Files) -> None:
    url = new_database(postgres_server)
    with Ledger(url) as ledger:
        ledger.enrol(files.enrolments([enrolment("001000000001")]), "maker")
    assert query_store(url, "SELECT personal_id FROM beneficiaries") == [("001000000001",)]
    assert query_store(url, "SELECT COUNT(*) FROM ledger_events")[0][0] >= 2
    version = query_store(url, "SHOW server_version")[0][0]
    assert int(version.split(".")[0]) >= 14
