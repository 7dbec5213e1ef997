"""`ledger project`: the read models maintained from Kafka `ledger.events`, exactly once.

A consumer group shares the topic's partitions among workers. Each poll is applied in one
database transaction together with the next offset of every partition it read, so after a
crash, a restart or a rebalance a worker starts where the database says, not where Kafka's
committed offsets say. An event the publisher sent twice is recognised by its notification id
(the audit trail's key) and skipped. The same `Projector` as the embedded path writes the rows;
it gives the same result whatever order different aggregates' events arrive in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
import psycopg

from adapters import avro, observability, store_identity
from adapters.cipher_keys import CipherKeyError, load_key_ring
from adapters.kafka_client import UNREADABLE, connection, unreadable
from adapters.kafka_log import (
    SUBJECT,
    TopicMisconfigured,
    TopicSettings,
    another_store,
    caught_up,
    check_store,
    ensure_topic,
    header,
    tail_of,
)
from adapters.personal_data import PersonalData
from adapters.store import StoreUrlError
from ledger.personal import SEALED
from ledger.rules import RuleViolation
from projections.readmodels import Projector, RecordedEvent

GROUP = "ledger-read-models"


class PoisonEvent(RuntimeError):
    """A message on ledger.events that cannot be applied: the read models stop rather than
    skip it, since skipping would leave them wrong without anyone knowing."""


def recorded_event(record: Any, personal: PersonalData | None = None) -> RecordedEvent:
    """A message of ledger.events as the projections see it, its personal data opened (with
    `personal`'s keys; else the keys the process is given)."""
    where = f"{record.topic} partition {record.partition} offset {record.offset}"
    try:
        event = avro.decode(SUBJECT, record.value)
    except avro.UndecodableMessage as err:
        raise PoisonEvent(f"{where}: {err}") from None
    try:  # orjson: the JSON standard, in C (a national month's lines are gigabytes of it)
        payload = orjson.loads(event["payload"])
    except orjson.JSONDecodeError as err:
        raise PoisonEvent(f"{where}: its payload is not JSON: {err}") from None
    if not isinstance(payload, dict):
        kind = type(payload).__name__
        raise PoisonEvent(f"{where}: its payload is JSON ({kind}) but not an object")
    if SEALED in payload:
        try:
            (personal or PersonalData(load_key_ring)).unseal(payload)
        except CipherKeyError as err:
            raise type(err)(f"{where}: {err}") from None
    return RecordedEvent(
        notification_id=event["notification_id"],
        aggregate_id=str(event["aggregate_id"]),
        version=event["aggregate_version"],
        type=event["event_type"],
        recorded_at=event["recorded_at"].isoformat(),
        payload=payload,
    )


APPLY_BYTES = 16 * 1024 * 1024  # of Kafka's records, decoded and applied at a time


def within_bytes(
    records: Iterable[Any], limit: int, most: int | None = None
) -> Iterator[list[Any]]:
    """Consecutive slices of Kafka records, each of at most `limit` bytes of values (or one
    record, when a record alone is larger) and at most `most` records."""
    part: list[Any] = []
    size = 0
    for r in records:
        if part and (size + len(r.value) > limit or len(part) == most):
            yield part
            part, size = [], 0
        part.append(r)
        size += len(r.value)
    if part:
        yield part


class ProjectionWorker:
    def __init__(
        self,
        db: Any,
        bootstrap: str,
        settings: TopicSettings | None = None,
        group: str = GROUP,
        progress: Callable[[int], None] | None = None,
        max_poll_records: int = 2000,
    ) -> None:
        from kafka import KafkaConsumer

        self.db = db
        self.settings = settings or TopicSettings.from_env()
        self.group = group
        self.projector = Projector()
        self.store_id = store_identity.store_id(db)
        self.personal = PersonalData(load_key_ring)
        self.progress = progress or (lambda applied: None)
        ensure_topic(bootstrap, self.settings)
        # The tables are the owner's (`ledger init`): a worker never makes one, and a worker
        # starting beside others' polls never waits for their locks.
        if Projector.schema_missing(db):
            raise StoreUrlError(
                "the store's read-model tables are not all there: run `ledger init` once as "
                "the database owner (it adds what an earlier version did not make)"
            )
        self.consumer = KafkaConsumer(
            **connection(bootstrap),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_poll_records,
            # an approval's events carry a thousand lines each: a poll of them stays bounded
            fetch_max_bytes=16 * 1024 * 1024,
        )
        self.consumer.subscribe([self.settings.name])
        self.positioned: set[Any] = set()
        self.last_projected = 0
        self.beat: Callable[[], None] = lambda: None  # the process's loop came round
        self.deadlocks = 0  # polls PostgreSQL rolled back for a deadlock, and fetched again

    def stored_offsets(self, cursor: Any | None = None) -> dict[int, int]:
        sql = (
            "SELECT kafka_partition, next_offset FROM projection_offsets"
            " WHERE consumer_group = ? AND topic = ?"
        )
        params = (self.group, self.settings.name)
        if cursor is None:
            return dict(self.db.query(sql, params))
        cursor.execute(sql, params)
        return dict(cursor.fetchall())

    def _position_new_partitions(self) -> bool:
        """After any change of assignment, seek every assigned partition to the offset the
        database holds, and drop what the poll fetched: records fetched for a partition this
        worker kept would otherwise be skipped over. Done here, after a poll, and never inside
        the rebalance callback (which must not do database work)."""
        assigned = set(self.consumer.assignment())
        if assigned == self.positioned:
            return False
        stored = self.stored_offsets()
        ends = self.consumer.end_offsets(list(assigned)) if assigned else {}
        firsts = self.consumer.beginning_offsets(list(assigned)) if assigned else {}
        for tp in assigned:
            at = stored.get(tp.partition, firsts[tp])
            if not firsts[tp] <= at <= ends[tp] or (at == 0 < firsts[tp]):
                # the topic no longer holds what the read models were applied from: going on
                # would wait for ever (past its end) or skip events (before its start)
                raise TopicMisconfigured(
                    f"{tp.topic} partition {tp.partition}: the read models were applied up to "
                    f"offset {at:,}, but the topic holds offsets {firsts[tp]:,} to {ends[tp]:,} "
                    "(it was deleted and made again, or lost records): nothing was applied; "
                    "publish the store to a new topic (LEDGER_EVENTS_TOPIC) and project it"
                )
            self.consumer.seek(tp, at)
        self.positioned = assigned
        return True

    def poll_once(self, timeout_ms: int = 1000) -> int:
        """Apply one poll's worth of events; returns how many were new."""
        batch = self.consumer.poll(timeout_ms=timeout_ms)
        if self._position_new_partitions():
            return 0  # what was fetched is fetched again, from the right place
        observability.note_lag("project", self.settings.name, self.consumer)
        if not batch:
            return 0
        started = time.perf_counter()
        try:
            applied = self._apply(batch)
        except psycopg.errors.DeadlockDetected:
            # Two workers' transactions each held rows the other wanted (a person's balance
            # moved by a list's events here and by their enrolment there): PostgreSQL
            # rolled this one back. Nothing of it is applied; fetch it again from the
            # offsets the database holds.
            self.positioned = set()
            self.deadlocks += 1
            return 0
        self.consumer.commit_async()  # for monitoring only: the database is the truth
        observability.BATCH.labels("project").observe(time.perf_counter() - started)
        self.progress(applied)
        return applied

    def partition_lock(self, partition: int) -> str:
        """The lock a poll of this partition is applied under, instead of the read models'
        one: workers of the group apply their partitions side by side, and a worker handed a
        partition in a rebalance waits for the one that held it to commit, then reads the
        offset it reached."""
        return f"projection {self.group} {self.settings.name} {partition}"

    def _apply(self, batch: dict[Any, list[Any]]) -> int:
        applied = 0
        locks = tuple(self.partition_lock(tp.partition) for tp in batch)
        with self.db.transaction(lock=locks) as cursor:
            Projector.mark_projecting(cursor)  # the offsets move with the rows, guarded alike
            stored = self.stored_offsets(cursor)
            records: list[Any] = []
            next_offsets: dict[int, int] = {}
            for tp, polled in batch.items():
                start = stored.get(tp.partition, 0)
                for record in polled:
                    if record.offset < start:
                        continue  # applied before, by this worker or another
                    records.append(record)
                    next_offsets[tp.partition] = record.offset + 1
            # decoded and applied a slice at a time, in this one transaction: a poll of an
            # approval's events is a hundred MiB, ten times that once decoded (the read
            # models do not depend on how the events are sliced)
            seen: set[int] = set()
            highest = 0
            ledger_moves: dict[str, list[int]] = {}
            for part in within_bytes(records, APPLY_BYTES):
                self._check_store(cursor, part)
                events = [recorded_event(r, self.personal) for r in part]
                already = self._applied(cursor, [e.notification_id for e in events])
                new = []
                for e in events:  # a re-sent event: the same notification id, applied once
                    if e.notification_id not in already and e.notification_id not in seen:
                        seen.add(e.notification_id)
                        new.append(e)
                if new:
                    self.projector.apply(
                        cursor, new, move_position=False, ledger_moves=ledger_moves
                    )
                applied += len(new)
                highest = max([highest, *(e.notification_id for e in new)])
            self.projector.post_general_ledger(cursor, ledger_moves)
            cursor.executemany(
                "INSERT INTO projection_offsets (consumer_group, topic, kafka_partition,"
                " next_offset) VALUES (?, ?, ?, ?) ON CONFLICT (consumer_group, topic,"
                " kafka_partition) DO UPDATE SET next_offset = excluded.next_offset",
                [(self.group, self.settings.name, p, o) for p, o in next_offsets.items()],
            )
        self.last_projected = max(self.last_projected, highest)  # committed: now it counts
        topic = self.settings.name
        observability.CONSUMED.labels("project", topic).inc(len(records))
        observability.APPLIED.labels("project", topic).inc(applied)
        observability.UNCHANGED.labels("project", topic).inc(len(records) - applied)
        observability.LAST_PROJECTED.labels("project").set(self.last_projected)
        return applied

    def _check_store(self, cursor: Any, records: list[Any]) -> None:
        """Every message was published from this worker's store: refused otherwise, before
        anything of the poll is applied (the read models of one store, from another's
        events, would be wrong without a word)."""
        unmarked = []
        for r in records:
            theirs = header(r, store_identity.HEADER)
            if theirs is None:
                unmarked.append(r)
            elif theirs != self.store_id:
                raise another_store(r.topic, theirs, r.partition, r.offset, self.store_id)
        if unmarked:  # an earlier version's messages: this store's if their links are its own
            found = [tail_of(r) for r in unmarked]
            links = self._links(cursor, [t.notification_id for t in found])
            check_store(self.settings.name, found, self.store_id, links.get)

    @staticmethod
    def _links(cursor: Any, ids: list[int]) -> dict[int, str]:
        cursor.execute(
            "SELECT notification_id, chain_hash FROM event_chain WHERE notification_id = ANY(?)",
            (ids,),
        )
        return dict(cursor.fetchall())

    @staticmethod
    def _applied(cursor: Any, ids: list[int]) -> set[int]:
        """Which of these notification ids the read models hold already (one statement of
        one shape, an array of them: PostgreSQL prepares it once)."""
        cursor.execute(
            "SELECT notification_id FROM audit_trail WHERE notification_id = ANY(?)", (ids,)
        )
        return {r[0] for r in cursor.fetchall()}

    def caught_up(self) -> bool:
        return caught_up(self.consumer, self.positioned)

    def run(self, once: bool = False, idle_polls: int = 1) -> int:
        """Apply events until stopped; with `once`, until every assigned partition is read
        to its end: checked after each poll, so that a worker caught up stops at once rather
        than wait out a poll with nothing to fetch."""
        applied = 0
        quiet = 0
        started = time.monotonic()
        while True:
            self.beat()
            try:
                n = self.poll_once()
            except UNREADABLE as err:  # no wait makes it readable: stop, and say why
                raise PoisonEvent(unreadable(self.settings.name, err)) from None
            applied += n
            if once:
                if not self.consumer.assignment() and time.monotonic() - started > 60:
                    raise RuleViolation(
                        f"no partition of {self.settings.name} was assigned to this worker in "
                        f"60 s: are other workers of group {self.group} holding them all?"
                    )
                quiet = quiet + 1 if self.caught_up() else 0
                if quiet >= idle_polls:
                    return applied
            elif n == 0:
                time.sleep(0.05)

    def close(self) -> None:
        self.consumer.close(autocommit=False)
