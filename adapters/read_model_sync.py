"""How a command brings the read models up to its own writes: in-process from the notification
log (the embedded default), by waiting for `ledger project` (the Kafka path), or not at all
(the publisher)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from adapters.event_store import EventStore
from adapters.sql import ReadModelDatabase
from adapters.store import StoreUrlError
from ledger.service_layer.ports import ReadModelsBehind
from projections.applied import contiguous_watermark
from projections.readmodels import Projector, RecordedEvent


def wait_until_shown(
    missing: Callable[[], int], timeout: float, behind: Callable[[int], str]
) -> None:
    """Wait, up to `timeout` seconds, until the read models kept by another process miss
    nothing (`missing`() is 0); else refused, saying what is `behind`."""
    deadline = time.monotonic() + timeout
    while (left := missing()) > 0:
        if time.monotonic() > deadline:
            raise ReadModelsBehind(
                f"{behind(left)} (nothing was lost: the events are stored; run the command "
                "again once they have caught up)"
            )
        time.sleep(0.05)


class InProcessReadModels:
    """Kept up to date here, from the notification log, in batches; the position moves in the
    same transaction as the rows."""

    kind = "in-process"

    def __init__(self, events: EventStore, db: ReadModelDatabase) -> None:
        self.events = events
        self.db = db
        self.projector = Projector()

    def catch_up(self) -> int:
        """Bring the read models up to every event recorded so far; returns how many events
        were applied here. On PostgreSQL the next batch is read and decoded while the
        server writes this one's rows (the store's connections, not the read models')."""
        if self.events.location.kind == "sqlite":  # one connection, one thread
            return self._catch_up(lambda after: None)
        with ThreadPoolExecutor(1, thread_name_prefix="catch-up-reader") as reader:
            return self._catch_up(lambda after: reader.submit(self.events.recorded_events, after))

    def _catch_up(self, read_ahead: Callable[[int], Future[list[RecordedEvent]] | None]) -> int:
        applied = 0
        ahead: tuple[int, Future[list[RecordedEvent]] | None] = (-1, None)
        while True:
            with self.db.transaction() as cursor:
                position = self.projector.position_in(cursor)
                after, read = ahead
                # what was read ahead is the batch only if nobody else applied meanwhile
                batch = (
                    read.result()
                    if read is not None and after == position
                    else self.events.recorded_events(position)
                )
                if not batch:
                    return applied
                if applied == 0:
                    self._check_read_models_are_kept_here(cursor, position)
                last = batch[-1].notification_id
                ahead = (last, read_ahead(last))
                self.projector.apply(cursor, batch)
                applied += len(batch)

    def through(self) -> int:
        """The last event the read models show."""
        return Projector.position(self.db)

    @staticmethod
    def _check_read_models_are_kept_here(cursor: Any, position: int) -> None:
        """Events past this path's position already in the audit trail: `ledger project`
        keeps these read models from Kafka, and applying them again here would clash."""
        cursor.execute(
            "SELECT 1 FROM audit_trail WHERE notification_id > ? ORDER BY notification_id LIMIT 1",
            (position,),
        )
        if cursor.fetchone() is not None:
            raise StoreUrlError(
                "the read models of this store are kept by `ledger project` from Kafka: set "
                "LEDGER_KAFKA (the commands then wait for them), or run against another store"
            )


class KafkaReadModels:
    """Kept by `ledger project` from ledger.events: read-your-writes, bounded in time."""

    kind = "kafka"

    def __init__(self, events: EventStore, db: ReadModelDatabase, timeout: float) -> None:
        self.events = events
        self.db = db
        self.timeout = timeout

    def catch_up(self) -> int:
        """Wait until `ledger project` has applied every event stored so far (the audit trail
        holds one row per applied event)."""
        table = self.events.table
        latest = self.events.latest_notification_id()

        def missing() -> int:
            return int(
                self.db.query(
                    f"SELECT (SELECT COUNT(*) FROM {table} WHERE notification_id <= ?)"
                    " - (SELECT COUNT(*) FROM audit_trail WHERE notification_id <= ?)",
                    (latest, latest),
                )[0][0]
            )

        wait_until_shown(
            missing,
            self.timeout,
            lambda left: (
                f"the read models still miss {left:,} of the events up to "
                f"notification {latest:,} after {self.timeout:.0f} s: check that `ledger publish` "
                "and `ledger project` are running"
            ),
        )
        return 0

    def through(self) -> int:
        """The last event below which the read models miss nothing (events of different
        aggregates reach them in any order)."""
        return contiguous_watermark(self.db, self.events.table)


class ProjectorReadModels:
    """Kept by `ledger project` following the store itself (PostgreSQL without Kafka), as the
    projector role, the only one that may write them: read-your-writes, bounded in time."""

    kind = "projector"

    def __init__(self, events: EventStore, db: ReadModelDatabase, timeout: float) -> None:
        self.events = events
        self.db = db
        self.timeout = timeout

    def catch_up(self) -> int:
        """Wait until `ledger project` has applied every event stored so far (it applies
        them in order, and moves its position with them)."""
        latest = self.events.latest_notification_id()
        wait_until_shown(
            lambda: latest - self.through(),
            self.timeout,
            lambda left: (
                f"the read models show the events up to notification "
                f"{latest - left:,} of {latest:,} after {self.timeout:.0f} s: check that `ledger "
                "project` is running, as the projector role"
            ),
        )
        return 0

    def through(self) -> int:
        return Projector.position(self.db)


class UntouchedReadModels:
    """The publisher's view: it reads the log and never touches the read models."""

    kind = "none"

    def __init__(self, db: ReadModelDatabase) -> None:
        self.db = db

    def catch_up(self) -> int:
        return 0

    def through(self) -> int:
        return int(self.db.query("SELECT COALESCE(MAX(notification_id), 0) FROM audit_trail")[0][0])
