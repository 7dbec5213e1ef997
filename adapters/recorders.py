"""The event store as `eventsourcing` records it, with two guarantees added in the database
itself: stored events (and their chain) cannot be updated or deleted, and every event is
chained to the one before, by an HMAC-SHA256 keyed with the chain key, in the same transaction
that appends it.

The recorder is given the key by the event store right after it is opened
(`set_chain_key`); without one, a save is refused before anything is written. Each link
records the id of the key that made it (`event_chain.key_id`, immutable with the link), and a
save is refused when the last link's key id is not its key's, so that one store's chain is
never made with two keys.

They are the library's *process* recorders: a save may carry a tracking record (a Kafka
topic-partition and the next offset to read) that is written in the same transaction as the
events it caused, and refused when that position was already recorded."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, ProgrammingError, StoredEvent
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteCursor, SQLiteProcessRecorder
from psycopg.sql import SQL, Identifier

from adapters.chain import GENESIS, NoChainKey, link
from adapters.chain_key import ChainKeyError, key_id
from ledger.service_layer.ports import ConcurrentChange, Fence, FenceCrossed

CHAIN_TABLE = "event_chain"
KEY_COLUMN = "key_id"  # of event_chain: the id of the key each link was made with
TRACKING_TABLE = "ledger_tracking"  # SQLite's recorder names its own "tracking"
IMMUTABLE = "stored events are immutable"
RECORDED_BY = "recorded_by"  # of the events table: the role that wrote each event (PostgreSQL)
LOCK_FUNCTION = "ledger_lock_events"  # the append lock, for roles that may not LOCK the table


class StreamsChanged(IntegrityError, ConcurrentChange):
    """A stream the save was decided on changed before the save took the write lock."""


def _changed(expected: dict[UUID, int | None], found: dict[UUID, int]) -> None:
    """Refuse the save when any stream it was decided on is not at the version it was read
    at (None: the stream did not exist). Checked under the store's write lock, so that a
    decision and the events it depended on cannot cross (rule 10: an enrolment and a death
    registration of the same person)."""
    moved = [u for u, version in expected.items() if found.get(u) != version]
    if moved:
        raise StreamsChanged(f"{len(moved)} stream(s) changed since they were read: {moved[:3]}")


def _crossed(fence: Fence | None, recorded: Iterable[Any]) -> None:
    """Refuse the save when a stream of the fence is among those that recorded one of its
    events after the decision (`recorded`: their originator id, topic and stored bytes, read
    under the write lock: only the events since the decision, a few, are read)."""
    if fence is None:
        return
    since = {UUID(str(o)) for o, topic, state in recorded if fence.crosses(topic, bytes(state))}
    crossed = sorted(set(fence.streams(since))) if since else []
    if crossed:
        raise FenceCrossed(crossed)


def key_mismatch(stored: str, given: str) -> str:
    return (
        f"this store's chain was made with key id {stored}; the key given has id {given}: "
        "give the store's own key (LEDGER_CHAIN_KEY, or the file LEDGER_CHAIN_KEY_FILE names)"
    )


class KeyedChain:
    """What both recorders share: the chain key, refused when absent or not the store's."""

    chain_key: bytes | None = None
    chain_key_id: str | None = None

    def set_chain_key(self, key: bytes) -> None:
        if not key:
            raise NoChainKey("an empty chain key")
        self.chain_key, self.chain_key_id = key, key_id(key)

    def _key(self) -> tuple[bytes, str]:
        if not self.chain_key or not self.chain_key_id:
            raise NoChainKey(
                "the recorder was given no chain key: nothing is saved with an unkeyed link"
            )
        return self.chain_key, self.chain_key_id

    def _previous(self, last: tuple[str, str] | None) -> bytes:
        """Under the write lock, from the last link and its key id: the link to chain to.
        Refused when the chain was made with another key."""
        _, mine = self._key()
        if last is None:
            return GENESIS
        chain_hash, stored = last
        if stored != mine:
            raise ChainKeyError(key_mismatch(stored, mine))
        return bytes.fromhex(chain_hash)

    def insert_in_chunks(
        self,
        chunks: Iterable[tuple[Sequence[StoredEvent], dict[UUID, int | None]]],
        fence: Fence | None = None,
    ) -> int:
        """Chunks of events in ONE transaction (all or none), each chunk's streams checked
        against its expected versions, and the `fence` with the first, under the write lock
        that chunk takes: a file of millions of rows, or a national list, is stored whole
        without being held in memory whole."""
        count = 0
        with self.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
            for stored, expected in chunks:
                if stored:
                    self._append_chunk(cursor, stored, expected, fence)
                    fence = None
                    count += len(stored)
        return count

    def _append_chunk(
        self,
        cursor: Any,
        stored: Sequence[StoredEvent],
        expected: dict[UUID, int | None],
        fence: Fence | None,
    ) -> None:
        raise NotImplementedError

    def _chain(
        self, previous: bytes, ids: Sequence[int], events: Sequence[StoredEvent]
    ) -> list[tuple[int, str, str]]:
        key, mine = self._key()
        rows = []
        for notification_id, e in zip(ids, events, strict=True):
            previous = link(
                key,
                previous,
                notification_id,
                e.originator_id,
                e.originator_version,
                e.topic,
                e.state,
            )
            rows.append((notification_id, previous.hex(), mine))
        return rows


class ChainedSQLiteApplicationRecorder(KeyedChain, SQLiteProcessRecorder):
    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {CHAIN_TABLE} ("
            f"notification_id INTEGER PRIMARY KEY, chain_hash TEXT NOT NULL, {KEY_COLUMN} TEXT "
            "NOT NULL)"
        )
        for table in (self.events_table_name, CHAIN_TABLE):
            for operation in ("UPDATE", "DELETE"):
                statements.append(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{operation.lower()} "
                    f"BEFORE {operation} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}: {operation} refused'); END"
                )
        # INSERT OR REPLACE deletes the row it replaces without firing the DELETE trigger
        statements.append(
            f"CREATE TRIGGER IF NOT EXISTS {CHAIN_TABLE}_no_replace BEFORE INSERT ON "
            f"{CHAIN_TABLE} WHEN EXISTS (SELECT 1 FROM {CHAIN_TABLE} WHERE notification_id = "
            f"NEW.notification_id) BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}: REPLACE refused'); END"
        )
        statements.append(
            f"CREATE TRIGGER IF NOT EXISTS {self.events_table_name}_no_replace BEFORE INSERT ON "
            f"{self.events_table_name} WHEN EXISTS (SELECT 1 FROM {self.events_table_name} "
            "WHERE originator_id = NEW.originator_id AND originator_version = "
            f"NEW.originator_version) BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}: REPLACE refused'); "
            "END"
        )
        return statements

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        self._key()  # refused before anything is written
        ids = super()._insert_events(c, stored_events, **kwargs)
        expected: dict[UUID, int | None] = kwargs.get("expected_versions") or {}
        if expected:
            # the insert above holds the write lock
            found: dict[UUID, int] = {}
            keys = list(expected)
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                c.execute(
                    f"SELECT originator_id, MAX(originator_version) FROM {self.events_table_name}"
                    f" WHERE originator_id IN ({','.join('?' * len(chunk))}) GROUP BY 1",
                    [u.hex for u in chunk],
                )
                found.update((UUID(str(o)), v) for o, v in c.fetchall())
            _changed(expected, found)
        fence: Fence | None = kwargs.get("fence")
        if fence is not None:
            # after the insert: the events of other saves are those before ours
            ours = min(ids) if ids else 2**62
            c.execute(
                f"SELECT originator_id, topic, state FROM {self.events_table_name}"
                " WHERE rowid > ? AND rowid"
                f" < ? AND topic IN ({','.join('?' * len(fence.topics))})",
                [fence.after, ours, *fence.topics],
            )
            _crossed(fence, c.fetchall())
        if ids:
            # the insert above holds the write lock: nobody appends between read and write
            c.execute(
                f"SELECT chain_hash, {KEY_COLUMN} FROM {CHAIN_TABLE}"
                " ORDER BY notification_id DESC LIMIT 1"
            )
            row = c.fetchone()
            previous = self._previous((row[0], row[1]) if row else None)
            links = self._chain(previous, ids, stored_events)
            c.executemany(
                f"INSERT INTO {CHAIN_TABLE} (notification_id, chain_hash, {KEY_COLUMN})"
                " VALUES (?, ?, ?)",
                links,
            )
        return ids

    def _append_chunk(
        self,
        c: Any,
        stored: Sequence[StoredEvent],
        expected: dict[UUID, int | None],
        fence: Fence | None,
    ) -> None:
        self._insert_events(c, stored, expected_versions=expected, fence=fence)


# the body of the PostgreSQL function every immutability trigger calls (checked by verify)
REFUSE_CHANGE_BODY = (
    f" BEGIN RAISE EXCEPTION '{IMMUTABLE}: % refused on %', TG_OP, TG_TABLE_NAME; END "
)


def _lz4_state(events: str) -> str:
    """The events' state compressed by lz4 where the server has it (PostgreSQL 14 and later,
    built with lz4), not by pglz: a payment list's lines are events of a hundred kilobytes
    and more, which pglz compresses at about 50 MB/s, a national month's 600 MB in some
    twelve seconds of the server's processor. Set when the store is made (a store is opened
    as it is; its owner may set it on an older one, for the rows written after)."""
    return (
        "DO $$ BEGIN IF current_setting('server_version_num')::int >= 140000 THEN"
        f" EXECUTE 'ALTER TABLE {events} ALTER COLUMN state SET COMPRESSION lz4'; END IF;"
        " EXCEPTION WHEN feature_not_supported THEN NULL;"  # a server built without lz4
        " END $$"
    )


def _recorded_by_and_lock(schema: str, events: str) -> list[str]:
    """The role that wrote each event, filled by the server (a ledger role is granted INSERT
    on the other columns only; events stored before the column have none), and the function
    that takes the append lock for roles that may not LOCK the table themselves."""
    return [
        f"ALTER TABLE {events} ADD COLUMN IF NOT EXISTS {RECORDED_BY} TEXT",
        f"ALTER TABLE {events} ALTER COLUMN {RECORDED_BY} SET DEFAULT session_user",
        f'CREATE OR REPLACE FUNCTION "{schema}".{LOCK_FUNCTION}() RETURNS void'
        " LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS"
        f" $$ BEGIN LOCK TABLE {events} IN EXCLUSIVE MODE; END $$",
        f'REVOKE ALL ON FUNCTION "{schema}".{LOCK_FUNCTION}() FROM PUBLIC',
    ]


class ChainedPostgresApplicationRecorder(KeyedChain, PostgresProcessRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("tracking_table_name", TRACKING_TABLE)
        super().__init__(*args, **kwargs)
        schema = self.datastore.schema
        events = f'"{schema}"."{self.events_table_name}"'
        chain = f'"{schema}"."{CHAIN_TABLE}"'
        refuse = f'"{schema}".ledger_refuse_change()'
        self.sql_create_statements.extend(
            SQL(x).format()  # Composed, as the recorder keeps its statements
            for x in [
                f"CREATE TABLE IF NOT EXISTS {chain} ("
                f"notification_id BIGINT PRIMARY KEY, chain_hash TEXT NOT NULL, {KEY_COLUMN} "
                "TEXT NOT NULL)",
                f'CREATE OR REPLACE FUNCTION "{schema}".ledger_refuse_change() RETURNS trigger '
                f"LANGUAGE plpgsql AS $${REFUSE_CHANGE_BODY}$$",
            ]
        )
        for name, table in (("events", events), ("chain", chain)):
            self.sql_create_statements.extend(
                SQL(x).format()  # Composed, as the recorder keeps its statements
                for x in [
                    f"CREATE OR REPLACE TRIGGER ledger_{name}_immutable BEFORE UPDATE OR DELETE "
                    f"ON {table} FOR EACH ROW EXECUTE FUNCTION {refuse}",
                    f"CREATE OR REPLACE TRIGGER ledger_{name}_no_truncate BEFORE TRUNCATE "
                    f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {refuse}",
                ]
            )
        self.sql_create_statements.append(SQL(_lz4_state(events)).format())
        self.lock_and_recorded_by = _recorded_by_and_lock(schema, events)
        self.sql_create_statements.extend(SQL(x).format() for x in self.lock_and_recorded_by)
        self.chain_table = chain
        self._lock_function: bool | None = None  # whether the store has it (asked once)
        self._inserted = threading.local()

    def _lock_table(self, curs: Any) -> None:
        """The library's EXCLUSIVE lock on the events table, by the owner's function: a ledger
        role may only append, and PostgreSQL lets only a role that may also update, delete
        or truncate a table lock it so. A store made before the function locks as the
        library does (its owner adds the function with `ledger init`)."""
        if self._lock_function is None:
            curs.execute(
                "SELECT to_regprocedure(%s) IS NOT NULL AS found",
                (f'"{self.datastore.schema}".{LOCK_FUNCTION}()',),
            )
            self._lock_function = bool(curs.fetchone()["found"])
        if not self._lock_function:
            super()._lock_table(curs)
            return
        curs.execute(self.lock_table_statements[0], prepare=True)  # SET LOCAL lock_timeout
        curs.execute(f'SELECT "{self.datastore.schema}".{LOCK_FUNCTION}()', prepare=True)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The library's order (its tracking record, then the events and their chain) in one
        transaction, without its pipeline: the events go by COPY, which a pipeline refuses."""
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            self._insert_events(curs, stored_events, **kwargs)
            if not stored_events:
                return None
            self._insert_stored_events(curs, stored_events, **kwargs)
            return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)

    def _insert_stored_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        self._key()  # refused before anything is written
        self._lock_table(curs)
        # Under the table lock, before any insert: an error raised after the events are
        # inserted would not roll them back (the library commits what it caught). Nobody can
        # append a link before ours.
        curs.execute(
            f"SELECT chain_hash, {KEY_COLUMN} FROM {self.chain_table}"
            " ORDER BY notification_id DESC LIMIT 1"
        )
        last = curs.fetchone()
        self._inserted.previous = self._previous(
            (last["chain_hash"], last[KEY_COLUMN]) if last else None
        )
        expected: dict[UUID, int | None] = kwargs.get("expected_versions") or {}
        if expected:
            # under the table lock: no other save can append between this read and ours
            curs.execute(
                f'SELECT originator_id, MAX(originator_version) AS v FROM "{self.datastore.schema}"'
                f'."{self.events_table_name}" WHERE originator_id = ANY(%s) GROUP BY 1',
                (list(expected),),
            )
            _changed(expected, {r["originator_id"]: r["v"] for r in curs.fetchall()})
        fence: Fence | None = kwargs.get("fence")
        if fence is not None:
            curs.execute(
                "SELECT originator_id, topic, state FROM"
                f' "{self.datastore.schema}"."{self.events_table_name}"'
                " WHERE notification_id > %s AND topic = ANY(%s)",
                (fence.after, list(fence.topics)),
                prepare=False,  # a generic plan of `> $1` scans the whole log under the lock
            )
            _crossed(fence, ((r["originator_id"], r["topic"], r["state"]) for r in curs.fetchall()))
        self._notify_channel(curs)
        self._inserted.ids = self._copy_events(curs, stored_events)

    def _copy_events(self, curs: Any, stored_events: Sequence[StoredEvent]) -> list[int]:
        """Append the events by COPY (a national enrolment is millions of them) and return
        their notification ids, in the events' order. Under the table lock nobody else
        appends, so the ids above the last one before the COPY are exactly these events'."""
        table = SQL("{}.{}").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)
        )
        curs.execute(SQL("SELECT COALESCE(MAX(notification_id), 0) AS n FROM {}").format(table))
        before = curs.fetchone()["n"]
        copy_sql = SQL(
            "COPY {} (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)"
        ).format(table)
        with curs.copy(copy_sql) as copy:
            copy.set_types(["uuid", "int8", "text", "bytea"])
            for e in stored_events:
                copy.write_row((e.originator_id, e.originator_version, e.topic, e.state))
        curs.execute(
            SQL(
                "SELECT notification_id, originator_id, originator_version FROM {}"
                " WHERE notification_id > %s ORDER BY notification_id"
            ).format(table),
            (before,),
        )
        found = {(r["originator_id"], r["originator_version"]): r["notification_id"] for r in curs}
        ids = [found[(e.originator_id, e.originator_version)] for e in stored_events]
        if len(found) != len(stored_events) or ids != sorted(ids):
            # the chain links events in notification order: never chain them out of it
            raise ProgrammingError("the events appended are not numbered in the order given")
        return ids

    def _append_chunk(
        self,
        curs: Any,
        stored: Sequence[StoredEvent],
        expected: dict[UUID, int | None],
        fence: Fence | None,
    ) -> None:
        self._insert_stored_events(curs, stored, expected_versions=expected, fence=fence)
        self._fetch_ids_after_insert_events(curs, stored)

    def _fetch_ids_after_insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = self._inserted.ids
        if len(ids) != len(stored_events):
            raise ProgrammingError(f"got {len(ids)} notification ids for {len(stored_events)}")
        if ids:
            # the recorder holds an EXCLUSIVE lock on the events table: appends are serial,
            # and the last link was read under it before the insert
            rows = self._chain(self._inserted.previous, ids, stored_events)
            # one COPY for the batch: executemany costs a round of query handling per row
            with curs.copy(
                f"COPY {self.chain_table} (notification_id, chain_hash, {KEY_COLUMN}) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
        return ids
