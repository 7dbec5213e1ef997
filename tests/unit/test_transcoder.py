"""The store's events read by orjson give the very objects the library's own decoder gives,
whatever the event holds: the fast reading is taken only when the event's timestamp is its one
transcoded value, and anything else falls back to the library."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
from hypothesis import given
from hypothesis import strategies as st

from adapters.transcoder import LedgerTranscoder


def transcoders() -> tuple[JSONTranscoder, LedgerTranscoder]:
    library, ours = JSONTranscoder(), LedgerTranscoder()
    for t in (library, ours):
        for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
            t.register(transcoding)
    return library, ours


LIBRARY, OURS = transcoders()

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(),  # any text, "_type_" and quotes in it too
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["_type_", "_data_", "a", "lines"]) | st.text(), inner)
    ),
    max_leaves=20,
)
transcoded = st.uuids() | st.decimals(allow_nan=False, allow_infinity=False) | st.datetimes()
anything = st.recursive(
    plain | transcoded,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
stamps = st.datetimes(timezones=st.just(UTC))


def read_alike(state: bytes) -> Any:
    """What both read of the bytes; the same refusal when the library refuses them (a
    `_type_` key the library cannot read back)."""
    try:
        expected = LIBRARY.decode(state)
    except Exception as refused:
        with pytest.raises(type(refused)):
            OURS.decode(state)
        return None
    read = OURS.decode(state)
    assert read == expected
    return read


@given(payload=st.dictionaries(st.text(), anything, max_size=6), stamp=stamps)
def test_any_event_reads_the_same_as_the_library_reads_it(payload: dict, stamp: datetime) -> None:
    read_alike(LIBRARY.encode({**payload, "timestamp": stamp}))


@given(payload=st.dictionaries(st.text(), plain, max_size=6), stamp=stamps)
def test_an_event_of_plain_values_reads_the_same(payload: dict, stamp: datetime) -> None:
    """The events this ledger records: JSON values and the timestamp (the fast reading)."""
    read = read_alike(LIBRARY.encode({**payload, "timestamp": stamp}))
    assert read is None or isinstance(read["timestamp"], datetime)


def test_a_recorded_event_keeps_its_types() -> None:
    stamp = datetime(2025, 7, 1, 3, 4, 5, 678901, tzinfo=UTC)
    lines = [["2025-07-01-001234567890", 500_000, None, 'Nguyễn Văn "_type_" An']]
    state = LIBRARY.encode({"lines": lines, "actor": "maker", "timestamp": stamp})
    assert OURS.decode(state) == {"lines": lines, "actor": "maker", "timestamp": stamp}
    other = {"id": UUID(int=7), "k": Decimal("1.5"), "timestamp": stamp + timedelta(days=1)}
    assert OURS.decode(LIBRARY.encode(other)) == other
