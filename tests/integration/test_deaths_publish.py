"""The registry side, against the real broker: `ledger deaths publish` sends a file's
registrations keyed by personal id in the wire format; messages written with schema v1 and v2
in one topic are all read."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import uuid
from datetime import datetime
from importlib import resources

import fastavro
import pytest

from adapters import avro
from adapters.civil_registry import SUBJECT, avro_record, row_fields
from ledger.inputs import DeathRow
from tests.conftest import Files, death
from tests.integration.test_publish import consume_all

pytestmark = pytest.mark.integration


def test_a_file_is_published_keyed_by_person_in_v1_or_v2_alike(
    files: Files, kafka_bootstrap: str
) -> None:
    topic = f"civil-registry.deaths.test-{uuid.uuid4().hex[:8]}"
    sent = [death(f"00100000000{i}") for i in range(5)]
    path = files.deaths(sent)
    env = {**os.environ, "LEDGER_KAFKA": kafka_bootstrap, "LEDGER_DEATHS_TOPIC": topic}
    run = subprocess.run(
        [sys.executable, "-m", "tests.ledger_as_role", "deaths", "publish", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "5 registrations published" in run.stdout

    # a registry still on v1 writes into the same topic
    from kafka import KafkaProducer

    v1 = fastavro.parse_schema(
        json.loads(resources.files("schemas").joinpath("death_registration.v1.avsc").read_text())
    )
    old = death("001000000009")
    body = io.BytesIO()
    body.write(struct.pack(">bI", 0, 2))  # schema id 2: DeathRegistration v1
    fastavro.schemaless_writer(body, v1, avro_record(DeathRow.model_validate(old)))
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    producer.send(topic, key=old["personal_id"].encode(), value=body.getvalue())
    producer.flush()
    producer.close()

    records = consume_all(kafka_bootstrap, topic)
    assert len(records) == 6
    read = {}
    for r in records:
        schema_id = int.from_bytes(r.value[1:5], "big")
        fields = row_fields(avro.decode(SUBJECT, r.value))
        assert r.key.decode() == fields["personal_id"]
        read[fields["event_id"]] = (schema_id, fields)
    for row in [*sent, old]:
        schema_id, fields = read[row["event_id"]]
        assert schema_id == (2 if row is old else 3)
        got, want = DeathRow.model_validate(fields), DeathRow.model_validate(row)
        # the same instant; Avro carries it in UTC
        assert datetime.fromisoformat(got.registered_at) == datetime.fromisoformat(
            want.registered_at
        )
        assert got.model_copy(update={"registered_at": ""}) == want.model_copy(
            update={"registered_at": ""}
        )
