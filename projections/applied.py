"""Which stored events the read models hold.

In-process, events are applied in notification order and the position says how far. From
Kafka (`ledger project`), partitioned by aggregate, events of different aggregates arrive in
any order: at a given moment some events above a gap are applied while one below it is not
yet. The audit trail holds one row per applied event, so the store and the audit trail
together say what is applied. Because the projections commute, the read models are the same
as if exactly those events had been applied in notification order, which is how `verify`
rebuilds them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from projections.readmodels import Projector, RecordedEvent


def contiguous_watermark(db: Any, events_table: str, id_column: str = "notification_id") -> int:
    """The highest notification id at or below which every stored event has been applied to
    the read models in `db`. `events_table` and `id_column` name the store's events as SQL
    on `db` sees them (the read models live beside the events)."""
    # in-process, the position moves with the rows: all below it is applied, and an audit
    # row removed there must stay a difference, not lower the watermark
    applied_in_order = Projector.position(db)
    first_missing = db.query(
        f"SELECT MIN(e.{id_column}) FROM {events_table} e WHERE e.{id_column} > ?"
        f" AND NOT EXISTS (SELECT 1 FROM audit_trail a WHERE a.notification_id = e.{id_column})",
        (applied_in_order,),
    )[0][0]
    if first_missing is not None:
        return int(first_missing) - 1
    latest = db.query(f"SELECT COALESCE(MAX({id_column}), 0) FROM {events_table}")[0][0]
    return max(applied_in_order, int(latest))


def applied_above(db: Any, watermark: int, page: int = 5000) -> Iterator[int]:
    """The notification ids applied above the watermark (out of order), ascending."""
    after = watermark
    while rows := db.query(
        "SELECT notification_id FROM audit_trail WHERE notification_id > ?"
        " ORDER BY notification_id LIMIT ?",
        (after, page),
    ):
        yield from (int(n) for (n,) in rows)
        after = int(rows[-1][0])


def only_applied(
    batches: Iterable[list[RecordedEvent]], db: Any, watermark: int
) -> Iterator[list[RecordedEvent]]:
    """Batches of stored events in notification order, keeping those the read models in `db`
    hold: every one at or below the watermark, and those above it the audit trail shows
    applied. Stops reading once nothing applied is left."""
    above = applied_above(db, watermark)
    wanted = next(above, None)
    for batch in batches:
        kept = []
        for e in batch:
            n = e.notification_id
            if n > watermark:
                while wanted is not None and wanted < n:  # an audit row with no stored
                    wanted = next(above, None)  # event: the comparison names it
                if wanted is None:
                    break
                if wanted != n:
                    continue
            kept.append(e)
        if kept:
            yield kept
        if wanted is None and batch and batch[-1].notification_id > watermark:
            return
