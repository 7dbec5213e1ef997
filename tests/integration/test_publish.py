"""`ledger publish` against the real broker: every stored event on the topic, in order, keyed
by aggregate; a kill -9 at any point leaves no gap; a topic that would not keep the events
forever is refused."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from adapters import avro
from adapters.kafka_log import Publisher, TopicMisconfigured, TopicSettings
from ledger.application import Ledger
from replay.rebuild import whole_topic
from tests.conftest import Files, death, enrolment, query_store

pytestmark = pytest.mark.integration


def unique_topic() -> TopicSettings:
    return TopicSettings(name=f"ledger.events.test-{uuid.uuid4().hex[:8]}", partitions=3)


def publish_once(ledger: Ledger, bootstrap: str, settings: TopicSettings) -> int:
    """Everything the store holds and the topic does not, sent: how many events."""
    publisher = Publisher(ledger, bootstrap, settings)
    try:
        return publisher.run(once=True)
    finally:
        publisher.close()


def consume_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of a topic, from offset 0 to its end."""
    return list(whole_topic(bootstrap, topic))


def fill(ledger: Ledger, files: Files, people: int = 30) -> None:
    ids = [f"0010000{i:05d}" for i in range(people)]
    ledger.enrol(files.enrolments([enrolment(pid) for pid in ids]), "maker")
    ledger.import_deaths(
        files.deaths(
            [
                death(ids[0]),
                death(ids[1], claimant_name="")
                | {"claimant_personal_id": "", "claimant_channel": ""},
            ]
        ),
        "registry",
    )
    ledger.run_payroll("2025-07", None, "maker")
    ledger.approve_payroll("2025-07", None, "checker")


def published(
    store: str, files: Files, bootstrap: str, people: int, resend_from: float | None = None
) -> tuple[TopicSettings, list[int]]:
    """A store filled and published to a topic of its own; with `resend_from`, the publisher
    then sends again from that fraction of the history on, as after a crash. The topic and
    the stored notification ids."""
    settings = unique_topic()
    with Ledger(store) as ledger:
        fill(ledger, files, people=people)
        stored = [n for (n,) in ledger.db.query("SELECT notification_id FROM audit_trail")]
        publisher = Publisher(ledger, bootstrap, settings)
        try:
            assert publisher.run(once=True) == len(stored)
            if resend_from is not None:
                publisher._record_position(sorted(stored)[int(len(stored) * resend_from)])
                assert publisher.run(once=True) > 0
        finally:
            publisher.close()
    return settings, stored


def test_every_stored_event_is_on_the_topic_in_order(
    ledger: Ledger, files: Files, store_url: str, kafka_bootstrap: str
) -> None:
    fill(ledger, files)
    settings = unique_topic()
    publisher = Publisher(ledger, kafka_bootstrap, settings)
    try:
        sent = publisher.run(once=True)
        assert publisher.run(once=True) == 0  # caught up: nothing sent twice
    finally:
        publisher.close()
    trail = dict(query_store(store_url, "SELECT notification_id, event_type FROM audit_trail"))
    chain = dict(query_store(store_url, "SELECT notification_id, chain_hash FROM event_chain"))
    aggregates = dict(
        query_store(store_url, "SELECT notification_id, aggregate_id FROM audit_trail")
    )
    assert sent == len(trail)

    records = consume_all(kafka_bootstrap, settings.name)
    events = [avro.decode("ledger.events-value", r.value) for r in records]
    assert sorted(e["notification_id"] for e in events) == sorted(trail)  # each once, no gap
    last_in_partition: dict[int, int] = {}
    for record, event in zip(records, events, strict=True):
        n = event["notification_id"]
        assert record.key.decode() == str(event["aggregate_id"]) == aggregates[n]
        assert dict(record.headers)["notification_id"] == str(n).encode()
        assert event["event_type"] == trail[n]
        assert event["chain_hash"] == chain[n]
        assert n > last_in_partition.get(record.partition, 0)  # notification order kept
        last_in_partition[record.partition] = n
    enrolled = [e for e in events if e["event_type"] == "Beneficiary.Enrolled"]
    assert {json.loads(e["payload"])["personal_id"] for e in enrolled} == {
        f"0010000{i:05d}" for i in range(30)
    }


def test_a_killed_publisher_leaves_no_gap(
    tmp_path: Path, files: Files, kafka_bootstrap: str
) -> None:
    store = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger(store) as ledger:
        fill(ledger, files, people=8000)
        total = ledger.db.query("SELECT COUNT(*) FROM audit_trail")[0][0]
    settings = unique_topic()
    env = {
        **__import__("os").environ,
        "LEDGER_KAFKA": kafka_bootstrap,
        "LEDGER_EVENTS_TOPIC": settings.name,
        "LEDGER_EVENTS_PARTITIONS": "3",
    }
    command = [sys.executable, "-m", "tests.ledger_as_role", "publish", "--once", "--store", store]
    # how long a whole run takes, on a copy of the store and another topic
    trial = tmp_path / "trial.sqlite"
    shutil.copy(tmp_path / "ledger.sqlite", trial)
    started = time.monotonic()
    subprocess.run(
        [*command[:-1], f"sqlite:///{trial}"],
        check=True,
        capture_output=True,
        env={**env, "LEDGER_EVENTS_TOPIC": f"{settings.name}-trial"},
    )
    duration = time.monotonic() - started
    rng = random.Random(3)
    killed = 0
    for _ in range(4):
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.4, 0.9) * duration)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert killed >= 1, "no run was cut short: make the data set larger"

    # each run begins where the last message of each partition says: every event once
    sent = [
        avro.decode("ledger.events-value", record.value)["notification_id"]
        for record in consume_all(kafka_bootstrap, settings.name)
    ]
    assert sorted(sent) == list(range(1, total + 1))


def test_a_publisher_that_lost_its_position_sends_nothing_twice(
    ledger: Ledger, files: Files, kafka_bootstrap: str
) -> None:
    """Killed after the brokers took its messages and before it recorded how far it got:
    started again, it finds them on the topic and sends only what is not there."""
    fill(ledger, files)
    settings = unique_topic()
    assert (sent := publish_once(ledger, kafka_bootstrap, settings)) > 0
    ledger.enrol(files.enrolments([enrolment("001000099999")]), "maker")
    with ledger.db.transaction() as cursor:
        cursor.execute("UPDATE publisher_position SET notification_id = 0")
    assert publish_once(ledger, kafka_bootstrap, settings) == 1  # the one new event
    records = consume_all(kafka_bootstrap, settings.name)
    ids = [avro.decode("ledger.events-value", r.value)["notification_id"] for r in records]
    assert sorted(ids) == list(range(1, sent + 2))
    store = ledger.db.query("SELECT store_id FROM store_identity")[0][0]
    assert {dict(r.headers)["ledger.store_id"] for r in records} == {store.encode()}


def test_a_topic_that_does_not_keep_events_forever_is_refused(
    ledger: Ledger, kafka_bootstrap: str
) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    name = f"ledger.events.short-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(name, 1, 1, topic_configs={"retention.ms": "86400000"})])
    admin.close()
    with pytest.raises(TopicMisconfigured, match="retention.ms is 86400000, must be -1"):
        Publisher(ledger, kafka_bootstrap, TopicSettings(name=name, partitions=1))
