"""A staging area: the checked rows of a large input file kept in a temporary table of the
read-model database between the file's check and its application, so that a file of millions
of rows is checked whole, with set-based queries, and applied in chunks without ever being held
in memory. The table is the connection's own (TEMP): nobody else sees it, and it goes with the
connection."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from adapters.sql import ReadModelDatabase
from projections.writes import Insert, run_all

_NAME = re.compile(r"[a-z_]{1,40}")


class StagingTable:
    """Rows of one input, in a table that queries name `{staged}`."""

    def __init__(
        self, db: ReadModelDatabase, name: str, columns: Sequence[tuple[str, str]]
    ) -> None:
        if not _NAME.fullmatch(name) or not all(_NAME.fullmatch(c) for c, _ in columns):
            raise ValueError(f"not a staging table name: {name!r}")
        self.db = db
        self.table = f"staged_{name}"
        self.insert = Insert(self.table, tuple(c for c, _ in columns))
        with db.transaction(lock=()) as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.table}")
            cursor.execute(
                f"CREATE TEMP TABLE {self.table} ({', '.join(f'{c} {t}' for c, t in columns)})"
            )

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            with self.db.transaction(lock=()) as cursor:
                run_all(cursor, [(self.insert, rows)])

    def index(self, *columns: str) -> None:
        """An index, once the rows are in, and the table's statistics: nothing gathers them
        for a temporary table, and without them PostgreSQL guesses a few hundred rows and
        joins a national file to its lines by nested loops (a camt.054 of 3.8 M transfers
        never finished; with them its join takes half a minute)."""
        with self.db.transaction(lock=()) as cursor:
            cursor.execute(
                f"CREATE INDEX {self.table}_{'_'.join(columns)} ON {self.table}"
                f" ({', '.join(columns)})"
            )
            cursor.execute(f"ANALYZE {self.table}")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.db.query(sql.format(staged=self.table), params)

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        return self.db.stream(sql.format(staged=self.table), params)  # type: ignore[attr-defined, no-any-return]

    def close(self) -> None:
        with self.db.transaction(lock=()) as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.table}")
