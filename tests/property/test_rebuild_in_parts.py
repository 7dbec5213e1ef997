"""Read models rebuilt in parts and merged are the read models: a random history's events are
split by aggregate into random parts, each part rebuilt into a file of its own as `replay
--jobs N` does (the balances added up at the end), the files merged, and every table must
equal the live projection's, which upserts batch by batch in notification order. What the
merge must get right: a person's balance made of amounts from several parts, the general
ledger's sums, a settlement file that spans lists in different parts (the earliest wins), an
event id reused by death records in different parts (the least wins)."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.sql import SQLiteDatabase
from projections.readmodels import READ_MODEL_TABLES, RecordedEvent
from replay.parts import merge_files
from replay.rebuild import rebuild
from tests.conftest import Files
from tests.property.test_projection_order import PLAN, an_event_id_reused, history, projected


def in_parts(
    root: Path, events: list[RecordedEvent], part_of: dict[str, int], parts: int
) -> dict[str, list[tuple[Any, ...]]]:
    """Each part's events rebuilt into its own file, in notification order and batches of
    random sizes, then the other files merged into the first, as `replay --jobs` does: its
    tables, rows sorted."""
    files = []
    for part in range(parts):
        mine = [e for e in events if part_of[e.aggregate_id] == part]
        file = root / f"part-{part}.sqlite"
        db = SQLiteDatabase(file, scratch=True)
        try:
            rebuild(db, (mine[i : i + 7] for i in range(0, len(mine), 7)), readers_indexes=False)
        finally:
            db.close()
        files.append(file)
    merged = SQLiteDatabase(files[0], scratch=True)
    try:
        merge_files(merged, files[1:])
        return {t: sorted(merged.query(f"SELECT * FROM {t}"), key=repr) for t in READ_MODEL_TABLES}
    finally:
        merged.close()


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=PLAN, parts=st.integers(2, 4), seed=st.integers(0, 2**32))
def test_read_models_rebuilt_in_parts_and_merged_equal_the_live_ones(
    plan: dict[str, Any], parts: int, seed: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        events = history(plan, root)
        live = projected(root / "live.sqlite", iter([events]))
        rng = random.Random(seed)
        part_of = {e.aggregate_id: rng.randrange(parts) for e in events}
        got = in_parts(root, events, part_of, parts)
        for table in READ_MODEL_TABLES:
            assert got[table] == live[table], table
        assert got["balances"] and got["general_ledger"]


def test_a_settlement_file_of_lists_in_two_parts_keeps_its_earliest_row(
    tmp_path: Path,
) -> None:
    plan = {
        "channels": ["POST", "BANK", "POST", "BANK"],
        "periods": [{"ops": [], "paid": [], "returned": []}],
    }
    events = history(plan, tmp_path)
    settled = [e for e in events if e.type == "PaymentList.LinesSettled"]
    assert len({e.aggregate_id for e in settled}) > 1  # one file, several lists
    # the later list's event first in a part of its own: the merge must still keep the earliest
    part_of = {e.aggregate_id: 0 for e in events}
    part_of[settled[-1].aggregate_id] = 1
    live = projected(tmp_path / "live.sqlite", iter([events]))
    got = in_parts(tmp_path, events, part_of, 2)
    assert got["settlement_files"] == live["settlement_files"]
    assert got["payment_lines"] == live["payment_lines"]


def test_an_event_id_reused_by_records_in_two_parts_is_kept_once(
    tmp_path: Path, files: Files
) -> None:
    events, first, reused = an_event_id_reused(tmp_path, files)
    live = projected(tmp_path / "live.sqlite", iter([events]))
    for winner_part in (0, 1):
        root = tmp_path / f"parts-{winner_part}"
        root.mkdir()
        part_of = {e.aggregate_id: 1 - winner_part for e in events}
        part_of[min(first.aggregate_id, reused.aggregate_id)] = winner_part
        got = in_parts(root, events, part_of, 2)
        assert got["death_registration_events"] == live["death_registration_events"]
        assert len(got["death_registration_events"]) == 1
