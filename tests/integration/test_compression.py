"""Compression as a Kafka engineer uses it: a `ledger.events` topic whose broker recompresses
every batch with zstd (topic-level `compression.type`) replays from Kafka as it does from
the store; and a registry's Avro container file is read in every codec the Avro
specification names (null, deflate, snappy, bzip2, xz, zstandard)."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

import fastavro
import pytest

from adapters import avro
from adapters.civil_registry import SUBJECT, avro_record
from adapters.kafka_log import Publisher, TopicSettings
from ledger.application import Ledger
from ledger.inputs import DeathRow
from replay.as_of import VIETNAM, Cut, replay_into
from replay.rebuild import kafka_events
from tests.conftest import Files, death, enrolment, query_store
from tests.integration.test_publish import fill
from tests.integration.test_replay_kafka import compare

pytestmark = pytest.mark.integration

AVRO_CODECS = ("null", "deflate", "snappy", "bzip2", "xz", "zstandard")


def test_a_topic_compressed_with_zstd_by_the_broker_replays_as_the_store_does(
    ledger: Ledger, files: Files, kafka_bootstrap: str, tmp_path: Path
) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    settings = TopicSettings(name=f"ledger.events.zstd-{uuid.uuid4().hex[:8]}", partitions=3)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    configs = {**settings.configs, "compression.type": "zstd"}
    admin.create_topics([NewTopic(settings.name, 3, 1, topic_configs=configs)])
    admin.close()
    fill(ledger, files)
    publisher = Publisher(ledger, kafka_bootstrap, settings)
    try:
        assert publisher.run(once=True) > 0
    finally:
        publisher.close()
    cut = Cut.of(datetime.now(VIETNAM).date())
    from_store, from_kafka = tmp_path / "store.sqlite", tmp_path / "kafka.sqlite"
    replayed = replay_into(ledger, from_store, cut)
    events = kafka_events(kafka_bootstrap, settings.name)
    assert replay_into(ledger, from_kafka, cut, events=events) == replayed > 0
    assert compare(from_store, from_kafka) == {}


@pytest.mark.parametrize("codec", AVRO_CODECS)
def test_a_container_file_in_every_avro_codec_is_read(
    codec: str, tmp_path: Path, files: Files
) -> None:
    store = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    person = "005000000001"
    with Ledger(store) as ledger:
        ledger.enrol(files.enrolments([enrolment(person)]), "officer")
        path = tmp_path / f"deaths-{codec}.avro"
        row = DeathRow.model_validate(death(person, registration_number=f"KT-{codec}"))
        with path.open("wb") as f:
            fastavro.writer(f, avro.latest(SUBJECT).schema, [avro_record(row)], codec=codec)
        ledger.import_deaths(path, "registry")
    assert query_store(store, "SELECT personal_id FROM deaths") == [(person,)]
