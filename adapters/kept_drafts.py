"""Kept drafts: the entries of each list's latest draft (`ledger.kept_drafts`), in a table of
the read-model database, between `payroll run` and `payroll approve`. Not a read model: not
derived from the events, not rebuilt, not guarded; its entries are trusted only as far as they
reproduce the digest the run recorded. A new draft of a list replaces its entries whole."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from adapters.sql import ReadModelDatabase
from projections.writes import Insert, run_all

_TABLE = "kept_draft_entries"
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {_TABLE} (list_id TEXT NOT NULL, seq BIGINT NOT NULL,"
    " personal_id TEXT NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (list_id, seq))"
)
_INSERT = Insert(_TABLE, ("list_id", "seq", "personal_id", "entry"))
_BATCH = 5000


def create_schema(cursor: Any) -> None:
    cursor.execute(_SCHEMA)


class KeptDrafts:
    """On a connection of its own (opened when first asked for): a payroll run keeps its
    entries while it still reads the province's accounts on the command's connection."""

    def __init__(self, connect: Callable[[], ReadModelDatabase]) -> None:
        self._connect = connect
        self._db: ReadModelDatabase | None = None

    @property
    def db(self) -> ReadModelDatabase:
        if self._db is None:
            self._db = self._connect()  # the table is made with the store (`ledger init`)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()  # type: ignore[attr-defined]
            self._db = None

    def keep(self, list_id: str, entries: Iterable[tuple[str, str]]) -> None:
        """Replace the list's entries with these (personal id, entry text), in one
        transaction: an approval reads the old draft's or the new one's, never a mix. Two
        runs of one list keep theirs one after the other; runs of other lists, beside it."""
        with self.db.transaction(lock=f"{_TABLE} {list_id}") as cursor:
            cursor.execute(f"DELETE FROM {_TABLE} WHERE list_id = ?", (list_id,))
            batch: list[tuple[Any, ...]] = []
            for seq, (personal_id, entry) in enumerate(entries):
                batch.append((list_id, seq, personal_id, entry))
                if len(batch) >= _BATCH:
                    run_all(cursor, [(_INSERT, batch)])
                    batch = []
            run_all(cursor, [(_INSERT, batch)])

    def discard_approved(self) -> None:
        """Drop the entries of lists approved since they were kept: those of an approval
        that stopped before it discarded them. On PostgreSQL the lists' ids are looked up
        in the key's index: a join read every entry kept, a national month's."""
        approved = "SELECT list_id FROM payment_lists WHERE status <> 'DRAFT'"
        with self.db.transaction(lock=_TABLE) as cursor:
            cursor.execute(
                f"DELETE FROM {_TABLE} WHERE list_id = ANY(ARRAY({approved}))"
                if hasattr(cursor, "copy_rows")  # PostgreSQL's
                else f"DELETE FROM {_TABLE} WHERE list_id IN ({approved})"
            )

    def discard(self, list_id: str) -> None:
        """Drop the list's entries (once approved, its events hold what was kept)."""
        with self.db.transaction(lock=f"{_TABLE} {list_id}") as cursor:
            cursor.execute(f"DELETE FROM {_TABLE} WHERE list_id = ?", (list_id,))

    def deaths_since(self, list_id: str, known_through: int) -> int:
        """How many people of the kept draft had their death record changed after the
        notification `known_through` (by the read models)."""
        return int(
            self.db.query(
                f"SELECT COUNT(DISTINCT k.personal_id) FROM {_TABLE} k"
                " JOIN deaths d ON d.personal_id = k.personal_id"
                " JOIN audit_trail a ON a.aggregate_id = d.aggregate_id"
                " WHERE k.list_id = ? AND a.notification_id > ?",
                (list_id, known_through),
            )[0][0]
        )

    def entries(self, list_id: str) -> Iterator[tuple[str, str]]:
        """The list's entries in the order kept; none when nothing was kept."""
        return (
            (str(p), str(e))
            for p, e in self.db.stream(  # type: ignore[attr-defined]
                f"SELECT personal_id, entry FROM {_TABLE} WHERE list_id = ? ORDER BY seq",
                (list_id,),
            )
        )
