"""The audit trail's summaries of bulk events, completed for a store an earlier version
projected: what the owner's `ledger init` brings up to date.

A payment list's line events (a thousand lines, postings or settlements each) are summarised in
the audit trail by their count and, since this version, the range of their entries' keys
(`projections.readmodels.SUMMARISED`): `explain` reads only the events whose range may hold the
person. Rows written before have no range. `verify` compares the audit trail with a rebuild,
which writes the range, so those rows are completed here from their stored events, exactly as
the projection writes them now.

Only a row that is what the projection wrote before is completed: its text is the new summary
without the range, and the update says so (`WHERE facts = ?`). A row that differs otherwise
(someone changed it) is left as it is, and counted, for `verify` to name: completing it would
erase the evidence. Each batch is its own projection transaction: a run stopped half-way
leaves every row either as it was or complete, and a rerun completes the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from adapters.sql import ReadModelDatabase
from projections.readmodels import SUMMARISED, Projector, audit_facts

BATCH = 200

# A completed summary holds `"<key>_range": [` (facts are JSON with sorted keys and these
# separators; a `"` inside a value is escaped, so only a key matches): a row without it was
# written by an earlier version.
_COMPLETE = '%\\_range": [%'


@dataclass(frozen=True)
class Completed:
    """What `complete` did: the summaries completed, and those left as they are because they
    are not what an earlier version wrote of their events (`verify` names them)."""

    completed: int = 0
    left: int = 0


def incomplete(db: ReadModelDatabase) -> Iterator[tuple[int, str | None]]:
    """The notification id and facts of each bulk event whose summary has no range."""
    kinds = sorted(SUMMARISED)
    of_kinds = ",".join("?" * len(kinds))
    for n, facts in db.query(
        f"SELECT notification_id, facts FROM audit_trail WHERE event_type IN ({of_kinds})"
        " AND (facts IS NULL OR facts NOT LIKE ? ESCAPE '\\') ORDER BY notification_id",
        [*kinds, _COMPLETE],
    ):
        yield int(n), facts


def earlier(summary: str) -> str:
    """A summary as an earlier version wrote it: without its range."""
    facts = json.loads(summary)
    for _, key in SUMMARISED.values():
        facts.pop(f"{key}_range", None)
    return json.dumps(facts, ensure_ascii=False, sort_keys=True, default=str)


def complete(
    events: Any, db: ReadModelDatabase, progress: Callable[[int, int], None] | None = None
) -> Completed:
    """Complete every summary without a range that is what an earlier version wrote of its
    stored event. `progress(done, of)` after each batch."""
    todo = list(incomplete(db))
    done = left = 0
    for i in range(0, len(todo), BATCH):
        batch = dict(todo[i : i + BATCH])
        recorded = events.recorded_at(list(batch))
        with db.transaction() as cursor:
            Projector.mark_projecting(cursor)
            for e in recorded:
                now = audit_facts(e)
                # the row's own type and text as the projection wrote them, or left alone
                changed = cursor.execute(
                    "UPDATE audit_trail SET facts = ? WHERE notification_id = ?"
                    " AND event_type = ? AND facts = ?",
                    (now, e.notification_id, e.type, earlier(now)),
                ).rowcount
                done += changed
                left += 1 - changed
        left += len(batch) - len(recorded)  # no stored event of that notification id
        if progress is not None:
            progress(min(i + BATCH, len(todo)), len(todo))
    return Completed(done, left)
