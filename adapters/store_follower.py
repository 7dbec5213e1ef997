"""`ledger project` without Kafka: the read models of a PostgreSQL store kept by one process,
as the projector role, from the store's own notification log.

The commands of the other roles may not write read models, so they wait for this process as
they wait for the Kafka projection (read-your-writes, bounded in time). It applies the events
in notification order, with the same `Projector` and in the same transactions as a command on
the embedded store does; every append NOTIFYs the store's channel, which wakes it at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from adapters import observability
from adapters.read_model_sync import InProcessReadModels

WAKE_EVERY = 1.0  # seconds: a notification missed (a reconnect) delays, never loses, an event


class StoreFollower:
    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger
        self.applier = InProcessReadModels(ledger.events, ledger.db)
        self.listener = psycopg.connect(ledger.location.url, autocommit=True)
        channel = ledger.app.recorder.channel_name
        self.listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self.beat: Callable[[], None] = lambda: None  # the process's loop came round

    def run(self, once: bool = False) -> int:
        """Apply what is stored, then (unless `once`) every event as it is stored, until
        interrupted; how many events were applied."""
        applied = self._catch_up()
        while not once:
            self.beat()
            for _ in self.listener.notifies(timeout=WAKE_EVERY, stop_after=1):
                pass
            applied += self._catch_up()
        return applied

    def _catch_up(self) -> int:
        started = time.perf_counter()
        applied = self.applier.catch_up()
        through = self.ledger.sync.through()
        if applied:
            observability.APPLIED.labels("project", "store").inc(applied)
            observability.BATCH.labels("project").observe(time.perf_counter() - started)
        observability.LAST_PROJECTED.labels("project").set(through)
        latest = self.ledger.events.latest_notification_id()
        observability.set_lag("project", "store", {0: latest - through})
        return applied

    def close(self) -> None:
        self.listener.close()
