"""The audit trail's text of an event's facts is compared, row by row, with a rebuild's
(`verify`): it must stay the text every stored row was written with, json.dumps with these
options, whatever the facts hold (text in any script, numbers, nested values, keys in any
order), and whichever way it is made."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from projections.readmodels import RecordedEvent, audit_facts, holds

SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=12), VALUES, max_size=8), st.text(max_size=8))
def test_the_facts_are_written_as_every_stored_row_was(payload: dict[str, Any], actor: str) -> None:
    event = RecordedEvent(1, "a", 1, "Beneficiary.Moved", "2025-07-01T00:00:00+00:00", payload)
    facts = {k: v for k, v in payload.items() if k not in ("actor", "source")}

    assert audit_facts(event) == json.dumps(facts, ensure_ascii=False, sort_keys=True, default=str)
    # who and from where are columns of their own, never among the facts
    stamped = payload | {"actor": actor, "source": "ledger enrol decisions.csv row 2"}
    assert audit_facts(RecordedEvent(1, "a", 1, "Beneficiary.Moved", "t", stamped)) == audit_facts(
        event
    )


KEYS = st.lists(st.text("0123456789-F", min_size=1, max_size=14), max_size=40)


@given(KEYS, st.booleans(), st.text("0123456789-F", min_size=1, max_size=14))
def test_a_bulk_events_summary_holds_exactly_its_keys_range(
    keys: list[str], columnar: bool, other: str
) -> None:
    """A bulk event's summary keeps its count and the range of its entries' keys, whichever
    way its entries are written (an empty range for none); `holds` finds every entry of it,
    and nothing outside."""
    if columnar:
        payload: dict[str, Any] = {"columns": ["x", "payment_id"], "lines": [[0, k] for k in keys]}
        kind, entries = "PaymentList.LinesIssued", "lines"
    else:
        payload = {"settlements": [{"payment_id": k, "status": "PAID"} for k in keys]}
        kind, entries = "PaymentList.LinesSettled", "settlements"
    summary = json.loads(audit_facts(RecordedEvent(1, "a", 1, kind, "t", payload)))

    assert summary[f"{entries}_count"] == len(keys) and entries not in summary
    assert summary["payment_id_range"] == ([min(keys), max(keys)] if keys else [])
    assert all(holds(summary, "payment_id", [k]) for k in keys)
    assert holds(summary, "payment_id", [other]) is (bool(keys) and min(keys) <= other <= max(keys))
    assert holds(summary, "payment_id", []) is False
    del summary["payment_id_range"]  # as an earlier version wrote it: only the bytes can tell
    assert holds(summary, "payment_id", keys) is None
