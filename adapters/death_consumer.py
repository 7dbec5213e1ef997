"""`ledger deaths consume`: death registrations from civil registries, each taking effect on
the ledger exactly once, and every message that cannot take effect rejected where people see it.

For each poll, partition by partition:
1. every message is decoded (Avro, any registered version) and validated like a file's row;
   one that cannot be read or is invalid gets a reason;
2. the ledger decides what the others do to the death records, in offset order; a refused
   one (a correction of an unknown registration, a second registration in force...) gets a
   reason too;
3. every message with a reason goes to `civil-registry.deaths.rejected` (its key, bytes and
   headers as received, plus headers naming the reason and where it came from), and the broker
   confirms each one;
4. the new events are saved together with the partition's next offset, an `eventsourcing`
   tracking record, in one transaction; the store refuses a position it already holds.

A crash before 4 leaves the store as it was: the messages are read again from the stored
offset, decided again the same way, and their rejections sent again (the rejected topic is
at-least-once: a reader recognises a repeat by `ledger.source.partition` and
`ledger.source.offset`). A crash after 4 resumes after the stored offset. Kafka's committed
offsets are written too, for monitoring only: the store is the truth.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError, Tracking
from kafka.errors import KafkaError

from adapters import avro, logs, observability
from adapters.civil_registry import SUBJECT, TOPIC, ensure_topics, row_fields
from adapters.kafka_client import UNREADABLE, connection, unreadable
from adapters.kafka_log import caught_up
from ledger.application import APPLIED, REFUSED, UNCHANGED, Ledger
from ledger.inputs import DeathRow, validate_each
from ledger.rules import RuleViolation
from ledger.service_layer.deaths import Registration

GROUP = "ledger-deaths"  # LEDGER_DEATHS_GROUP: one group per store that consumes the topic

# what a long-running consumer waits out rather than dies of
OUTAGES: tuple[type[Exception], ...] = (
    KafkaError,
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    sqlite3.OperationalError,
)
REJECTED_SUFFIX = ".rejected"
PROCESS = "deaths-consume"  # the metrics' and the logs' name of this process

# headers added to a rejected message; the received ones are kept before them
REASON = "ledger.rejected.reason"
DETAIL = "ledger.rejected.detail"
SOURCE_TOPIC = "ledger.source.topic"
SOURCE_PARTITION = "ledger.source.partition"
SOURCE_OFFSET = "ledger.source.offset"
OUR_HEADERS = ("ledger.rejected.", "ledger.source.")


@dataclass(frozen=True)
class Rejection:
    reason: str  # a code: undecodable, unknown-schema-id, invalid-field, ...
    detail: str  # the sentence for people


def tracking_name(topic: str, partition: int) -> str:
    """Whose position a tracking record holds: one per topic-partition, whatever the group,
    since what matters is what this store has applied."""
    return f"{topic}#{partition}"


def where(record: Any) -> str:
    return f"{record.topic} partition {record.partition} offset {record.offset}"


def registration_of(
    record: Any, now: datetime | None = None
) -> tuple[DeathRow, str, str | None] | Rejection:
    """A message as a validated registration with its source for the audit trail, or why
    it cannot be one, with the registry system that sent it when the message names it. `now`:
    the ledger's clock, for the dates that may not be in the future."""
    return registrations_of([record], now)[0]


def registrations_of(
    records: Sequence[Any], now: datetime | None = None
) -> list[tuple[DeathRow, str, str | None] | Rejection]:
    """What registration_of gives each message, the messages' fields checked together."""
    values = [_decoded(record) for record in records]
    fields = [row_fields(v) for v in values if not isinstance(v, Rejection)]
    checked = iter(validate_each(DeathRow, fields, now))
    return [
        v if isinstance(v, Rejection) else _registration(record, v, next(checked))
        for record, v in zip(records, values, strict=True)
    ]


def _decoded(record: Any) -> dict[str, Any] | Rejection:
    try:
        return avro.decode(SUBJECT, record.value or b"")
    except avro.UndecodableMessage as err:
        return Rejection(err.reason, str(err))


def _registration(
    record: Any, value: dict[str, Any], result: DeathRow | list[tuple[str, str]]
) -> tuple[DeathRow, str, str | None] | Rejection:
    if isinstance(result, list):
        fields = [f for f, _ in result]
        reason = "invalid-personal-id" if "personal_id" in fields else "invalid-field"
        return Rejection(reason, "; ".join(f"{f}: {m}" for f, m in result))
    key = record.key.decode("utf-8", "replace") if record.key is not None else None
    if key != result.personal_id:
        # the key decides the partition, and so the order of one person's registrations
        return Rejection(
            "wrong-key",
            f"key: must be the personal id {result.personal_id} (messages of one person "
            f"must share a partition to keep their order), got {key!r}",
        )
    system = value.get("registry_system")  # from version 2 on
    return result, f"{where(record)} ({system})" if system else where(record), system or None


@dataclass
class Tally:
    """What the consumer did, for the operator's table."""

    applied: int = 0
    unchanged: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    next_offsets: dict[int, int] = field(default_factory=dict)

    @property
    def messages(self) -> int:
        return self.applied + self.unchanged + sum(self.rejected.values())


class DeathRegistrationConsumer:
    def __init__(
        self,
        ledger: Ledger,
        bootstrap: str,
        actor: str,
        topic: str = TOPIC,
        group: str = GROUP,
        max_records: int = 5000,
        progress: Callable[[Tally], None] | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        self.ledger = ledger
        self.actor = actor
        self.topic = topic
        self.rejected_topic = topic + REJECTED_SUFFIX
        self.group = group
        self.progress = progress or (lambda tally: None)
        self.notice = notice or (lambda text: None)
        self.tally = Tally()
        self.beat: Callable[[], None] = lambda: None  # the process's loop came round
        ensure_topics(bootstrap, [self.topic, self.rejected_topic])
        self.consumer = KafkaConsumer(
            **connection(bootstrap),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_records,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            # a consumer killed without leaving its group holds its partitions this long
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
        )
        self.consumer.subscribe([self.topic])
        self.producer = KafkaProducer(
            **connection(bootstrap), acks="all", enable_idempotence=True, linger_ms=5
        )
        self.positioned: set[Any] = set()
        self.next_offsets: dict[Any, int] = {}

    # Where to read from: the store says

    def _position_new_partitions(self) -> bool:
        """After any change of assignment (or a failed save), seek every assigned partition
        to the position the store holds, and drop what the poll fetched. Done after a poll,
        never inside the rebalance callback."""
        assigned = set(self.consumer.assignment())
        if assigned == self.positioned:
            return False
        first = self.consumer.beginning_offsets(list(assigned)) if assigned else {}
        ends = self.consumer.end_offsets(list(assigned)) if assigned else {}
        for tp in assigned:
            stored = self.ledger.tracked_position(tracking_name(tp.topic, tp.partition))
            if stored is None:  # this store's first read of the partition
                stored = first[tp]
                if stored:
                    self.notice(
                        f"{tp.topic} partition {tp.partition}: starting at offset {stored:,}, "
                        "the oldest Kafka still holds (earlier messages have expired)"
                    )
            if not first[tp] <= stored <= ends[tp]:
                # the log no longer holds the stored position: messages would be skipped
                raise RuleViolation(
                    f"{tp.topic} partition {tp.partition}: the store has applied up to offset "
                    f"{stored:,}, but Kafka holds offsets {first[tp]:,} to {ends[tp]:,} (the "
                    "topic was recreated, or messages expired before they were applied); "
                    "nothing was applied: find the missing registrations before going on"
                )
            self.consumer.seek(tp, stored)
            self.next_offsets[tp] = stored
        self.positioned = assigned
        return True

    def reposition(self) -> None:
        self.positioned = set()

    # One poll

    def poll_once(self, timeout_ms: int = 1000) -> int:
        """Handle one poll's messages; returns how many were handled."""
        batch = self.consumer.poll(timeout_ms=timeout_ms)
        if self._position_new_partitions():
            return 0  # fetched again, from where the store says
        observability.note_lag(PROCESS, self.topic, self.consumer)
        handled = 0
        started = time.perf_counter()
        for tp, records in batch.items():
            start = self.next_offsets.get(tp, 0)
            records = [r for r in records if r.offset >= start]
            if records:
                try:
                    handled += self._handle(tp, records)
                except IntegrityError:
                    # another consumer recorded this position first, or a `deaths import`
                    # changed one of these records: read again from the store's position
                    self.reposition()
                    return handled
        if handled:
            observability.BATCH.labels(PROCESS).observe(time.perf_counter() - started)
            with contextlib.suppress(Exception):  # monitoring only
                self.consumer.commit_async()
            self.progress(self.tally)
        return handled

    def _handle(self, tp: Any, records: Sequence[Any]) -> int:
        rejections: list[tuple[Any, Rejection]] = []
        registrations: list[Registration] = []
        registered: list[Any] = []
        now = self.ledger.clock.now()
        for record, got in zip(records, registrations_of(records, now), strict=True):
            if isinstance(got, Rejection):
                rejections.append((record, got))
            else:
                row, source, system = got
                registrations.append(Registration(source, where(record), row, system))
                registered.append(record)
        decision = self.ledger.decide_death_registrations(registrations, self.actor)
        outcomes = Counter(o.outcome for o in decision.outcomes)
        for record, outcome in zip(registered, decision.outcomes, strict=True):
            if outcome.outcome == REFUSED:
                rejections.append((record, Rejection(outcome.reason, outcome.detail)))
        rejections.sort(key=lambda r: r[0].offset)
        self._reject(rejections)
        next_offset = records[-1].offset + 1
        self.ledger.record_death_registrations(
            decision, Tracking(tracking_name(tp.topic, tp.partition), next_offset)
        )
        self.next_offsets[tp] = next_offset
        self.tally.applied += outcomes[APPLIED]
        self.tally.unchanged += outcomes[UNCHANGED]
        self.tally.rejected.update(r.reason for _, r in rejections)
        self.tally.next_offsets[tp.partition] = next_offset
        self._count(tp, records, outcomes, rejections)
        return len(records)

    def _count(
        self,
        tp: Any,
        records: Sequence[Any],
        outcomes: Counter[str],
        rejections: Sequence[tuple[Any, Rejection]],
    ) -> None:
        """The metrics and the log of what was recorded (never a message's content: its
        place on the topic and the reason)."""
        topic = tp.topic
        observability.CONSUMED.labels(PROCESS, topic).inc(len(records))
        observability.APPLIED.labels(PROCESS, topic).inc(outcomes[APPLIED])
        observability.UNCHANGED.labels(PROCESS, topic).inc(outcomes[UNCHANGED])
        for record, rejection in rejections:
            observability.REJECTED.labels(PROCESS, topic, rejection.reason).inc()
            logs.log().warning(
                "a death registration was rejected and put on the rejected topic",
                extra={
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "reason": rejection.reason,
                },
            )

    def _reject(self, rejections: Sequence[tuple[Any, Rejection]]) -> None:
        """Send every rejection and wait until the broker has each: only then may the
        position move past them."""
        futures = []
        for record, rejection in rejections:
            headers = [
                # a message copied back from the rejected topic keeps one set of them: ours
                *((k, v) for k, v in record.headers or [] if not k.startswith(OUR_HEADERS)),
                (REASON, rejection.reason.encode()),
                (DETAIL, rejection.detail.encode()),
                (SOURCE_TOPIC, record.topic.encode()),
                (SOURCE_PARTITION, str(record.partition).encode()),
                (SOURCE_OFFSET, str(record.offset).encode()),
            ]
            futures.append(
                self.producer.send(
                    self.rejected_topic, key=record.key, value=record.value, headers=headers
                )
            )
        self.producer.flush()
        for future in futures:
            future.get(timeout=60)  # raises if the broker did not take it

    # Running

    @property
    def unassigned(self) -> list[int]:
        """Partitions of the topic that another consumer of the group holds."""
        every = self.consumer.partitions_for_topic(self.topic) or set()
        mine = {tp.partition for tp in self.consumer.assignment()}
        return sorted(every - mine)

    def caught_up(self) -> bool:
        return caught_up(self.consumer, self.positioned)

    def run(
        self,
        once: bool = False,
        idle_polls: int = 2,
        assignment_timeout: float = 60.0,
        outage_timeout: float = 120.0,
    ) -> Tally:
        """Consume until stopped; with `once`, until every assigned partition is read to its
        end. Outages of the broker or the store are waited out (with `once`, for at most
        `outage_timeout` seconds): nothing is recorded until the broker has confirmed every
        rejection."""
        quiet = 0
        started = time.monotonic()
        outage_since: float | None = None
        while True:
            self.beat()
            try:
                n = self.poll_once()
                done = once and n == 0 and self.consumer.assignment() and self.caught_up()
            except UNREADABLE as err:  # no wait makes it readable: stop, and say why
                raise RuleViolation(unreadable(self.topic, err)) from None
            except OUTAGES as err:
                # the broker did not confirm the rejections, or the store could not be
                # reached: nothing was recorded; read again from the store's position
                self.reposition()
                now = time.monotonic()
                if outage_since is None:
                    outage_since = now
                    observability.OUTAGES.labels(PROCESS, type(err).__name__).inc()
                    self.notice(f"waiting for {type(err).__name__}: {err}")
                if once and now - outage_since > outage_timeout:
                    raise RuleViolation(
                        f"gave up after {outage_timeout:.0f} s of {type(err).__name__}: {err}; "
                        "nothing was lost: run it again once the broker and the store answer"
                    ) from None
                time.sleep(1.0)
                continue
            if outage_since is not None:
                outage_since = None
                self.notice("the outage is over: reading again from the stored position")
            if once:
                if not self.consumer.assignment():
                    if time.monotonic() - started > assignment_timeout:
                        raise RuleViolation(
                            f"no partition of {self.topic} was assigned to this consumer in "
                            f"{assignment_timeout:.0f} s: is another consumer of group "
                            f"{self.group} holding them all?"
                        )
                    continue
                quiet = quiet + 1 if done else 0
                if quiet >= idle_polls:
                    return self.tally

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.producer.close(timeout=10)
        self.consumer.close(autocommit=False)
