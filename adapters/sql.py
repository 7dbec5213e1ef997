"""SQL connections for the read models. The projection code writes portable SQL with `?`
placeholders; each database adapter runs it. SQLite here; PostgreSQL plugs in behind the same
three methods."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from ledger.service_layer.ports import Lock


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...


class ReadModelDatabase(Protocol):
    def transaction(self, lock: Lock = None) -> Any: ...
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]: ...
    def close(self) -> None: ...


class SQLiteDatabase:
    """Read models in an SQLite file (the embedded default keeps them beside the events)."""

    def __init__(self, path: str | Path, scratch: bool = False) -> None:
        """`scratch`: a file one process fills and nothing else reads until it is done (a
        replay's, a rebuild's): no journal on disk and no sync, and a cache of 256 MiB, as a
        kill leaves nothing worth keeping in it anyway."""
        self.path = str(path)
        self.conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        if scratch:
            for pragma in ("journal_mode=MEMORY", "synchronous=OFF", "cache_size=-262144"):
                self.conn.execute(f"PRAGMA {pragma}")
        else:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        # PostgreSQL's transaction-local settings, which the read models' guards read: here a
        # flag on this connection, cleared at the end of every transaction
        self.settings: dict[str, str] = {}
        self.conn.create_function("current_setting", 1, self.settings.get, deterministic=False)
        self.conn.create_function("set_config", 3, self._set_config)

    def _set_config(self, name: str, value: str, is_local: int) -> str:
        self.settings[name] = value
        return value

    @contextmanager
    def transaction(self, lock: Lock = None) -> Iterator[sqlite3.Cursor]:
        """One writer at a time: SQLite has no finer lock to take for `lock`."""
        cursor = self.conn.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        finally:
            self.settings.clear()
        cursor.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows one at a time, for tables too large to hold."""
        yield from self.conn.execute(sql, params)

    def close(self) -> None:
        self.conn.close()


class PostgresDatabase:
    """Read models in PostgreSQL. The projection's `?` placeholders become psycopg's `%s`;
    a transaction-scoped advisory lock lets one writer at a time move the read models. A
    table beside them that is not a read model names a `lock` of its own: its writers do not
    wait for the read models' (a province's payroll run keeps its draft while another's does)."""

    LOCK_KEY = 20250701
    postgres = True  # a reader's SQL may differ (collations)

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn = self._connect()
        self.column_types: dict[tuple[int, tuple[str, ...]], list[int]] = {}

    def _connect(self) -> Any:
        import psycopg

        # No JIT: it spends most of a second compiling each province's accounts query, which
        # then runs in a fraction of that. Custom plans only: psycopg prepares a statement run
        # five times, and PostgreSQL's generic plan for `notification_id > $1 LIMIT 1` is a
        # scan of the whole audit trail (every command's catch-up ran it, slower each month).
        return psycopg.connect(
            self.url, autocommit=True, options="-c jit=off -c plan_cache_mode=force_custom_plan"
        )

    @property
    def connection(self) -> Any:
        """The session, for what the ports do not say (COPY, binary results)."""
        return self._live()

    def _live(self) -> Any:
        """The connection, made again when the server closed the last one (a restart): a
        long-running process goes on once the server is back, instead of failing for ever."""
        if self.conn.closed:
            self.conn = self._connect()
        return self.conn

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")  # a literal % stays one

    @contextmanager
    def transaction(self, lock: Lock = None) -> Iterator[_PostgresCursor]:
        """`lock`: None for the read models' one; a name, or several names (taken in their
        sorted order, so that two transactions never wait for each other's), for a table or
        a part of the read models with a lock of its own; an empty tuple for none."""
        conn = self._live()
        with conn.transaction(), conn.cursor() as cursor:
            if lock is None:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (self.LOCK_KEY,))
            else:
                for name in sorted({lock} if isinstance(lock, str) else set(lock)):
                    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))
            yield _PostgresCursor(cursor, self.column_types)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._live().cursor() as cursor:
            cursor.execute(self._sql(sql), params)
            return cursor.fetchall()

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows one at a time through a server-side cursor, for tables too large to hold."""
        conn = self._live()
        with conn.transaction(), conn.cursor(name="ledger_stream") as cursor:
            cursor.itersize = 5000
            cursor.execute(self._sql(sql), params)
            yield from cursor

    def close(self) -> None:
        self.conn.close()


class PostgresScratch(PostgresDatabase):
    """Temporary tables of a session of their own on the store's server, named as the read
    models are: what `verify` rebuilds the read models into, to compare them with the kept
    ones in the server. The session's work is one transaction that sees the store as
    `snapshot` (an id from `pg_export_snapshot()` in the transaction that judges the rest), so
    the comparison reads what that transaction reads, and its own tables beside it. They are
    written without a log, seen by no other session, need no right but TEMPORARY, and vanish
    with the session, even one killed; nothing is ever committed."""

    def __init__(self, url: str, snapshot: str) -> None:
        super().__init__(url)
        self.conn.autocommit = False  # one transaction, from the first statement
        see_snapshot(self.conn, snapshot)
        # before the first temporary table: their pages in the session's own memory
        self.conn.execute("SET temp_buffers = '1GB'")
        # a rebuild's sums of every person's amounts, grouped in memory rather than on disk
        self.conn.execute("SET work_mem = '256MB'")
        # the rebuild's parts already take every core: a comparison's parallel workers would
        # only take turns with them
        self.conn.execute("SET max_parallel_workers_per_gather = 0")
        row = self.conn.execute("SELECT current_schema()").fetchone()
        self.live_schema = str(row[0]) if row else "public"
        # tables created and named without a schema are the session's temporary ones
        self.conn.execute("SET search_path = pg_temp")

    def _live(self) -> Any:
        return self.conn  # its tables and snapshot are the session's: never made again

    @contextmanager
    def transaction(self, lock: Lock = None) -> Iterator[_PostgresCursor]:
        """A part of the session's one transaction (no savepoint: thousands of them would slow
        every other session's snapshots), and no lock: no other session sees these tables."""
        with self.conn.cursor() as cursor:
            yield _PostgresCursor(cursor, self.column_types)

    def close(self) -> None:
        self.conn.rollback()
        super().close()


_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+-[0-9]+")


def see_snapshot(conn: Any, snapshot: str, read_only: bool = False) -> None:
    """Make the transaction that `conn` begins see the store as the snapshot exported by
    another session (`pg_export_snapshot()`, whose transaction must still be open)."""
    if not _SNAPSHOT_ID.fullmatch(snapshot):
        raise ValueError(f"not a snapshot id: {snapshot!r}")
    only = ", READ ONLY" if read_only else ""
    conn.execute(f"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ{only}")
    conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")


# smallint and integer: their binary forms are 2 and 4 bytes, and psycopg wraps a larger value
_NARROW_INTS = {21: (-(2**15), 2**15 - 1), 23: (-(2**31), 2**31 - 1)}


class _PostgresCursor:
    def __init__(
        self, cursor: Any, column_types: dict[tuple[int, tuple[str, ...]], list[int]]
    ) -> None:
        self.cursor = cursor
        self.column_types = column_types  # the connection's: looked up once per table

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.cursor.execute(PostgresDatabase._sql(sql), params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        return self.cursor.executemany(PostgresDatabase._sql(sql), params)

    def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Rows into a table through COPY: the set-based path for large batches. In binary:
        psycopg writes binary rows in about half the time of text ones (a national month's
        lines are written by every catch-up, verify and replay), and the server reads them
        without parsing numbers. Binary needs each column's type: asked of the server once
        for each table (by its oid: a table made again under its name is asked again)."""
        types, narrow = self._types(table, tuple(columns))
        if narrow and not isinstance(rows, list | tuple):
            rows = list(rows)  # read twice
        for i, low, high in narrow:  # psycopg would wrap such a value, not refuse it
            held = [v for row in rows if (v := row[i]) is not None]
            if held and not (low <= min(held) and max(held) <= high):
                wrong = next(v for v in held if not low <= v <= high)
                raise ValueError(f"{table}.{columns[i]}: {wrong} is out of its range")
        with self.cursor.copy(
            f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)

    def _types(
        self, table: str, columns: tuple[str, ...]
    ) -> tuple[list[int], list[tuple[int, int, int]]]:
        """The columns' type oids, and which of them are INTEGER or SMALLINT."""
        self.cursor.execute("SELECT to_regclass(%s)::oid", (table,))
        relation = self.cursor.fetchone()[0]
        found = self.column_types.get((relation, columns))
        if found is None:
            self.cursor.execute(
                "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s"
                " AND attnum > 0 AND NOT attisdropped",
                (relation,),
            )
            of = {str(name): int(oid) for name, oid in self.cursor.fetchall()}
            found = [of[c] for c in columns]
            self.column_types[(relation, columns)] = found
        narrow = [(i, *_NARROW_INTS[oid]) for i, oid in enumerate(found) if oid in _NARROW_INTS]
        return found, narrow

    def fetchall(self) -> list[Any]:
        return self.cursor.fetchall()  # type: ignore[no-any-return]

    def fetchone(self) -> Any:
        return self.cursor.fetchone()
