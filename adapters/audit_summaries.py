"""The audit trail's summaries of bulk events, completed for a store an earlier version
projected: what the owner's `ledger init` brings up to date.

A payment list's line events (a thousand lines, postings or settlements each) are summarised in
the audit trail by their count and, since this version, the range of their entries' keys
(`projections.readmodels.SUMMARISED`): `explain` reads only the events whose range may hold the
person. Rows written before have no range. `verify` compares the audit trail with a rebuild,
which writes the range, so those rows are rewritten here from their stored events, exactly as
the projection writes them now. Each batch is its own projection transaction: a run stopped
half-way leaves every row either as it was or complete, and a rerun completes the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from adapters.sql import ReadModelDatabase
from projections.readmodels import SUMMARISED, Projector, audit_facts

BATCH = 200

# A completed summary holds `"<key>_range": [` (facts are JSON with sorted keys and these
# separators): a row without it was written by an earlier version.
_COMPLETE = '%_range": [%'


def incomplete(db: ReadModelDatabase) -> Iterator[int]:
    """The notification ids of the bulk events whose summary has no range."""
    kinds = sorted(SUMMARISED)
    of_kinds = ",".join("?" * len(kinds))
    for (n,) in db.query(
        f"SELECT notification_id FROM audit_trail WHERE event_type IN ({of_kinds})"
        " AND (facts IS NULL OR facts NOT LIKE ?) ORDER BY notification_id",
        [*kinds, _COMPLETE],
    ):
        yield int(n)


def complete(
    events: Any, db: ReadModelDatabase, progress: Callable[[int, int], None] | None = None
) -> int:
    """Rewrite every summary without a range from its stored event; how many were rewritten.
    `progress(done, of)` after each batch."""
    todo = list(incomplete(db))
    done = 0
    for i in range(0, len(todo), BATCH):
        recorded = events.recorded_at(todo[i : i + BATCH])
        with db.transaction() as cursor:
            Projector.mark_projecting(cursor)
            for e in recorded:
                # the row's own event type too: a row naming another type is verify's finding
                done += cursor.execute(
                    "UPDATE audit_trail SET facts = ? WHERE notification_id = ? AND event_type = ?",
                    (audit_facts(e), e.notification_id, e.type),
                ).rowcount
        if progress is not None:
            progress(min(i + BATCH, len(todo)), len(todo))
    return done
