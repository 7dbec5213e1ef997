"""A command's catch-up on PostgreSQL reads the next batch of events while the server writes
the rows of this one. What was read ahead is applied only when nobody else applied events
meanwhile: every event is applied once, in order, whoever applies it."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from adapters.read_model_sync import InProcessReadModels
from adapters.sql import PostgresDatabase
from ledger.application import Ledger
from projections.readmodels import Projector, RecordedEvent
from tests.conftest import Files, enrolment
from tests.services import new_database

pytestmark = pytest.mark.integration

PEOPLE = [f"0020{n:08d}" for n in range(240)]
BATCH = 50  # events a batch: five batches and a few


@pytest.fixture
def recorded(postgres_server: str, files: Files) -> Iterator[tuple[Ledger, str]]:
    """A store's events, and the URL of read models (in a database of their own) that have
    applied none of them yet."""
    with Ledger(new_database(postgres_server)) as ledger:
        ledger.enrol(files.enrolments([enrolment(p) for p in PEOPLE]), "maker")
        ledger.events.NOTIFICATION_BATCH = BATCH  # type: ignore[misc]
        url = new_database(postgres_server)
        db = PostgresDatabase(url)
        with db.transaction() as cursor:
            Projector.create_schema(cursor)
        db.close()
        yield ledger, url


def read_models(url: str) -> dict[str, list[tuple[Any, ...]]]:
    db = PostgresDatabase(url)
    try:
        return {
            "applied": db.query("SELECT notification_id FROM audit_trail ORDER BY 1"),
            "people": db.query("SELECT personal_id FROM beneficiaries ORDER BY 1"),
            "position": db.query("SELECT notification_id FROM projection_position"),
        }
    finally:
        db.close()


def test_read_ahead_applies_every_event_once(recorded: tuple[Ledger, str]) -> None:
    ledger, url = recorded
    last = ledger.events.latest_notification_id()
    assert last > 4 * BATCH

    sync = InProcessReadModels(ledger.events, PostgresDatabase(url))
    assert sync.catch_up() == last

    found = read_models(url)
    assert found["applied"] == [(n,) for n in range(1, last + 1)]
    assert found["people"] == [(p,) for p in PEOPLE]
    assert found["position"] == [(last,)]


def test_a_batch_read_ahead_is_read_again_when_another_applied_it(
    recorded: tuple[Ledger, str],
) -> None:
    """Another command catches up between two of this one's batches: what this one read
    ahead is already applied, so it reads from where the other stopped."""
    ledger, url = recorded
    last = ledger.events.latest_notification_id()
    db = PostgresDatabase(url)
    ours = InProcessReadModels(ledger.events, db)
    other = InProcessReadModels(ledger.events, PostgresDatabase(url))
    transaction = db.transaction
    applied_by_other: list[int] = []
    read_ahead_from: list[int] = []

    def between_batches(lock: Any = None) -> Any:
        if len(read_ahead_from) == 1 and not applied_by_other:  # before our second batch
            applied_by_other.append(other.catch_up())
        return transaction(lock)

    def read_ahead(after: int) -> Future[list[RecordedEvent]]:
        read_ahead_from.append(after)
        read: Future[list[RecordedEvent]] = Future()
        read.set_result(ledger.events.recorded_events(after))
        return read

    db.transaction = between_batches  # type: ignore[method-assign]
    applied_by_us = ours._catch_up(read_ahead)

    assert read_ahead_from[0] == BATCH
    assert applied_by_other == [last - BATCH]  # everything after our first batch
    assert applied_by_us == BATCH  # the batch read ahead was not applied again
    found = read_models(url)
    assert found["applied"] == [(n,) for n in range(1, last + 1)]
    assert found["people"] == [(p,) for p in PEOPLE]
    assert found["position"] == [(last,)]
