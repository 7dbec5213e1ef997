"""A record of `ledger.events`: its payload written with the standard library's very bytes
and read back for the projection as the very objects the standard library gives (both by
orjson), and a payload that is not a JSON object stops the projection with the record's
place named, not a traceback."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters import avro
from adapters.kafka_log import SUBJECT, payload_text
from adapters.kafka_projection import PoisonEvent, recorded_event


@dataclass
class Record:  # what kafka-python hands the projection: its place and its bytes
    value: bytes
    topic: str = "ledger.events"
    partition: int = 2
    offset: int = 41


def record(payload: str) -> Record:
    return Record(
        avro.encode(
            SUBJECT,
            {
                "notification_id": 7,
                "aggregate_id": "3f1c0e6e-4b8e-5d51-9a0e-2f4f1b7c9a10",
                "aggregate_version": 1,
                "event_type": "Beneficiary.Enrolled",
                "recorded_at": datetime(2025, 7, 1, 2, 3, 4, 567000, tzinfo=UTC),
                "payload": payload,
                "chain_hash": None,
            },
        )
    )


# what events hold: texts in any script, integers of 64 bits, lists and objects of them
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(st.characters(blacklist_categories=("Cs",))),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(st.characters(blacklist_categories=("Cs",))), values))
def test_a_payload_reads_as_the_standard_library_reads_it(payload: dict[str, Any]) -> None:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))  # as published
    event = recorded_event(record(text))
    assert event.payload == json.loads(text)
    assert event.notification_id == 7
    assert event.recorded_at == "2025-07-01T02:03:04.567000+00:00"


@given(st.dictionaries(st.text(st.characters(blacklist_categories=("Cs",))), values))
def test_a_payload_is_published_as_the_standard_library_writes_it(
    payload: dict[str, Any],
) -> None:
    assert payload_text(payload) == json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def test_an_integer_past_64_bits_is_published_too() -> None:
    payload = {"amount": 2**70, "name": "Nguyễn\u0007"}
    assert json.loads(payload_text(payload)) == payload


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("{not json", "its payload is not JSON: "),
        ('[{"a": 1}]', "its payload is JSON (list) but not an object"),
        ('"\\u001b[31m"', "its payload is JSON (str) but not an object"),
        ("NaN", "its payload is not JSON: "),
    ],
)
def test_a_payload_that_is_not_an_object_stops_the_projection_naming_its_place(
    payload: str, reason: str
) -> None:
    with pytest.raises(PoisonEvent) as refused:
        recorded_event(record(payload))
    message = str(refused.value)
    assert message.startswith(f"ledger.events partition 2 offset 41: {reason}")
    assert "\x1b" not in message
