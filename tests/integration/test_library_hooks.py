"""The hash chain, the table lock and the expected-version check ride on a few of
`eventsourcing`'s recorder hooks. These tests fail when an upgrade of the library stops
calling them or changes their shape, before a store is written without its guarantees."""

from __future__ import annotations

import inspect
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder

from adapters.recorders import ChainedPostgresApplicationRecorder, ChainedSQLiteApplicationRecorder
from ledger.application import Ledger
from tests.conftest import Files, enrolment, new_store, query_store

pytestmark = pytest.mark.integration

# hook -> the parameters we rely on
HOOKS = {
    (SQLiteApplicationRecorder, "_insert_events"): ["self", "c", "stored_events"],
    (PostgresApplicationRecorder, "_insert_stored_events"): ["self", "curs", "stored_events"],
    (PostgresApplicationRecorder, "_fetch_ids_after_insert_events"): [
        "self",
        "curs",
        "stored_events",
    ],
    (PostgresApplicationRecorder, "_lock_table"): ["self", "curs"],
    (PostgresAggregateRecorder, "_insert_stored_events"): ["self", "curs", "stored_events"],
}


@pytest.mark.parametrize(("owner", "name"), sorted(HOOKS, key=lambda k: (k[0].__name__, k[1])))
def test_the_library_still_has_each_hook(owner: type, name: str) -> None:
    hook = getattr(owner, name, None)
    assert hook is not None, f"{owner.__name__}.{name} is gone"
    parameters = list(inspect.signature(hook).parameters)
    assert parameters[: len(HOOKS[(owner, name)])] == HOOKS[(owner, name)]


def test_each_store_uses_the_chained_recorder(store_url: str) -> None:
    with Ledger(store_url) as ledger:
        recorder = ledger.app.recorder
    kind = (
        ChainedSQLiteApplicationRecorder
        if store_url.startswith("sqlite")
        else (ChainedPostgresApplicationRecorder)
    )
    assert isinstance(recorder, kind)


def test_every_save_is_chained_in_its_own_transaction(store_url: str, files: Files) -> None:
    with Ledger(store_url) as ledger:
        before = query_store(store_url, "SELECT COUNT(*) FROM event_chain")[0][0]
        ledger.enrol(files.enrolments([enrolment("004000000001")]), "maker")
        events = ledger.events.latest_notification_id()
    assert query_store(store_url, "SELECT COUNT(*) FROM event_chain")[0][0] == before + 1
    assert query_store(store_url, "SELECT MAX(notification_id) FROM event_chain")[0][0] == events


def test_postgresql_appends_under_an_exclusive_table_lock(
    files: Files, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one save is between its insert and its commit, the events table is held in
    EXCLUSIVE mode, so that no other save can take a notification id meanwhile."""
    url = new_store("postgresql", tmp_path, request)
    inside, release = threading.Event(), threading.Event()
    original = ChainedPostgresApplicationRecorder._fetch_ids_after_insert_events

    def paused(self: Any, curs: Any, stored_events: Any, **kwargs: Any) -> Any:
        ids = original(self, curs, stored_events, **kwargs)
        inside.set()
        assert release.wait(30)
        return ids

    with Ledger(url) as ledger:
        monkeypatch.setattr(
            ChainedPostgresApplicationRecorder, "_fetch_ids_after_insert_events", paused
        )
        path = files.enrolments([enrolment("004000000002")])
        saving = threading.Thread(target=ledger.enrol, args=(path, "maker"))
        saving.start()
        try:
            assert inside.wait(30), "the save never reached the chain hook"
            with psycopg.connect(url) as con:
                held = con.execute(
                    "SELECT l.mode, l.granted FROM pg_locks l JOIN pg_class c"
                    " ON c.oid = l.relation WHERE c.relname = 'ledger_events'"
                    " AND l.mode = 'ExclusiveLock'"
                ).fetchall()
        finally:
            release.set()
            saving.join(30)
    assert held == [("ExclusiveLock", True)]


def test_a_spooled_save_opens_its_transaction_only_once_everything_is_made(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """An approval or a settlement makes its events for minutes before it inserts them: no
    session of the store sits in a transaction meanwhile, and one refused at the end of the
    making (a problem on a file's last row) never opened one."""
    url = new_store("postgresql", tmp_path, request)
    seen: list[int] = []

    def in_a_transaction() -> int:
        row = query_store(
            url,
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%'",
        )
        return int(row[0][0])

    def chunks(refuse: bool) -> Any:
        for _ in range(3):
            seen.append(in_a_transaction())
            yield [], {}
        if refuse:
            raise ValueError("a problem on the last row")

    with Ledger(url) as ledger:
        with pytest.raises(ValueError, match="last row"):
            ledger.events.save_in_chunks(chunks(refuse=True), spool=True)
        assert ledger.events.save_in_chunks(chunks(refuse=False), spool=True) == 0
    assert seen == [0] * 6
