"""A `LinesIssued` event is projected by the names of its columns, not their places: the
columns of every list approved today come as the read model lists them and are taken as they
come; any other order, and the lines of lists approved before rule 4 (no registration number),
give the same rows and balances."""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from adapters.sql import SQLiteDatabase
from ledger.rules import ISSUED_FIELDS
from projections.readmodels import Projector, RecordedEvent

TEXT = st.text("abcdeĐơn 0123456789-", min_size=1, max_size=12)
FIELD = {
    "regular_amount": st.integers(0, 10**9),
    "funeral_amount": st.integers(0, 10**9),
    "arrears_amount": st.integers(0, 10**9),
    "total_amount": st.integers(-(10**9), 10**9),
}
line = st.fixed_dictionaries(
    {name: FIELD.get(name, TEXT) for name in ISSUED_FIELDS if name != "personal_id"}
    | {"personal_id": st.sampled_from(["001", "002", "003"])}
)


def projected(tmp: Path, columns: list[str], lines: list[dict[str, Any]]) -> dict[str, list]:
    db = SQLiteDatabase(tmp / f"{uuid.uuid4().hex}.sqlite")
    try:
        with db.transaction() as cursor:
            Projector.create_schema(cursor)
            event = RecordedEvent(
                1,
                "list-1",
                3,
                "PaymentList.LinesIssued",
                "2025-07-01T00:00:00+00:00",
                {"columns": columns, "lines": [[ln[c] for c in columns] for ln in lines]},
            )
            Projector().apply(cursor, [event])
        return {t: db.query(f"SELECT * FROM {t} ORDER BY 1") for t in ("payment_lines", "balances")}
    finally:
        db.close()


@given(st.lists(line, max_size=8, unique_by=lambda ln: ln["payment_id"]), st.randoms())
def test_lines_project_alike_whatever_the_order_of_their_columns(
    tmp_path_factory: Any, lines: list[dict[str, Any]], rng: random.Random
) -> None:
    tmp = tmp_path_factory.mktemp("lines")
    as_today = projected(tmp, list(ISSUED_FIELDS), lines)
    shuffled = list(ISSUED_FIELDS)
    rng.shuffle(shuffled)
    assert projected(tmp, shuffled, lines) == as_today
    before_rule_4 = [c for c in shuffled if c != "registration_number"]
    old = projected(tmp, before_rule_4, lines)
    assert old["balances"] == as_today["balances"]
    assert old["payment_lines"] == [
        (*row[:-1], None) for row in as_today["payment_lines"]
    ]  # registration_number is the table's last column
    assert len(as_today["payment_lines"]) == len(lines)
