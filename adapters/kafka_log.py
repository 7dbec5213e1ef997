"""`ledger.events`: Kafka's immutable, replicated copy of every stored ledger event.

The publisher follows the store's notification log and produces each event in notification
order, keyed by aggregate id (so one aggregate stays in order within its partition), with an
idempotent producer and the notification id in a header. It records how far Kafka has
acknowledged only after a flush, so a kill -9 at any point leaves no gap: at worst the events
after the last recorded position are sent again, and a consumer recognises them by their
notification id.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from adapters import avro, observability, store_identity
from adapters.kafka_client import connection
from ledger.config import settings

SUBJECT = "ledger.events-value"
# where `ledger publish` has got to in the log (made with the store, written by the projector)
PUBLISHER_POSITION = (
    "CREATE TABLE IF NOT EXISTS publisher_position ("
    "topic TEXT PRIMARY KEY, notification_id BIGINT NOT NULL)"
)


class TopicMisconfigured(RuntimeError):
    pass


@dataclass(frozen=True)
class TopicSettings:
    """How a topic of the ledger must be set up: replicated so that one broker lost loses
    nothing, never led by a replica that missed writes, and (`ledger.events` and the rejected
    registrations) kept forever."""

    name: str = "ledger.events"
    partitions: int = 12
    replication_factor: int = 1
    kept_forever: bool = True

    @classmethod
    def from_env(cls) -> TopicSettings:
        config = settings()
        return cls(
            name=config.events_topic,
            partitions=config.events_partitions,
            replication_factor=config.kafka_replication,
        )

    @property
    def configs(self) -> dict[str, str]:
        kept = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
        return {
            **(kept if self.kept_forever else {}),
            "min.insync.replicas": str(min(2, self.replication_factor)),
            "unclean.leader.election.enable": "false",
        }


def caught_up(consumer: Any, positioned: set[Any]) -> bool:
    """Every partition assigned to a consumer is positioned from the database and read to
    the end the broker has now."""
    assigned = list(consumer.assignment())
    if not assigned or set(assigned) - positioned:
        return False
    ends = consumer.end_offsets(assigned)
    return all(consumer.position(tp) >= ends[tp] for tp in assigned)


def ensure_topic(bootstrap: str, settings: TopicSettings) -> int:
    """Create the topic if it is missing; refuse to run on one set up otherwise. How many
    partitions it has."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(**connection(bootstrap), request_timeout_ms=30_000)
    try:
        brokers = len(admin.describe_cluster()["brokers"])
        if settings.replication_factor > brokers:
            raise TopicMisconfigured(
                f"topic {settings.name}: {settings.replication_factor} replicas asked for "
                f"(LEDGER_KAFKA_REPLICATION) on a cluster of {brokers} broker(s)"
            )
        if settings.name not in admin.list_topics():
            # another process may create it a moment before us: then check it as any other
            with contextlib.suppress(TopicAlreadyExistsError):
                topic = NewTopic(
                    settings.name,
                    settings.partitions,
                    settings.replication_factor,
                    topic_configs=settings.configs,
                )
                admin.create_topics([topic])
        described = admin.describe_topics([settings.name])[0]
        # a topic created a moment ago may not have its partitions in the metadata yet
        for _ in range(20):
            if described["partitions"]:
                break
            time.sleep(0.25)
            described = admin.describe_topics([settings.name])[0]
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, settings.name)])[
            "topic"
        ][settings.name]
    finally:
        admin.close()
    replicas = min((len(p["replica_nodes"]) for p in described["partitions"]), default=0)
    problems = topic_problems(settings, found, replicas, brokers)
    if not described["partitions"]:
        problems.append("it has no partitions")
    if problems:
        raise TopicMisconfigured(
            f"topic {settings.name} cannot hold the ledger's records: "
            + "; ".join(problems)
            + " (a topic's settings are changed with the broker's kafka-configs tool: --alter "
            f"--entity-type topics --entity-name {settings.name} --add-config KEY=VALUE)"
        )
    return len(described["partitions"])


def topic_problems(
    settings: TopicSettings, found: dict[str, Any], replicas: int, brokers: int
) -> list[str]:
    """What is wrong with a topic's configuration and replicas (a phrase each)."""
    problems = []
    broker_defaults = {
        "cleanup.policy": "delete",
        "retention.bytes": "-1",
        "unclean.leader.election.enable": "false",
        "min.insync.replicas": "1",
    }
    wanted = settings.configs
    for key in ("retention.ms", "retention.bytes", "cleanup.policy"):
        if key in wanted:
            value = found.get(key, {}).get("value", broker_defaults.get(key))
            if value != wanted[key]:
                problems.append(f"{key} is {value or 'the broker default'}, must be {wanted[key]}")
    unclean = found.get("unclean.leader.election.enable", {}).get("value", "false")
    if str(unclean).lower() != "false":
        problems.append(
            "unclean.leader.election.enable is true: a replica that missed writes could lead "
            "and lose them; must be false"
        )
    insync = int(found.get("min.insync.replicas", {}).get("value") or 1)
    if insync < int(wanted["min.insync.replicas"]):
        problems.append(
            f"min.insync.replicas is {insync}, must be at least {wanted['min.insync.replicas']} "
            f"with {settings.replication_factor} replicas"
        )
    if replicas < settings.replication_factor:
        problems.append(f"replication factor {replicas}, expected {settings.replication_factor}")
    if replicas < min(3, brokers):
        problems.append(
            f"{replicas} replica(s) on a cluster of {brokers} brokers: one broker lost would "
            f"lose records; give it {min(3, brokers)} (LEDGER_KAFKA_REPLICATION)"
        )
    return problems


def event_record(notification: Any, state: dict[str, Any], chain_hash: str | None) -> dict:
    """A stored event as the LedgerEvent Avro record."""
    payload = dict(state)
    recorded_at: datetime = payload.pop("timestamp")
    return {
        "notification_id": notification.id,
        "aggregate_id": str(notification.originator_id),
        "aggregate_version": notification.originator_version,
        "event_type": notification.topic.rsplit(":", 1)[1],
        "recorded_at": recorded_at,
        "payload": payload_text(payload),
        "chain_hash": chain_hash,
    }


def payload_text(payload: dict[str, Any]) -> str:
    """The payload as compact JSON, UTF-8 as it is: orjson's bytes, which are the standard
    library's for what events hold (text, integers, lists, objects, null), written about ten
    times faster; the standard library's for what orjson refuses (an integer past 64 bits)."""
    try:
        return orjson.dumps(payload).decode()
    except orjson.JSONEncodeError:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


class TopicOfAnotherStore(TopicMisconfigured):
    """The topic holds events published from another store."""


def partition_of(key: bytes, partitions: int) -> int:
    """Where a key goes: the Java client's default partitioner (murmur2 of the key's bytes),
    as every client of these topics must place it; given explicitly, so that the publisher
    knows which partition each event went to."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Tail:
    """The last message of a partition of ledger.events: whose store, which notification."""

    partition: int
    offset: int
    store_id: str | None
    notification_id: int
    chain_hash: str | None


def header(record: Any, name: str) -> str | None:
    """A header's value as text; the last one when a header is repeated."""
    found = [value for key, value in (record.headers or []) if key == name]
    return found[-1].decode("utf-8", "replace") if found else None


def tails(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Tail]:
    """The last message of every partition of the topic that has one."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**connection(bootstrap), enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        firsts = consumer.beginning_offsets(partitions)
        wanted = {tp: ends[tp] - 1 for tp in partitions if ends[tp] > firsts[tp]}
        for tp, offset in wanted.items():
            consumer.seek(tp, offset)
        consumer.pause(*(tp for tp in partitions if tp not in wanted))
        found: dict[Any, Any] = {}
        deadline = time.monotonic() + timeout
        while len(found) < len(wanted):
            if time.monotonic() > deadline:
                raise TopicMisconfigured(
                    f"topic {topic}: the last message of each partition could not be read "
                    f"within {timeout:.0f} s: is the broker reachable?"
                )
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    if r.offset >= wanted[tp]:
                        found[tp] = r
                        consumer.pause(tp)
    finally:
        consumer.close()
    return [tail_of(r) for r in found.values()]


def tail_of(record: Any) -> Tail:
    notification = header(record, "notification_id")
    try:
        chain_hash = avro.decode(SUBJECT, record.value).get("chain_hash")
    except avro.UndecodableMessage:
        chain_hash = None
    return Tail(
        partition=record.partition,
        offset=record.offset,
        store_id=header(record, store_identity.HEADER),
        notification_id=int(notification) if notification and notification.isdigit() else -1,
        chain_hash=chain_hash,
    )


def check_store(topic: str, found: list[Tail], mine: str, link_at: Callable[[int], Any]) -> None:
    """Refuse a topic whose messages were published from another store. A message of an
    earlier version, which carried no store id, is this store's when its chain link is the
    one this store holds at its notification id."""
    for tail in found:
        if tail.store_id == mine:
            continue
        if (
            tail.store_id is None
            and tail.chain_hash
            and link_at(tail.notification_id) == (tail.chain_hash)
        ):
            continue
        raise another_store(topic, tail.store_id, tail.partition, tail.offset, mine)


def another_store(
    topic: str, theirs: str | None, partition: int, offset: int, mine: str
) -> TopicOfAnotherStore:
    """The refusal of a topic holding another store's message, naming both stores."""
    whose = f"store {theirs}" if theirs else "a store that is not this one"
    return TopicOfAnotherStore(
        f"topic {topic} holds the events of {whose} (partition {partition}, offset {offset}); "
        f"this is store {mine}: give each store a topic of its own (LEDGER_EVENTS_TOPIC)"
    )


class Publisher:
    """Produces the ledger's notification log to Kafka, from where it last got to."""

    BATCH = 1000
    ACK_TIMEOUT = 120.0  # seconds to wait for the brokers before giving up (and stopping)

    def __init__(
        self,
        ledger: Any,
        bootstrap: str,
        settings: TopicSettings | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        from kafka import KafkaProducer

        self.ledger = ledger
        self.settings = settings or TopicSettings.from_env()
        self.partitions = ensure_topic(bootstrap, self.settings)
        self.store_id = store_identity.store_id(ledger.db)
        self.progress = progress or (lambda sent: None)
        self.beat: Callable[[], None] = lambda: None  # the process's loop came round
        # What a publisher killed after Kafka took its messages, but before it recorded its
        # position, sent already: each partition's last message names its notification, and
        # the events of that partition up to it are there (one producer sends in order).
        found = tails(bootstrap, self.settings.name)
        check_store(self.settings.name, found, self.store_id, ledger.events.link_at)
        self.on_topic = {t.partition: t.notification_id for t in found}
        self._check_nothing_lost()
        self.producer = KafkaProducer(
            **connection(bootstrap),
            enable_idempotence=True,  # no duplicate or reordering from the producer's retries
            acks="all",
            linger_ms=5,
            # gzip (kafka-python's level 9) compresses a list's lines at about 7 MB/s, lz4 at 700
            compression_type="lz4",
            max_request_size=16 * 1024 * 1024,
        )

    def _check_nothing_lost(self) -> None:
        """The last event Kafka acknowledged is still on the topic: one deleted and made
        again would otherwise get the events from the position on, and never those before."""
        position = self.position()
        if not position:
            return
        notes = self.ledger.app.recorder.select_notifications(start=position, limit=1)
        if not notes or notes[0].id != position:
            return  # not this store's position (checked elsewhere)
        partition = partition_of(str(notes[0].originator_id).encode(), self.partitions)
        if self.on_topic.get(partition, 0) < position:
            raise TopicMisconfigured(
                f"topic {self.settings.name} does not hold event {position:,}, which the "
                f"brokers acknowledged before (its partition {partition} ends at notification "
                f"{self.on_topic.get(partition, 0):,}): it was deleted and made again, or lost "
                "records; nothing was sent: publish the store to a new topic "
                "(LEDGER_EVENTS_TOPIC), which begins with the first event"
            )

    def position(self) -> int:
        rows = self.ledger.db.query(
            "SELECT notification_id FROM publisher_position WHERE topic = ?",
            (self.settings.name,),
        )
        return int(rows[0][0]) if rows else 0

    def _record_position(self, notification_id: int) -> None:
        with self.ledger.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO publisher_position (topic, notification_id) VALUES (?, ?)"
                " ON CONFLICT (topic) DO UPDATE SET notification_id = excluded.notification_id",
                (self.settings.name, notification_id),
            )

    def publish_available(self) -> int:
        """Send every event recorded after the position; returns how many were sent."""
        app = self.ledger.app
        sent = 0
        position = self.position()
        headers = [(store_identity.HEADER, self.store_id.encode())]
        while True:
            notes = app.recorder.select_notifications(
                start=position,
                limit=self.ledger.events.batch_within_bytes(position, self.BATCH),
                inclusive_of_start=False,
            )
            if not notes:
                observability.LAST_PUBLISHED.labels(self.settings.name).set(position)
                observability.set_lag("publish", self.settings.name, {0: 0})
                return sent
            started = time.perf_counter()
            chain = dict(
                self.ledger.db.query(
                    "SELECT notification_id, chain_hash FROM event_chain"
                    " WHERE notification_id >= ? AND notification_id <= ?",
                    (notes[0].id, notes[-1].id),
                )
            )
            futures = []
            for n in notes:
                key = str(n.originator_id).encode()
                partition = partition_of(key, self.partitions)
                if n.id <= self.on_topic.get(partition, 0):
                    continue  # on the topic already, sent before a kill
                state = app.mapper.transcoder.decode_stored(n.state)  # sealed, as stored
                value = avro.encode(SUBJECT, event_record(n, state, chain.get(n.id)))
                futures.append(
                    self.producer.send(
                        self.settings.name,
                        key=key,
                        value=value,
                        partition=partition,
                        headers=[("notification_id", str(n.id).encode()), *headers],
                    )
                )
            self.producer.flush(timeout=self.ACK_TIMEOUT)
            for future in futures:  # flush does not raise: each send is checked, or we stop
                future.get(timeout=self.ACK_TIMEOUT)  # raises KafkaError: nothing recorded
            # everything up to here is acknowledged by the brokers, before the position says so
            position = notes[-1].id
            self._record_position(position)
            sent += len(futures)
            observability.PUBLISHED.labels(self.settings.name).inc(len(futures))
            observability.LAST_PUBLISHED.labels(self.settings.name).set(position)
            observability.BATCH.labels("publish").observe(time.perf_counter() - started)
            latest = self.ledger.events.latest_notification_id()
            observability.set_lag("publish", self.settings.name, {0: latest - position})
            self.progress(sent)
            self.beat()

    def run(self, once: bool = False, poll_seconds: float = 0.5) -> int:
        sent = 0
        while True:
            self.beat()
            sent += self.publish_available()
            if once:
                return sent
            time.sleep(poll_seconds)

    def close(self) -> None:
        # a broker gone: not a wait for ever on the way out (what was not acknowledged is
        # not in the recorded position, and is sent again)
        self.producer.close(timeout=10)
