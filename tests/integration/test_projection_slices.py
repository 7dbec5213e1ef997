"""`ledger project` decodes and applies a poll a slice of bytes at a time, so that a poll of an
approval's events is never held decoded whole. The read models must not depend on the slicing:
a projection one event per slice, with re-sent events falling in other slices than their first
copy, equals a projection of whole polls."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from adapters import kafka_projection
from adapters.kafka_log import TopicSettings
from adapters.kafka_projection import ProjectionWorker
from adapters.sql import PostgresDatabase
from projections.readmodels import Projector
from replay.rebuild import differences
from tests.conftest import Files, new_store, read_models_of_topic
from tests.integration.test_publish import consume_all, published

pytestmark = pytest.mark.integration


def projected(
    bootstrap: str, topic: str, url: str, slice_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> PostgresDatabase:
    monkeypatch.setattr(kafka_projection, "APPLY_BYTES", slice_bytes)
    db = PostgresDatabase(url)
    with db.transaction() as cursor:  # the tables are the owner's to make (`ledger init`)
        Projector.create_schema(cursor)
    read_models_of_topic(bootstrap, topic, url)
    worker = ProjectionWorker(db, bootstrap, TopicSettings(topic, 3), f"g-{uuid.uuid4().hex}")
    try:
        worker.run(once=True)
    finally:
        worker.close()
    return db


def test_slices_of_a_poll_give_the_read_models_whole_polls_give(
    files: Files,
    kafka_bootstrap: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = new_store("postgresql", tmp_path, request)
    # half the history sent twice, as after a crash of the publisher
    settings, stored = published(store, files, kafka_bootstrap, 40, resend_from=1 / 2)
    assert len(consume_all(kafka_bootstrap, settings.name)) > len(stored)

    one_by_one = projected(
        kafka_bootstrap, settings.name, new_store("postgresql", tmp_path, request), 1, monkeypatch
    )
    whole = projected(
        kafka_bootstrap,
        settings.name,
        new_store("postgresql", tmp_path, request),
        1 << 40,
        monkeypatch,
    )
    try:
        assert one_by_one.query("SELECT COUNT(*) FROM audit_trail") == [(len(stored),)]
        assert differences(one_by_one, whole) == {}
        assert one_by_one.query("SELECT COUNT(*) FROM payment_lines")[0][0] > 30
    finally:
        one_by_one.close()
        whole.close()
