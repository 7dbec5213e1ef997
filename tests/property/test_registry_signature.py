"""The registry's signature, as properties: whatever a notification holds (any Unicode in its
names, any number of events), what a registry signs by the contract's text verifies once the
body has crossed the wire as JSON, and a change to any one value of the header or the message
makes it fail; the events read from it are the ones that were sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.dci_notify import Refused, SenderKey, parse, registrations, verify
from tests.registry_messages import Registry, death_event

REGISTRY = Registry()
KEYS = {REGISTRY.kid: SenderKey(REGISTRY.kid, REGISTRY.sender_id, REGISTRY.key.public_key())}

names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=30)
events = st.lists(
    st.builds(
        lambda pid, surname, given, kind: death_event(pid, name=(surname, "", given), kind=kind),
        st.from_regex(r"\A[0-9]{12}\Z"),
        names,
        names,
        st.sampled_from(["death", "Death", "death_correction", "death_revocation"]),
    ),
    min_size=1,
    max_size=5,
)


def leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every string, integer or boolean in a JSON value."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaves(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in leaves(v, (*path, i))]
    return [path]


def changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if value is None:
        return "x"
    return str(value) + "x"


@settings(max_examples=60, deadline=None)
@given(sent=events, which=st.integers(min_value=0))
def test_a_signed_notification_verifies_and_any_change_breaks_it(
    sent: list[dict[str, Any]], which: int
) -> None:
    notification = REGISTRY.notification(*sent)
    wire = json.dumps(notification, ensure_ascii=bool(which % 2)).encode()

    received = parse(wire)
    signed = verify(received, KEYS)
    assert signed.sender.sender_id == REGISTRY.sender_id
    read = registrations(received)
    assert [fields["event_id"] for _, fields in read] == [e["reference_id"] for e in sent]
    assert [fields["personal_id"] for _, fields in read] == [
        e["data"]["reg_records"]["identifier"][0]["identifier_value"] for e in sent
    ]

    tampered = json.loads(wire)
    paths = [("header", *p) for p in leaves(tampered["header"])] + [
        ("message", *p) for p in leaves(tampered["message"])
    ]
    path = paths[which % len(paths)]
    holder = tampered
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = changed(holder[path[-1]])
    with pytest.raises(Refused) as refused:
        verify(parse(json.dumps(tampered).encode()), KEYS)
    assert refused.value.reason in ("bad-signature", "wrong-sender")
