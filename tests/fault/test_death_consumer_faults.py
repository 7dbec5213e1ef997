"""`ledger deaths consume` under faults, against the real broker. Killed with kill -9 at
random points of a stream of registrations and run again, or cut off from its broker while
the broker restarts, the consumer ends with the same death records as a run that was never
interrupted: every message took effect once (no event_id twice), every partition's position
is recorded in the store, and every message it could not apply is on the rejected topic with
the same reason (a repeat allowed, recognised by its source partition and offset).

What each message must do is also worked out here, from the registry contract's rules, so
that the uninterrupted run the faulty ones are compared with is itself checked."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters import avro
from adapters.civil_registry import SUBJECT, avro_record, ensure_topics
from adapters.death_consumer import (
    DETAIL,
    GROUP,
    REASON,
    REJECTED_SUFFIX,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    tracking_name,
)
from ledger.application import Ledger
from ledger.inputs import DeathRow
from tests import services
from tests.conftest import REVOKE, SOURCE, death, events_table, new_store, opened, query_store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 3
ACTOR = "civil-registry-consumer"

Position = tuple[int, int]  # (partition, offset)


# What each registration must do ------------------------------------------------------------


@dataclass
class Person:
    numbers: dict[str, bool] = field(default_factory=dict)  # registration number -> revoked
    in_force: str | None = None
    applied: set[str] = field(default_factory=set)  # event ids


class Rules:
    """The contract's rules for one person's registrations, in the order they were sent: an
    event_id applied before changes nothing; one death in force at a time; a correction or a
    revocation needs a known registration that is not revoked."""

    def __init__(self) -> None:
        self.people: dict[str, Person] = {}

    def decide(self, row: dict[str, Any]) -> str:
        person = self.people.setdefault(row["personal_id"], Person())
        number, kind = row["registration_number"], row["event_type"]
        if row["event_id"] in person.applied:
            return "unchanged"
        if kind == "REGISTERED":
            if person.in_force is not None and person.in_force != number:
                return "rejected:already-registered"
            if number in person.numbers:
                return "rejected:registration-number-taken"
            person.numbers[number] = False
            person.in_force = number
        elif number not in person.numbers:
            return "rejected:unknown-registration"
        elif person.numbers[number]:
            return "rejected:revoked-registration"
        elif kind == "REVOKED":
            person.numbers[number] = True
            if person.in_force == number:
                person.in_force = None
        person.applied.add(row["event_id"])
        return "applied"


@dataclass
class Stream:
    """A seeded stream of messages as a civil registry (and a faulty one) sends them: new
    registrations of distinct people, the same message again, corrections of known
    registration numbers, revocations followed by a registration under a new number, refused
    registrations and about 2% poison. `meaning` maps each message's bytes to its row, or to
    the rejection expected of a message that cannot be read."""

    rng: random.Random
    prefix: str  # 5 digits; personal ids are 12
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    meaning: dict[bytes, dict[str, Any] | str] = field(default_factory=dict)
    rules: Rules = field(default_factory=Rules)
    numbers_given: Counter[str] = field(default_factory=Counter)

    def event_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def row(self, pid: str, **overrides: Any) -> dict[str, Any]:
        return death(
            pid,
            event_id=self.event_id(),
            date_of_death=f"2025-06-{self.rng.randint(1, 28):02d}",
            full_name=f"Người {pid[-5:]}",
            **overrides,
        )

    def number(self, pid: str) -> str:
        self.numbers_given[pid] += 1
        return f"KT-{pid[-7:]}-{self.numbers_given[pid]}"

    def send(self, row: dict[str, Any]) -> None:
        value = avro.encode(SUBJECT, avro_record(DeathRow.model_validate(row)))
        self.meaning[value] = row
        self.messages.append((row["personal_id"].encode(), value))
        self.rules.decide(row)  # keeps the registry's view for the next messages

    def poison(self, key: str, value: bytes, reason: str) -> None:
        self.meaning[value] = f"rejected:{reason}"
        self.messages.append((key.encode(), value))

    def newcomer(self) -> str:
        return f"{self.prefix}{len(self.numbers_given):07d}"

    def add(self, n: int) -> Stream:
        rng = self.rng
        while len(self.messages) < n:
            known = [p for p, s in self.rules.people.items() if s.numbers]
            roll = rng.random()
            if roll < 0.56 or not known:
                pid = self.newcomer()
                self.send(self.row(pid, registration_number=self.number(pid)))
            elif roll < 0.66:  # the very same message again: the same event_id
                readable = [m for m in self.messages[-500:] if isinstance(self.meaning[m[1]], dict)]
                key, value = rng.choice(readable)
                row = self.meaning[value]
                assert isinstance(row, dict)
                self.messages.append((key, value))
                self.rules.decide(row)
            elif roll < 0.80:  # a correction of a number the registry gave
                pid = rng.choice(known)
                number = rng.choice(sorted(self.rules.people[pid].numbers))
                name = f"Con {rng.randint(1, 99)}"
                self.send(self.row(pid, event_type="CORRECTED", registration_number=number))
                self.send(
                    self.row(pid, event_type="CORRECTED", registration_number=number)
                    | {"claimant_name": name}
                )
            elif roll < 0.90:  # revoked, then registered again under a new number
                pid = rng.choice(known)
                person = self.rules.people[pid]
                number = person.in_force or rng.choice(sorted(person.numbers))
                self.send(self.row(pid, registration_number=number) | REVOKE)
                self.send(self.row(pid, registration_number=self.number(pid)))
            elif roll < 0.94:  # a second registration while one is in force
                pid = rng.choice(known)
                self.send(self.row(pid, registration_number=self.number(pid)))
            elif roll < 0.98:  # a correction of a number the registry never gave
                pid = rng.choice(known)
                self.send(
                    self.row(pid, event_type="CORRECTED", registration_number=f"KT-X{rng.random()}")
                )
            else:
                self.add_poison(rng.choice(known))
        return self

    def add_poison(self, pid: str) -> None:
        rng = self.rng
        kind = rng.randrange(3)
        if kind == 0:  # not the wire format at all
            garbage = bytes([1 + rng.randrange(255)]) + rng.randbytes(rng.randint(8, 40))
            self.poison(pid, garbage, "undecodable")
        elif kind == 1:  # a schema id the registry does not hold
            good = avro.encode(SUBJECT, avro_record(DeathRow.model_validate(self.row(pid))))
            wrong = good[:1] + struct.pack(">I", 9000 + rng.randrange(999)) + good[5:]
            self.poison(pid, wrong, "unknown-schema-id")
        else:  # an 11-digit personal id, keyed by it
            record = avro_record(DeathRow.model_validate(self.row(pid)))
            record["personal_id"] = pid[:11]
            self.poison(pid[:11], avro.encode(SUBJECT, record), "invalid-personal-id")


@dataclass
class Expected:
    outcomes: dict[Position, str]  # what each message must do, by its position
    in_force: dict[str, str]  # personal id -> the registration number in force at the end


def expected_of(inputs: list[Any], meaning: dict[bytes, Any]) -> Expected:
    """The rules applied to the messages on the topic, each partition in offset order (one
    person's messages share a partition)."""
    rules = Rules()
    out: dict[Position, str] = {}
    for r in sorted(inputs, key=lambda r: (r.partition, r.offset)):
        m = meaning[r.value]
        out[(r.partition, r.offset)] = m if isinstance(m, str) else rules.decide(m)
    in_force = {p: s.in_force for p, s in rules.people.items() if s.in_force is not None}
    return Expected(out, in_force)


# The broker ----------------------------------------------------------------------------------


def unique_topic() -> str:
    return f"civil-registry.deaths.fault-{uuid.uuid4().hex[:8]}"


def publish(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in messages]
        producer.flush(timeout=120)
        for f in futures:
            f.get(timeout=120)
    finally:
        producer.close(timeout=10)


def read(
    bootstrap: str,
    topic: str,
    start: dict[int, int] | None = None,
    stop: dict[int, int] | None = None,
) -> list[Any]:
    """The records of every partition of a topic from `start` (default: the beginning) to
    `stop` (default: the current end)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        ends = consumer.end_offsets(parts)
        end = {tp: (stop or {}).get(tp.partition, ends[tp]) for tp in parts}
        for tp in parts:
            consumer.seek(tp, (start or {}).get(tp.partition, 0))
        records: list[Any] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in parts):
            assert time.monotonic() < deadline, f"{topic} could not be read back in 60 s"
            for tp, batch in consumer.poll(timeout_ms=1000).items():
                records.extend(r for r in batch if r.offset < end[tp])
        return records
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        return {tp.partition: n for tp, n in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def forget_dead_members(bootstrap: str, topic: str) -> None:
    """What the broker does once a killed consumer's session times out (45 s by default),
    done now: the members of the consumer group that subscribed to `topic` (none of which
    is alive: the test runs one consumer at a time) leave the group."""
    from kafka.admin import KafkaAdminClient, MemberToRemove

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        group = admin.describe_groups([GROUP])[GROUP]
        dead = [
            MemberToRemove(member_id=m["member_id"])
            for m in group["members"]
            if topic in (m.get("member_metadata") or {}).get("topics", [])
        ]
        if dead:
            admin.remove_group_members(GROUP, dead)
    finally:
        admin.close()


# The consumer as operators run it ------------------------------------------------------------


def consume(
    store: str, bootstrap: str, topic: str, log: Path, once: bool = False
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LEDGER_KAFKA": bootstrap,
        "LEDGER_DEATHS_TOPIC": topic,
        "LEDGER_USER": ACTOR,
    }
    Ledger(store, read_models="none").close()  # `ledger init`, once: consume needs a store
    with log.open("ab") as f:  # a file, not a pipe: a chatty client never blocks on it
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.ledger_as_role",
                "deaths",
                "consume",
                *(["--once"] if once else []),
                "--store",
                store,
            ],
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def tail(log: Path) -> str:
    return log.read_text("utf-8", "replace")[-3000:]


def stored_positions(store: str, topic: str) -> dict[int, int]:
    """The positions the store holds for the topic's partitions, read directly with SQL
    (none while the consumer has not created the store's tables yet). Any other error is
    raised: an unreadable store must not pass for an empty one."""
    sql = (
        "SELECT application_name, MAX(notification_id) FROM {table}"
        " WHERE application_name LIKE ? GROUP BY application_name"
    )
    params = (f"{topic}#%",)
    if store.startswith("sqlite:///"):
        path = Path(store[len("sqlite:///") :])
        if not path.exists():
            return {}
        # read-write, as the consumer's next run would open it: it may have to recover the
        # write-ahead log of a killed one, which a read-only connection cannot do
        con = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30)
        try:
            rows = con.execute(sql.format(table="tracking"), params).fetchall()
        except sqlite3.OperationalError as err:
            if "no such table" not in str(err):
                raise
            return {}
        finally:
            con.close()
    else:
        try:
            rows = query_store(store, sql.format(table="ledger_tracking"), params)
        except psycopg.errors.UndefinedTable:
            return {}
    return {int(name.rsplit("#", 1)[1]): int(n) for name, n in rows}


def wait_until(
    condition: Callable[[], bool], seconds: float, what: str | Callable[[], str]
) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"{what if isinstance(what, str) else what()} ({seconds:.0f} s)")
        time.sleep(0.02)
    return time.monotonic() - started


@dataclass
class Timeline:
    first: float  # from the start to the first position recorded
    done: float  # to the last one


def consume_once(
    store: str, bootstrap: str, topic: str, log: Path, ends: dict[int, int]
) -> Timeline:
    """`deaths consume --once` to completion, watching when the store records positions."""
    started = time.monotonic()
    proc = consume(store, bootstrap, topic, log, once=True)
    first = done = None
    try:
        while proc.poll() is None:
            assert time.monotonic() - started < 180, tail(log)
            positions = stored_positions(store, topic)
            now = time.monotonic() - started
            if positions and first is None:
                first = now
            if positions == ends and done is None:
                done = now
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, tail(log)
    end = time.monotonic() - started
    return Timeline(first if first is not None else end, done if done is not None else end)


# What a store ended with ---------------------------------------------------------------------


def death_events(store: str) -> dict[uuid.UUID, list[tuple[int, str, dict[str, Any]]]]:
    """Every DeathRecord event as stored, by record in version order, decoded from the
    events table (the time it was recorded left out: it differs between two runs)."""
    rows = query_store(
        store,
        f"SELECT originator_id, originator_version, topic, state FROM {events_table(store)}"
        " WHERE topic LIKE ?",
        ("%:DeathRecord.%",),
    )
    records: dict[uuid.UUID, list[tuple[int, str, dict[str, Any]]]] = defaultdict(list)
    for originator_id, version, topic, state in rows:
        payload = opened(bytes(state))
        payload.pop("timestamp")
        records[uuid.UUID(str(originator_id))].append(
            (int(version), topic.rsplit(":", 1)[1], payload)
        )
    return {k: sorted(v, key=lambda e: e[0]) for k, v in records.items()}


def applied_positions(
    events: dict[uuid.UUID, list[tuple[int, str, dict[str, Any]]]], topic: str
) -> Counter[Position]:
    """How many times each message took effect, from the sources of the events."""
    applied: Counter[Position] = Counter()
    for record in events.values():
        for _, _, payload in record:
            if "event_id" in payload:  # one registration taking effect
                m = SOURCE.match(payload["source"])
                assert m and m["topic"] == topic, payload["source"]
                applied[(int(m["partition"]), int(m["offset"]))] += 1
    return applied


def rejections(
    records: list[Any], topic: str, inputs: dict[Position, Any]
) -> dict[Position, list[str]]:
    """The reasons sent for each input position (more than one: a repeat), each checked to
    carry the message as received."""
    out: dict[Position, list[str]] = defaultdict(list)
    for r in records:
        headers = {k: v.decode() for k, v in r.headers}
        assert headers[SOURCE_TOPIC] == topic
        position = (int(headers[SOURCE_PARTITION]), int(headers[SOURCE_OFFSET]))
        original = inputs[position]
        assert (r.key, r.value) == (original.key, original.value), position
        assert headers[DETAIL], position
        out[position].append(headers[REASON])
    return dict(out)


def tracked(store: str, topic: str, partitions: list[int]) -> dict[int, int | None]:
    with Ledger(store, read_models="none") as ledger:
        return {p: ledger.tracked_position(tracking_name(topic, p)) for p in partitions}


def read_models(store: str) -> dict[str, list[tuple[Any, ...]]]:
    """The death read models, once a ledger opened on the store has brought them up to every
    stored event (the consumer keeps them on SQLite; on PostgreSQL `ledger project` does, or
    this), without the times the events were recorded."""
    Ledger(store).close()
    return {
        "deaths": sorted(
            query_store(
                store,
                "SELECT personal_id, aggregate_id, registration_number, full_name,"
                " date_of_death, registered_at, registry_office, claimant_personal_id,"
                " claimant_name, claimant_channel, claimant_bank_code,"
                " claimant_account_number, in_force FROM deaths",
            )
        ),
        "death_registration_events": sorted(
            query_store(
                store, "SELECT event_id, aggregate_id, event_type FROM death_registration_events"
            )
        ),
        "audit_trail": sorted(
            query_store(
                store,
                "SELECT aggregate_id, aggregate_version, event_type, actor, source, facts"
                " FROM audit_trail WHERE event_type LIKE ?",
                ("DeathRecord.%",),
            )
        ),
    }


@dataclass
class Outcome:
    events: dict[uuid.UUID, list[tuple[int, str, dict[str, Any]]]]
    applied: Counter[Position]
    rejected: dict[Position, list[str]]
    positions: dict[int, int | None]
    read_models: dict[str, list[tuple[Any, ...]]]


def outcome_of(
    store: str, bootstrap: str, topic: str, inputs: list[Any], rejected: list[Any]
) -> Outcome:
    events = death_events(store)
    by_position = {(r.partition, r.offset): r for r in inputs}
    return Outcome(
        events,
        applied_positions(events, topic),
        rejections(rejected, topic, by_position),
        tracked(store, topic, sorted({r.partition for r in inputs})),
        read_models(store),
    )


def check_against_the_rules(got: Outcome, expect: Expected, ends: dict[int, int]) -> None:
    expected = expect.outcomes
    assert got.positions == ends
    twice = {p: n for p, n in got.applied.items() if n > 1}
    assert not twice, f"messages that took effect more than once: {twice}"
    event_ids = Counter(
        payload["event_id"]
        for record in got.events.values()
        for _, _, payload in record
        if "event_id" in payload
    )
    assert not {e: n for e, n in event_ids.items() if n > 1}, "an event_id applied twice"
    assert set(got.applied) == {p for p, x in expected.items() if x == "applied"}
    assert {p: set(reasons) for p, reasons in got.rejected.items()} == {
        p: {x.removeprefix("rejected:")} for p, x in expected.items() if x.startswith("rejected:")
    }
    in_force = {row[0]: row[2] for row in got.read_models["deaths"] if row[12] == 1}
    assert in_force == expect.in_force


def check_same(got: Outcome, reference: Outcome) -> None:
    """The same death records as the uninterrupted run, event by event; the same positions;
    the same messages rejected for the same reasons (repeats allowed)."""
    assert got.positions == reference.positions
    assert set(got.events) == set(reference.events)
    different = [k for k in reference.events if got.events[k] != reference.events[k]]
    assert not different, (
        f"{len(different)} death records differ, e.g. {reference.events[different[0]]} "
        f"!= {got.events[different[0]]}"
    )
    assert got.applied == reference.applied
    for table, rows in reference.read_models.items():
        assert got.read_models[table] == rows, table
    assert set(got.rejected) == set(reference.rejected)
    for position, reasons in got.rejected.items():
        assert set(reasons) == set(reference.rejected[position]), position


# kill -9 at random points ------------------------------------------------------------------


class Offsets:
    """The end offsets of a topic, asked of the broker as often as needed."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.parts = [
            TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic))
        ]

    def total(self) -> int:
        return sum(self.consumer.end_offsets(self.parts).values())

    def close(self) -> None:
        self.consumer.close()


@dataclass
class Kill:
    how: str
    positions: dict[int, int]  # what the store held just after the kill
    unrecorded_rejections: bool = False  # it had sent rejections it had not recorded


@dataclass
class Kills:
    done: list[Kill] = field(default_factory=list)

    def midway(self, ends: dict[int, int]) -> int:
        """Kills of a consumer that had recorded some positions but not all: the next run
        resumed from the middle of the stream."""
        return sum(1 for k in self.done if k.positions and k.positions != ends)

    def after_rejecting(self) -> int:
        """Kills of a consumer that had sent rejections and recorded nothing yet."""
        return sum(1 for k in self.done if k.unrecorded_rejections)


WAYS = ("recorded", "rejected", "recorded", "time")  # the first kills, in turn


def run_and_kill(
    store: str, bootstrap: str, topic: str, log: Path, rejected: Offsets, way: str, delay: float
) -> str:
    """Start `deaths consume`, kill -9 it the given way; how it went, in words."""
    before = stored_positions(store, topic)
    sent_before = rejected.total()
    started = time.monotonic()
    proc = consume(store, bootstrap, topic, log)
    try:
        if way == "time":
            time.sleep(delay)
            how = f"after {delay:.2f} s"
        elif way == "recorded":
            wait_until(
                lambda: stored_positions(store, topic) != before or proc.poll() is not None,
                60,
                lambda: f"the consumer recorded nothing:\n{tail(log)}",
            )
            time.sleep(delay)
            how = f"{delay:.2f} s after it recorded a batch at {time.monotonic() - started:.2f} s"
        else:
            wait_until(
                lambda: rejected.total() > sent_before or proc.poll() is not None,
                60,
                lambda: f"the consumer rejected nothing:\n{tail(log)}",
            )
            how = f"as it sent rejections at {time.monotonic() - started:.2f} s"
        assert proc.poll() is None, f"the consumer stopped by itself:\n{tail(log)}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return how


def kill_at_random_points(
    store: str,
    bootstrap: str,
    topic: str,
    log: Path,
    reference: Timeline,
    ends: dict[int, int],
    rng: random.Random,
    times: int,
) -> Kills:
    """Start `deaths consume` on the store and kill -9 it, `times` times, each time in one of
    three ways: at a random time within the reference run's span (from starting up to its
    last batch); at a random moment of the batch after the first one the run records; or as
    soon as the broker has taken the rejections of a batch, before the store records it (a
    batch is decided, rejected and recorded in well under a second: a clock alone seldom
    lands inside one). The first kills try each way in turn (the first one as soon as a batch
    is recorded), the others pick one at random."""
    rejected = Offsets(bootstrap, topic + REJECTED_SUFFIX)
    kills = Kills()
    try:
        for i in range(times):
            way = WAYS[i] if i < len(WAYS) else rng.choice(WAYS)
            before = stored_positions(store, topic)
            if before == ends:  # nothing left to cut: any time will do
                way = "time"
            if way == "time":
                delay = rng.uniform(0.3, 1.3) * reference.done
            else:
                delay = 0.0 if i == 0 else rng.uniform(0.0, 0.6)
            sent_before = rejected.total()
            how = run_and_kill(store, bootstrap, topic, log, rejected, way, delay)
            positions = stored_positions(store, topic)
            unrecorded = positions == before and rejected.total() > sent_before
            kills.done.append(Kill(how, positions, unrecorded))
            forget_dead_members(bootstrap, topic)
    finally:
        rejected.close()
    return kills


def test_kill_9_at_random_points_then_rerun_gives_the_uninterrupted_outcome(
    store_kind: str, kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(20250721)
    sent = Stream(random.Random(7), prefix="03107").add(12000)
    topic = unique_topic()
    rejected_topic = topic + REJECTED_SUFFIX
    ensure_topics(kafka_bootstrap, [topic], partitions=PARTITIONS)
    publish(kafka_bootstrap, topic, sent.messages)
    inputs = read(kafka_bootstrap, topic)
    ends = end_offsets(kafka_bootstrap, topic)
    expected = expected_of(inputs, sent.meaning)
    assert len(inputs) == len(sent.messages) == sum(ends.values())
    kinds = Counter(expected.outcomes.values())
    assert kinds["unchanged"] > 100 and kinds["rejected:undecodable"] > 10, kinds

    # the reference: one run, never interrupted, on its own store
    reference_store = new_store(store_kind, tmp_path / "reference", request)
    timeline = consume_once(reference_store, kafka_bootstrap, topic, tmp_path / "ref.log", ends)
    after_reference = end_offsets(kafka_bootstrap, rejected_topic)
    reference = outcome_of(
        reference_store, kafka_bootstrap, topic, inputs, read(kafka_bootstrap, rejected_topic)
    )
    check_against_the_rules(reference, expected, ends)
    assert all(len(r) == 1 for r in reference.rejected.values())  # nothing sent twice

    # the same messages on a fresh store: killed at random points, then run to the end
    store = new_store(store_kind, tmp_path / "killed", request)
    log = tmp_path / "killed.log"
    kills = kill_at_random_points(store, kafka_bootstrap, topic, log, timeline, ends, rng, times=5)
    consume_once(store, kafka_bootstrap, topic, log, ends)

    got = outcome_of(
        store,
        kafka_bootstrap,
        topic,
        inputs,
        read(kafka_bootstrap, rejected_topic, start=after_reference),
    )
    check_against_the_rules(got, expected, ends)
    check_same(got, reference)
    # the kills cut the stream where it matters
    assert len(kills.done) == 5
    assert kills.midway(ends) > 0, f"no kill cut the stream in the middle: {kills}"
    repeats = sum(len(r) - 1 for r in got.rejected.values())
    if kills.after_rejecting():  # sent but not recorded: sent again by the next run
        assert repeats > 0, kills
    print(f"\n{store_kind}: {timeline}, ends {ends}, {repeats} rejections sent again")
    for kill in kills.done:
        print(f"  killed {kill}")


# The broker restarts -------------------------------------------------------------------------


class PrivateBroker:
    """A single-node broker of its own (scripts/services kafka-up), to stop and start."""

    def __init__(self, state: Path) -> None:
        self.port = services.free_ports(4)  # its controller, TLS and SASL_SSL listeners after it
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.env = services.private_services(state, self.port)

    def _services(self, command: str) -> subprocess.CompletedProcess[str]:
        return services.run_services(self.env, command)

    def up(self) -> None:
        done = self._services("kafka-up")
        if done.returncode:
            services.unavailable("a private Kafka broker", done.stderr[-3000:])

    def down(self) -> None:
        done = self._services("kafka-down")
        assert done.returncode == 0, done.stderr


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(tmp_path / "broker")
    try:
        broker.up()
        yield broker
    finally:
        broker.down()


def publish_until_taken(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    """Send again until the broker has taken every message (a message sent twice is a
    duplicate like any other: the same event_id)."""
    from kafka.errors import KafkaError

    deadline = time.monotonic() + 90
    while True:
        try:
            publish(bootstrap, topic, messages)
            return
        except KafkaError:
            assert time.monotonic() < deadline, "the broker did not take the messages in 90 s"
            time.sleep(1)


def test_the_broker_restarting_under_a_running_consumer_loses_and_doubles_nothing(
    private_broker: PrivateBroker,
    postgres_server: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    bootstrap = private_broker.bootstrap
    sent = Stream(random.Random(8), prefix="03208").add(4000)
    first, second = sent.messages[:2000], sent.messages[2000:]
    topic = unique_topic()
    rejected_topic = topic + REJECTED_SUFFIX
    ensure_topics(bootstrap, [topic], partitions=PARTITIONS)

    store = new_store("postgresql", tmp_path, request)
    log = tmp_path / "consumer.log"
    proc = consume(store, bootstrap, topic, log)
    try:
        # the first half arrives while the consumer runs, a few messages at a time
        failures: list[BaseException] = []

        def send_first_half() -> None:
            try:
                for i in range(0, len(first), 100):
                    publish_until_taken(bootstrap, topic, first[i : i + 100])
                    time.sleep(0.1)
            except BaseException as err:  # reported by the test
                failures.append(err)

        sending = threading.Thread(target=send_first_half)
        sending.start()
        wait_until(lambda: bool(stored_positions(store, topic)), 60, "nothing was applied")
        at_stop = stored_positions(store, topic)
        private_broker.down()
        assert proc.poll() is None, tail(log)
        time.sleep(3)
        at_start = stored_positions(store, topic)
        private_broker.up()
        sending.join(timeout=120)
        assert not sending.is_alive() and not failures, failures
        publish_until_taken(bootstrap, topic, second)
        ends = end_offsets(bootstrap, topic)
        wait_until(
            lambda: stored_positions(store, topic) == ends,
            120,
            lambda: f"the consumer did not catch up ({ends}):\n{tail(log)}",
        )
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, tail(log)
        stopped_in = time.monotonic() - stopping
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    inputs = read(bootstrap, topic)
    expected = expected_of(inputs, sent.meaning)
    after_live = end_offsets(bootstrap, rejected_topic)
    got_rejected = read(bootstrap, rejected_topic, stop=after_live)

    reference_store = new_store("postgresql", tmp_path / "reference", request)
    consume_once(reference_store, bootstrap, topic, tmp_path / "ref.log", ends)
    reference = outcome_of(
        reference_store,
        bootstrap,
        topic,
        inputs,
        read(bootstrap, rejected_topic, start=after_live),
    )
    check_against_the_rules(reference, expected, ends)
    got = outcome_of(store, bootstrap, topic, inputs, got_rejected)
    check_against_the_rules(got, expected, ends)
    check_same(got, reference)
    repeats = sum(len(r) - 1 for r in got.rejected.values())
    print(
        f"\npositions when the broker was stopped {at_stop}, while it was down {at_start}, "
        f"at the end {ends}; {repeats} rejections sent again; SIGTERM took {stopped_in:.2f} s"
    )
