"""An enrolment's events are made in bulk, without the Beneficiary aggregates the library would
make for them (`EventStore.created_events`): the stored events must be those the library makes,
to the byte, whatever the fields hold, for the chain hashes them and Kafka carries them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.event_store import EventStore
from adapters.transcoder import LedgerTranscoder
from ledger.aggregates import Beneficiary
from ledger.bootstrap import Ledger
from ledger.inputs import ENROLMENT_COLUMNS
from tests.conftest import Files, enrolment


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventStore]:
    path = tmp_path_factory.mktemp("created") / "ledger.sqlite"
    with Ledger(f"sqlite:///{path}") as ledger:
        yield ledger.events


def fields_of(row: dict[str, Any], actor: str, source: str) -> dict[str, Any]:
    return {**{c: row[c] for c in ENROLMENT_COLUMNS}, "actor": actor, "source": source}


# what a staged row may hold: any text (quotes, escapes, non-Latin, the "_type_" key's text)
texts = st.text() | st.sampled_from(['"_type_"', "Nguyễn Thị Ánh", "\\u0000", ""])
stamps = st.datetimes(timezones=st.just(UTC))


def library_events(
    store: EventStore, fields: list[dict[str, Any]], stamp: datetime, monkeypatch: Any
) -> list[Any]:
    monkeypatch.setattr(Beneficiary.Enrolled, "create_timestamp", staticmethod(lambda: stamp))
    # one nonce, so that the two ways give the same bytes (a store draws each at random)
    monkeypatch.setattr(store.app.mapper.transcoder.personal, "nonce", bytes)
    return store.stored_events_of([Beneficiary(**f) for f in fields])


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(texts, min_size=1, max_size=4),
    refs=st.lists(texts, min_size=1, max_size=4),
    actor=texts,
    stamp=stamps,
)
def test_created_events_are_the_librarys_to_the_byte(
    store: EventStore, names: list[str], refs: list[str], actor: str, stamp: datetime
) -> None:
    fields = [
        fields_of(
            enrolment(f"0012{i:08d}", full_name=name, decision_ref=refs[i % len(refs)]),
            actor,
            f"file.csv row {i}",
        )
        for i, name in enumerate(names)
    ]
    with pytest.MonkeyPatch.context() as mp:
        expected = library_events(store, fields, stamp, mp)
        made = store.created_events(Beneficiary, Beneficiary.Enrolled, fields)
    assert made == expected


def test_a_field_that_is_not_text_is_written_as_the_library_writes_it(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast encoding is for text; anything else goes through the transcoder's checks."""
    stamp = datetime(2025, 7, 1, 8, 30, tzinfo=UTC)
    fields = [fields_of(enrolment("001200000001"), "op", "f row 2")]
    fields[0]["decision_ref"] = None  # NULL in the staging table: still text's kind
    expected = library_events(store, fields, stamp, monkeypatch)
    assert store.created_events(Beneficiary, Beneficiary.Enrolled, fields) == expected
    transcoder = store.app.mapper.transcoder
    assert isinstance(transcoder, LedgerTranscoder)
    odd = {"timestamp": stamp, "n": 2**70, "t": "x"}  # orjson refuses the integer
    assert transcoder.encode_text(odd) == transcoder.encode(odd)


def test_an_enrolment_stores_what_the_aggregate_reads_back(tmp_path: Path, files: Files) -> None:
    """The events made in bulk load as the aggregates they create."""
    path = files.enrolments([enrolment("001200000007", full_name="Trần Văn B")])
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
        ledger.enrol(path, "op")
        b = ledger.events.get(Beneficiary.create_id("001200000007"))
    assert (b.personal_id, b.full_name, b.version) == ("001200000007", "Trần Văn B", 1)


@pytest.mark.parametrize("change", ["extra", "missing"])
def test_fields_the_event_does_not_have_are_refused_not_dropped(
    store: EventStore, change: str
) -> None:
    fields = fields_of(enrolment("001299999999"), "maker", "test")
    if change == "extra":
        fields["nickname"] = "Út"
    else:
        del fields["decision_ref"]
    with pytest.raises((TypeError, KeyError)):
        store.created_events(Beneficiary, Beneficiary.Enrolled, [fields])
