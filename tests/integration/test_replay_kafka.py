"""Two copies agree: the read models replayed from Kafka `ledger.events` from offset 0 equal
those replayed from the store, for the whole history and for a cut in the middle of it, and
the command replays Kafka's copy when asked."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from adapters.kafka_projection import recorded_event
from adapters.sql import SQLiteDatabase
from ledger.application import Ledger
from replay.as_of import VIETNAM, Cut, replay_into
from replay.rebuild import differences, kafka_events, merged_partitions
from tests.conftest import Files, death, enrolment, new_store
from tests.integration.test_publish import consume_all, fill, publish_once, published, unique_topic

pytestmark = pytest.mark.integration


def compare(a: Path, b: Path) -> dict[str, list[str]]:
    x, y = SQLiteDatabase(a), SQLiteDatabase(b)
    try:
        return differences(x, y)
    finally:
        x.close()
        y.close()


def test_a_replay_from_kafka_equals_one_from_the_store(
    files: Files, kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = new_store("postgresql", tmp_path, request)
    settings = unique_topic()
    with Ledger(store) as ledger:
        fill(ledger, files)
        middle = ledger.db.query("SELECT MAX(recorded_at) FROM audit_trail")[0][0]
        ledger.import_deaths(files.deaths([death("001000000020")]), "registry")
        ledger.enrol(files.enrolments([enrolment("001000000099")]), "officer")
        assert publish_once(ledger, kafka_bootstrap, settings) > 0
        today = datetime.now(VIETNAM).date()
        whole, cut = Cut.of(today), Cut.of(today, datetime.fromisoformat(middle))
        for name, c in (("whole", whole), ("cut", cut)):
            from_store, from_kafka = (
                tmp_path / f"{name}-store.sqlite",
                tmp_path / f"{name}-kafka.sqlite",
            )
            n_store = replay_into(ledger, from_store, c)
            n_kafka = replay_into(
                ledger, from_kafka, c, events=kafka_events(kafka_bootstrap, settings.name)
            )
            assert n_store == n_kafka > 0
            assert compare(from_store, from_kafka) == {}
            # in parts side by side (replay/parts.py), from either copy: the same tables
            topic = (kafka_bootstrap, settings.name)
            for source, kafka in (("store", None), ("kafka", topic)):
                for jobs in (2, 3):
                    in_parts = tmp_path / f"{name}-{source}-{jobs}.sqlite"
                    assert replay_into(ledger, in_parts, c, kafka=kafka, jobs=jobs) == n_store
                    assert compare(from_store, in_parts) == {}, (source, jobs)
            assert not list(tmp_path.glob(".*.parts"))  # the parts' files are gone
        # the cut left the last two commands out: it is a different picture
        assert compare(tmp_path / "whole-store.sqlite", tmp_path / "cut-store.sqlite") != {}

    env = {**os.environ, "LEDGER_KAFKA": kafka_bootstrap, "LEDGER_EVENTS_TOPIC": settings.name}
    env["LEDGER_READ_TIMEOUT"] = "1"  # nothing keeps these read models from Kafka here
    run = subprocess.run(
        [sys.executable, "-m", "tests.ledger_as_role", "replay", "--as-of", today.isoformat(),
         "--from-kafka", "--jobs", "2", "--out", str(tmp_path / "cli.sqlite"), "--store", store],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"from Kafka {settings.name} replayed" in run.stdout  # the topic it read
    assert compare(tmp_path / "cli.sqlite", tmp_path / "whole-store.sqlite") == {}


def test_partitions_are_merged_as_read_each_event_once_in_order(
    files: Files, kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A publisher that crashed and sent part of the history again: Kafka holds copies. The
    merge gives every stored event once, in notification order, while it reads at most a few
    events ahead in a partition (not fetched until the others catch up)."""
    store = new_store("postgresql", tmp_path, request)
    settings, stored = published(store, files, kafka_bootstrap, 60, resend_from=1 / 3)
    on_topic = consume_all(kafka_bootstrap, settings.name)
    assert len(on_topic) > len(stored)  # copies are there

    # a bound of one byte: a partition is read on only when the others caught up
    merged = list(merged_partitions(kafka_bootstrap, settings.name, ahead_bytes=1))
    assert [n for n, _ in merged] == sorted(stored)
    assert [recorded_event(r).notification_id for _, r in merged] == sorted(stored)
    batches = list(kafka_events(kafka_bootstrap, settings.name, batch=7))
    assert [e.notification_id for b in batches for e in b] == sorted(stored)
    assert max(len(b) for b in batches) == 7


def test_a_slow_reader_is_not_taken_for_a_broker_that_is_down(
    files: Files, kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The time a replay spends applying what it was given is not time waiting for Kafka:
    a consumer slower than the patience between two polls still gets every event, in order,
    while a bound of a few bytes keeps most partitions from being fetched."""
    settings, stored = published(
        new_store("postgresql", tmp_path, request), files, kafka_bootstrap, 30
    )
    given = []
    for n, _ in merged_partitions(kafka_bootstrap, settings.name, ahead_bytes=64, patience=3):
        if not given:
            time.sleep(4)  # longer than the patience, once
        given.append(n)
    assert given == sorted(stored)


def test_a_long_history_over_many_partitions_is_merged_within_its_bound(
    kafka_bootstrap: str,
) -> None:
    """Thousands of records spread unevenly over twelve partitions (a partition far ahead of
    the others in ids, as aggregates publish in bursts), merged with only a few KiB read
    ahead: every id once, in order, and the merge never stalls on the bound."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"ledger.events.test-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=12, replication_factor=1)])
    finally:
        admin.close()
    rng = random.Random(7)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=20)
    count = 20_000
    for n in range(1, count + 1):
        # long runs on one partition, then another: the queues fill unevenly
        partition = (n // 700 + rng.choice((0, 0, 0, 1))) % 12
        producer.send(
            topic, value=bytes(rng.randrange(50, 400)), partition=partition,
            headers=[("notification_id", str(n).encode())],
        )  # fmt: skip
    producer.flush()
    producer.close()
    given = [n for n, _ in merged_partitions(kafka_bootstrap, topic, ahead_bytes=8192)]
    assert given == list(range(1, count + 1))
