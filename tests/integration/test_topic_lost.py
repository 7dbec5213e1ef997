"""`ledger.events` deleted and made again under a running ledger (an operator's mistake, a
cluster rebuilt): the publisher would send only the events after its position to the empty
topic, and a projection worker would wait past its end for ever. Both refuse, in one line,
and say what to do."""

from __future__ import annotations

import time
import uuid

import pytest

from adapters.kafka_log import Publisher, TopicMisconfigured, TopicSettings
from adapters.kafka_projection import ProjectionWorker
from adapters.sql import PostgresDatabase
from ledger.application import Ledger
from tests.conftest import Files, enrolment
from tests.services import new_database

pytestmark = pytest.mark.integration


def delete_and_make_again(bootstrap: str, settings: TopicSettings) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([settings.name])
        deadline = time.monotonic() + 60
        while True:  # deletion finishes in the background
            try:
                topic = NewTopic(
                    settings.name, settings.partitions, 1, topic_configs=settings.configs
                )
                admin.create_topics([topic])
                return
            except TopicAlreadyExistsError:
                assert time.monotonic() < deadline, "the topic was not deleted within 60 s"
                time.sleep(0.5)
    finally:
        admin.close()


def test_a_topic_made_again_is_refused_by_the_publisher_and_the_workers(
    files: Files, postgres_server: str, kafka_bootstrap: str
) -> None:
    url = new_database(postgres_server)
    settings = TopicSettings(f"ledger.events.lost-{uuid.uuid4().hex[:8]}", 3)
    with Ledger(url) as ledger:
        ledger.enrol(files.enrolments([enrolment(f"00700000{i:04d}") for i in range(20)]), "m")
        publisher = Publisher(ledger, kafka_bootstrap, settings)
        try:
            assert publisher.run(once=True) > 0
        finally:
            publisher.close()
        db = PostgresDatabase(url)
        worker = ProjectionWorker(db, kafka_bootstrap, settings, f"g-{uuid.uuid4().hex}")
        try:
            worker.run(once=True)  # the events were applied in-process: their offsets stored
            assert sum(worker.stored_offsets().values()) > 0
        finally:
            worker.close()

        delete_and_make_again(kafka_bootstrap, settings)

        with pytest.raises(TopicMisconfigured, match="does not hold event .* made again"):
            Publisher(ledger, kafka_bootstrap, settings)
        worker = ProjectionWorker(db, kafka_bootstrap, settings, worker.group)
        try:
            with pytest.raises(TopicMisconfigured, match="applied up to offset .* made again"):
                worker.run(once=True)
        finally:
            worker.close()
            db.close()
