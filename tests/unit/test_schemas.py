"""The Avro schemas and their registry: every registered version of a subject can be read
by every later one, so a schema change that would strand readers of older events fails here."""

from __future__ import annotations

import copy
import json
from importlib import resources
from itertools import combinations
from typing import Any

import pytest

from adapters import avro


def raw_versions() -> dict[str, list[tuple[int, Any]]]:
    folder = resources.files("schemas")
    index = json.loads(folder.joinpath("registry.json").read_text("utf-8"))
    return {
        subject: sorted(
            (v["version"], json.loads(folder.joinpath(v["file"]).read_text("utf-8")))
            for v in versions
        )
        for subject, versions in index["subjects"].items()
    }


@pytest.mark.parametrize("subject", sorted(raw_versions()))
def test_every_version_reads_what_older_versions_wrote(subject: str) -> None:
    versions = raw_versions()[subject]
    pairs = list(combinations(versions, 2)) + [(v, v) for v in versions]
    for (old, writer), (new, reader) in pairs:
        assert avro.incompatibility(writer, reader) is None, f"{subject} v{new} reads v{old}"


def test_ids_are_unique_and_name_the_subject() -> None:
    registered = avro.registry()
    assert {s.subject for s in registered.values()} == set(raw_versions())
    assert len(registered) == sum(len(v) for v in raw_versions().values())


def _death_v1() -> dict[str, Any]:
    return raw_versions()["civil-registry.deaths-value"][0][1]


def test_the_check_catches_a_change_that_strands_old_readers() -> None:
    v1 = _death_v1()
    no_default = copy.deepcopy(v1)
    no_default["fields"].append({"name": "registry_code", "type": "string"})
    assert avro.incompatibility(v1, no_default) is not None
    fewer_symbols = copy.deepcopy(v1)
    fewer_symbols["fields"][1]["type"]["symbols"] = ["REGISTERED", "CORRECTED"]
    assert avro.incompatibility(v1, fewer_symbols) is not None
    middle_gone = copy.deepcopy(v1)
    middle_gone["fields"][1]["type"]["symbols"] = ["REGISTERED", "REVOKED"]
    assert avro.incompatibility(v1, middle_gone) is not None
    with_default = copy.deepcopy(v1)
    with_default["fields"].append(
        {"name": "registry_code", "type": ["null", "string"], "default": None}
    )
    assert avro.incompatibility(v1, with_default) is None


def test_wire_format_round_trip_and_refusals() -> None:
    import datetime
    import uuid

    event = {
        "notification_id": 42,
        "aggregate_id": str(uuid.uuid4()),
        "aggregate_version": 3,
        "event_type": "Beneficiary.Enrolled",
        "recorded_at": datetime.datetime(2025, 7, 1, 8, 0, 0, 123456, tzinfo=datetime.UTC),
        "payload": '{"personal_id":"001000000001"}',
        "chain_hash": "ab" * 32,
    }
    data = avro.encode("ledger.events-value", event)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == 1
    back = avro.decode("ledger.events-value", data)
    assert {**back, "aggregate_id": str(back["aggregate_id"])} == event
    with pytest.raises(avro.UndecodableMessage, match="wire format"):
        avro.decode("ledger.events-value", b"{json}")
    with pytest.raises(avro.UndecodableMessage, match="unknown schema id 99"):
        avro.decode("ledger.events-value", b"\x00\x00\x00\x00\x63" + data[5:])
    with pytest.raises(avro.UndecodableMessage, match="unknown schema id 1"):
        avro.decode("civil-registry.deaths-value", data)
