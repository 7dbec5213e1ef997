"""The store's events read by orjson give the very objects the library's own decoder gives,
whatever the event holds: the fast reading is taken only when the event's timestamp is its one
transcoded value, and anything else falls back to the library."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)
from hypothesis import given
from hypothesis import strategies as st

from adapters.transcoder import LedgerTranscoder
from ledger import aggregates
from ledger.application import Ledger
from tests.conftest import Files, death, enrolment, query_store, settlement


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


written = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # past 64 bits too: the library writes those
    | st.text()  # control characters, quotes, any plane
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.datetimes(timezones=st.none() | st.just(UTC)),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(), inner, max_size=4)
    ),
    max_leaves=25,
)


@given(payload=st.dictionaries(st.text(), written, max_size=6), stamp=stamps)
def test_an_event_is_written_with_the_library_bytes(payload: dict, stamp: datetime) -> None:
    """The same bytes, so the hash chain, Kafka's copy and older readers never see a change."""
    state = {**payload, "timestamp": stamp}
    assert OURS.encode(state) == LIBRARY.encode(state)


def test_an_event_with_a_uuid_or_an_enum_field_is_written_by_the_library() -> None:
    class Kind(Enum):
        A = "a"

    stamp = datetime(2025, 7, 1, tzinfo=UTC)
    with_uuid = {"list_id": UUID(int=3), "timestamp": stamp}
    assert OURS.encode(with_uuid) == LIBRARY.encode(with_uuid)
    with pytest.raises(TranscodingNotRegisteredError):  # as the library refuses it
        OURS.encode({"kind": Kind.A, "timestamp": stamp})


def test_no_event_of_the_ledger_declares_a_field_orjson_would_write_otherwise() -> None:
    """orjson writes a UUID or an Enum nested anywhere in an event its own way; the fields
    of this ledger's events are text, numbers, lists and mappings of them (the rows typed
    Any are lines, postings and settlements: the next test reads them back)."""
    found = []
    for aggregate in vars(aggregates).values():
        if not (isinstance(aggregate, type) and issubclass(aggregate, Aggregate)):
            continue
        for event_class in vars(aggregate).values():
            if not (isinstance(event_class, type) and issubclass(event_class, Aggregate.Event)):
                continue
            for klass in event_class.__mro__:
                for name, kind in getattr(klass, "__annotations__", {}).items():
                    if name.startswith("originator_id"):
                        continue  # the library's, not in the stored state
                    if any(word in str(kind) for word in ("UUID", "Enum", "float")):
                        found.append(f"{aggregate.__name__}.{event_class.__name__}.{name}")
    assert found == []


def test_every_kind_of_recorded_event_is_stored_as_the_library_writes_it(
    tmp_path: Path, files: Files
) -> None:
    """A store of every kind of event the ledger records (lines, postings, settlements,
    deaths with a claimant, moves, holds, a rate change): each state as stored is the bytes
    the library writes for the objects it reads back, and reads back the same."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    people = [f"00700000000{i}" for i in range(4)]
    with Ledger(url) as ledger:
        ledger.enrol(files.enrolments([enrolment(p) for p in people]), "maker")
        ledger.import_deaths(files.deaths([death(people[0])]), "registry")
        ledger.move(people[1], "04", "00001", "officer")
        ledger.hold(people[2], "under review", "officer")
        ledger.release(people[2], "officer")
        ledger.propose_rates("2025-07", "maker", amount=520_000)
        ledger.approve_reference_changes("checker")
        ledger.run_payroll("2025-07", None, "maker")
        ledger.approve_payroll("2025-07", None, "checker")
        paid = f"2025-07-01-{people[3]}"
        ledger.settle(files.settlements([settlement(paid)]), "maker")
    states = query_store(url, "SELECT topic, state FROM stored_events ORDER BY rowid")
    kinds = {topic.rsplit(":", 1)[1] for topic, _ in states}
    assert {
        "PaymentList.LinesIssued",
        "PaymentList.LinesSettled",
        "DeathRecord.Registered",
    } <= kinds
    assert "ReferenceDataHistory.StandardLevelSet" in kinds
    for _, state in states:
        objects = LIBRARY.decode(bytes(state))
        assert LIBRARY.encode(objects) == bytes(state)
        assert OURS.decode(bytes(state)) == objects
