"""The store's guarantees, held by the database itself on both kinds of store: stored events
cannot be altered or removed, and each carries an HMAC-SHA256 link, keyed with the chain key,
chained to the one before; a save without the key writes nothing."""

from __future__ import annotations

import hashlib
import sqlite3
from uuid import UUID

import pytest

from adapters.chain import GENESIS, NoChainKey, link
from adapters.chain_key import key_id
from ledger.application import Ledger
from tests.conftest import TEST_CHAIN_KEY, Files, death, enrolment, events_table, query_store
from tests.services import new_database

pytestmark = pytest.mark.integration

KEY = bytes.fromhex(TEST_CHAIN_KEY)


def unkeyed_link(
    previous: bytes,
    notification_id: int,
    originator_id: UUID,
    version: int,
    topic: str,
    state: bytes,
) -> bytes:
    """The link as it was before the chain was keyed: plain SHA-256, which anyone can compute."""
    h = hashlib.sha256(previous)
    for part in (str(notification_id), str(originator_id), str(version), topic):
        data = part.encode()
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    h.update(len(state).to_bytes(8, "big"))
    h.update(state)
    return h.digest()


def fill(ledger: Ledger, files: Files) -> None:
    ledger.enrol(files.enrolments([enrolment(f"00100000000{i}") for i in range(5)]), "maker")
    ledger.import_deaths(files.deaths([death("001000000003")]), "registry")
    ledger.run_payroll("2025-07", None, "maker")
    ledger.approve_payroll("2025-07", None, "checker")


def stored(url: str) -> list[tuple[int, UUID, int, str, bytes]]:
    if url.startswith("sqlite:"):
        rows = query_store(
            url,
            "SELECT rowid, originator_id, originator_version, topic, state"
            " FROM stored_events ORDER BY rowid",
        )
    else:
        rows = query_store(
            url,
            "SELECT notification_id, originator_id, originator_version,"
            " topic, state FROM ledger_events ORDER BY notification_id",
        )
    return [(n, UUID(str(o)), v, t, bytes(s)) for n, o, v, t, s in rows]


def tamper(url: str, sql: str) -> str:
    """Run an attacker's statement; the database's error message, or '' if it went through."""
    if url.startswith("sqlite:"):
        con = sqlite3.connect(url[len("sqlite:///") :])
        try:
            con.execute(sql)
            con.commit()
        except sqlite3.DatabaseError as err:
            return str(err)
        finally:
            con.close()
        return ""
    import psycopg

    try:
        with psycopg.connect(url) as con:
            con.execute(sql)
    except psycopg.Error as err:
        return str(err)
    return ""


def test_every_stored_event_is_chained_to_the_one_before(
    ledger: Ledger, files: Files, store_url: str
) -> None:
    fill(ledger, files)
    events = stored(store_url)
    chain = dict(query_store(store_url, "SELECT notification_id, chain_hash FROM event_chain"))
    assert len(events) > 10
    assert sorted(chain) == [n for n, *_ in events]
    previous = GENESIS
    for notification_id, originator_id, version, topic, state in events:
        previous = link(KEY, previous, notification_id, originator_id, version, topic, state)
        assert chain[notification_id] == previous.hex(), f"link {notification_id}"
    # a change of one byte anywhere changes its link and so every link after it
    first = events[0]
    altered = link(KEY, GENESIS, first[0], first[1], first[2], first[3], first[4] + b" ")
    assert altered.hex() != chain[first[0]]
    # keyed: neither plain SHA-256 nor another key gives the links
    assert unkeyed_link(GENESIS, *first).hex() != chain[first[0]]
    assert link(bytes(32), GENESIS, *first).hex() != chain[first[0]]
    # each link names the key that made it
    assert set(query_store(store_url, "SELECT DISTINCT key_id FROM event_chain")) == {
        (key_id(KEY),)
    }


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {events} SET state = state",
        "DELETE FROM {events}",
        "UPDATE event_chain SET chain_hash = 'x'",
        "UPDATE event_chain SET key_id = 'x'",
        "DELETE FROM event_chain",
    ],
)
def test_the_database_refuses_to_alter_or_remove_stored_events(
    ledger: Ledger, files: Files, store_url: str, statement: str
) -> None:
    fill(ledger, files)
    before = stored(store_url)
    chain = query_store(store_url, "SELECT * FROM event_chain ORDER BY 1")
    error = tamper(store_url, statement.format(events=events_table(store_url)))
    assert "stored events are immutable" in error
    assert stored(store_url) == before
    assert query_store(store_url, "SELECT * FROM event_chain ORDER BY 1") == chain


def test_postgresql_refuses_truncate(postgres_server: str, files: Files) -> None:
    url = new_database(postgres_server)
    with Ledger(url) as ledger:
        fill(ledger, files)
    assert "stored events are immutable" in tamper(url, "TRUNCATE ledger_events")
    assert "stored events are immutable" in tamper(url, "TRUNCATE event_chain")
    assert len(stored(url)) > 10


def test_a_save_without_the_chain_key_writes_nothing(
    ledger: Ledger, files: Files, store_url: str
) -> None:
    ledger.enrol(files.enrolments([enrolment("001000000001")]), "maker")
    before = stored(store_url)
    chain = query_store(store_url, "SELECT * FROM event_chain ORDER BY 1")
    recorder = ledger.app.recorder
    recorder.chain_key = recorder.chain_key_id = None  # type: ignore[attr-defined]
    with pytest.raises(NoChainKey):
        ledger.enrol(files.enrolments([enrolment("001000000002")]), "maker")
    assert stored(store_url) == before
    assert query_store(store_url, "SELECT * FROM event_chain ORDER BY 1") == chain


def test_postgresql_compresses_the_stored_events_with_lz4(
    postgres_server: str, files: Files
) -> None:
    """A list's lines are events of a hundred kilobytes and more: pglz, the server's default,
    spends seconds of a national approval compressing them."""
    url = new_database(postgres_server)
    with Ledger(url) as ledger:
        ledger.enrol(files.enrolments([enrolment(f"0020000{i:05d}") for i in range(300)]), "m")
        ledger.run_payroll("2025-07", None, "maker")
        ledger.approve_payroll("2025-07", None, "checker")
    compressed = query_store(
        url,
        "SELECT DISTINCT pg_column_compression(state) FROM ledger_events"
        " WHERE topic LIKE '%LinesIssued'",
    )
    assert compressed == [("lz4",)]
