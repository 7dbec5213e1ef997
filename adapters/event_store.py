"""The event store: `eventsourcing`'s application and recorders behind the few operations the
service layer needs (get, load many, save, save with a tracking record, read the log).

One `eventsourcing` Application holds every aggregate, so that the ledger has a single total
order of events (one notification log) for the hash chain and for Kafka.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent, Tracking
from eventsourcing.utils import Environment

from adapters.chain import GENESIS, link
from adapters.recorders import CHAIN_TABLE
from adapters.sql import ReadModelDatabase
from adapters.store import StoreLocation, StoreUrlError
from ledger.rules import LINE_FIELDS, IssuedList
from projections.readmodels import RecordedEvent


class LedgerApplication(Application):  # type: ignore[type-arg]
    """The event store: aggregates in, events out, one notification log."""

    name = "Ledger"  # PostgreSQL table ledger_events
    is_snapshotting_enabled = False

    def construct_env(self, name: str, env: Any = None) -> Environment:
        """Only what the store URL says. The library would also take its keys from the
        process environment, where one stray variable (POSTGRES_ENABLE_DB_FUNCTIONS=y, or
        LEDGER_APPLICATION_RECORDER_TOPIC) would bypass the hash chain and the table lock."""
        return Environment(name, dict(env or {}))


def open_application(env: dict[str, str], attempts: int = 5) -> LedgerApplication:
    """The event store, its tables created if missing. Processes that open a new PostgreSQL
    store at the same moment can trip over each other's CREATE statements: try again."""
    for attempt in range(attempts):
        try:
            return LedgerApplication(env=env)
        except PersistenceError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


class EventStore:
    """The ledger's events in a SQLite file or a PostgreSQL database."""

    NOTIFICATION_BATCH = 500
    APPLY_BYTES = 16 * 1024 * 1024

    def __init__(self, location: StoreLocation, db: ReadModelDatabase, existing: bool) -> None:
        """`existing`: the store must already exist and is opened as it is (no table or
        trigger is created or put back)."""
        env = location.eventsourcing_env()
        if existing:
            env["CREATE_TABLE"] = "n"
        self.location = location
        self.db = db
        self.app = open_application(env)
        self.table: str = self.app.recorder.events_table_name  # type: ignore[attr-defined]
        if existing:
            try:
                db.query(f"SELECT 1 FROM {self.table} LIMIT 1")
            except Exception:
                raise StoreUrlError(f"no ledger store at {location.url}") from None

    def close(self) -> None:
        self.app.close()

    # Aggregates

    def get(self, aggregate_id: UUID) -> Any | None:
        try:
            return self.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def save(
        self, *aggregates: Any, expected_versions: dict[UUID, int | None] | None = None
    ) -> None:
        """The aggregates' new events in one transaction. `expected_versions`: streams the
        decision read, checked under the store's write lock (StreamsChanged, a
        ConcurrentChange, when one moved)."""
        if aggregates:
            self.app.save(*aggregates, expected_versions=expected_versions or {})

    def save_new(self, aggregate: Any) -> None:
        """Save an aggregate that several processes may create at once: one of them does."""
        with contextlib.suppress(IntegrityError):
            self.app.save(aggregate)

    def save_tracked(self, aggregates: Sequence[Any], tracking: Tracking) -> None:
        """The aggregates' new events and the position of the messages they came from, in one
        transaction; IntegrityError when that position was recorded before."""
        processing = ProcessingEvent(tracking=tracking)  # type: ignore[var-annotated]
        processing.collect_events(*aggregates)
        self.app.events.put(processing.events, tracking=tracking)

    def tracked_position(self, name: str) -> int | None:
        """The position recorded with the last save tracked under `name`, if any."""
        return self.app.recorder.max_tracking_id(name)  # type: ignore[attr-defined, no-any-return]

    def load_many(self, ids: Sequence[UUID]) -> dict[UUID, Any]:
        """Aggregates by id, read in a few queries rather than one round trip each (a stream
        of death registrations touches thousands of records a second)."""
        aggregates: dict[UUID, Any] = {}
        for event in self._domain_events(ids):
            previous = aggregates.get(event.originator_id)
            aggregates[event.originator_id] = event.mutate(previous)
        return aggregates

    def issued_list(self, list_id: UUID) -> IssuedList | None:
        """What a payment list's approval recorded: the approval and its lines in LINE_FIELDS
        order, as issued, with any event among them whose link in the hash chain does not
        hold; None when the list was never approved."""
        approved: Any = None
        rows: list[tuple[Any, ...]] = []
        stored = self._stored(list_id, ("PaymentList.Approved", "PaymentList.LinesIssued"))
        for _, record in stored:
            event: Any = self.app.mapper.to_domain_event(record)
            if type(event).__qualname__.endswith("Approved"):
                approved = event
                continue
            at = {name: i for i, name in enumerate(event.columns)}
            order = [at[name] for name in LINE_FIELDS]
            rows.extend(tuple(line[i] for i in order) for line in event.lines)
        if approved is None:
            return None
        return IssuedList(
            approved_by=approved.actor,
            approved_at=approved.timestamp.isoformat(),
            digest=approved.digest,
            line_count=approved.line_count,
            total_amount=approved.total_amount,
            rows=rows,
            unchained=tuple(self._unchained(stored)),
        )

    def _stored(self, aggregate_id: UUID, types: Sequence[str]) -> list[tuple[int, StoredEvent]]:
        """An aggregate's stored events of some types, with their notification ids."""
        sqlite = self.location.kind == "sqlite"
        nid = "rowid" if sqlite else "notification_id"
        rows = self.db.query(
            f"SELECT {nid}, originator_id, originator_version, topic, state FROM {self.table}"
            f" WHERE originator_id = ? AND ({' OR '.join('topic LIKE ?' for _ in types)})"
            " ORDER BY originator_version",
            [aggregate_id.hex if sqlite else aggregate_id, *(f"%:{t}" for t in types)],
        )
        return [
            (int(n), StoredEvent(UUID(str(o)), v, t, bytes(state))) for n, o, v, t, state in rows
        ]

    def _unchained(self, stored: Sequence[tuple[int, StoredEvent]]) -> Iterator[str]:
        """Each event whose link in the hash chain does not reproduce from its stored bytes
        (an event rewritten together with what the approval recorded of it)."""
        for n, e in stored:
            chain = self.db.query(
                f"SELECT notification_id, chain_hash FROM {CHAIN_TABLE}"
                " WHERE notification_id <= ? ORDER BY notification_id DESC LIMIT 2",
                (n,),
            )
            if not chain or int(chain[0][0]) != n:
                yield f"notification {n} has no link in the hash chain"
                continue
            previous = bytes.fromhex(chain[1][1]) if len(chain) > 1 else GENESIS
            expected = link(previous, n, e.originator_id, e.originator_version, e.topic, e.state)
            if expected.hex() != chain[0][1]:
                yield f"notification {n} does not match its link in the hash chain"

    def _domain_events(self, ids: Sequence[UUID], types: Sequence[str] = ()) -> Any:
        as_text = self.location.kind == "sqlite"  # SQLite keeps ids as hex text
        mapper = self.app.mapper
        # topics end with the event's class, e.g. `ledger.aggregates:PaymentList.Approved`
        of_types = " OR ".join("topic LIKE ?" for _ in types)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self.db.query(
                f"SELECT originator_id, originator_version, topic, state FROM {self.table}"
                f" WHERE originator_id IN ({','.join('?' * len(chunk))})"
                + (f" AND ({of_types})" if types else "")
                + " ORDER BY originator_id, originator_version",
                [*(u.hex if as_text else u for u in chunk), *(f"%:{t}" for t in types)],
            )
            for originator_id, version, topic, state in rows:
                yield mapper.to_domain_event(
                    StoredEvent(
                        originator_id=UUID(str(originator_id)),
                        originator_version=version,
                        topic=topic,
                        state=bytes(state),
                    )
                )

    # The notification log

    def recorded_events(self, after: int) -> list[RecordedEvent]:
        """The next stored events after a notification id, as the projections see them: a
        batch bounded in count and bytes; empty at the end of the log."""
        transcoder = self.app.mapper.transcoder
        notes = self.app.recorder.select_notifications(  # type: ignore[attr-defined]
            start=after, limit=self.NOTIFICATION_BATCH, inclusive_of_start=False
        )
        batch: list[RecordedEvent] = []
        size = 0
        for n in notes:
            state = transcoder.decode(n.state)
            recorded_at = state.pop("timestamp")
            batch.append(
                RecordedEvent(
                    notification_id=n.id,
                    aggregate_id=str(n.originator_id),
                    version=n.originator_version,
                    type=n.topic.rsplit(":", 1)[1],
                    recorded_at=recorded_at.isoformat(),
                    payload=state,
                )
            )
            size += len(n.state)
            if size > self.APPLY_BYTES:
                break
        return batch

    def latest_notification_id(self) -> int:
        return int(self.app.recorder.max_notification_id() or 0)  # type: ignore[attr-defined]
