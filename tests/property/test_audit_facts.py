"""The audit trail's text of an event's facts is compared, row by row, with a rebuild's
(`verify`): it must stay the text every stored row was written with, json.dumps with these
options, whatever the facts hold (text in any script, numbers, nested values, keys in any
order), and whichever way it is made."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from projections.readmodels import RecordedEvent, _facts

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

    assert _facts(event) == json.dumps(facts, ensure_ascii=False, sort_keys=True, default=str)
    # who and from where are columns of their own, never among the facts
    stamped = payload | {"actor": actor, "source": "ledger enrol decisions.csv row 2"}
    assert _facts(RecordedEvent(1, "a", 1, "Beneficiary.Moved", "t", stamped)) == _facts(event)
