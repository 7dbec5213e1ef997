"""Kept drafts: the entries of each list's latest draft (`ledger.kept_drafts`), in a table of
the read-model database, between `payroll run` and `payroll approve`. Not a read model: not
derived from the events, not rebuilt, not guarded; its entries are trusted only as far as they
reproduce the digest the run recorded. A new draft of a list replaces its entries whole."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
    def __init__(self, db: ReadModelDatabase) -> None:
        self.db = db

    def keep(self, list_id: str, entries: Iterable[tuple[str, str]]) -> None:
        """Replace the list's entries with these (personal id, entry text), in one
        transaction: an approval reads the old draft's or the new one's, never a mix."""
        with self.db.transaction() as cursor:
            create_schema(cursor)  # a store made before drafts were kept
            cursor.execute(f"DELETE FROM {_TABLE} WHERE list_id = ?", (list_id,))
            batch: list[tuple[Any, ...]] = []
            for seq, (personal_id, entry) in enumerate(entries):
                batch.append((list_id, seq, personal_id, entry))
                if len(batch) >= _BATCH:
                    run_all(cursor, [(_INSERT, batch)])
                    batch = []
            run_all(cursor, [(_INSERT, batch)])

    def entries(self, list_id: str) -> Iterator[tuple[str, str]]:
        """The list's entries in the order kept; none when nothing was kept."""
        with self.db.transaction() as cursor:
            create_schema(cursor)  # a store made before drafts were kept: none
        return (
            (str(p), str(e))
            for p, e in self.db.stream(  # type: ignore[attr-defined]
                f"SELECT personal_id, entry FROM {_TABLE} WHERE list_id = ? ORDER BY seq",
                (list_id,),
            )
        )
