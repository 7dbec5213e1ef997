"""A store whose read models `ledger project` keeps from Kafka is not caught up in-process by
a command run without LEDGER_KAFKA: it is refused with what to do, and nothing is written."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from adapters.kafka_projection import ProjectionWorker
from adapters.sql import PostgresDatabase
from adapters.store import StoreUrlError
from ledger.application import Ledger
from tests.conftest import new_store, query_store
from tests.integration.test_publish import publish_once, unique_topic

pytestmark = pytest.mark.integration


def test_a_command_without_kafka_on_a_kafka_kept_store_is_refused(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = new_store("postgresql", tmp_path, request)
    settings = unique_topic()
    with Ledger(store, read_models="none") as ledger:  # records the reference data
        publish_once(ledger, kafka_bootstrap, settings)
    db = PostgresDatabase(store)
    worker = ProjectionWorker(db, kafka_bootstrap, settings, group=f"g-{uuid.uuid4().hex[:6]}")
    try:
        assert worker.run(once=True) > 0
    finally:
        worker.close()
        db.close()
    trail = query_store(store, "SELECT COUNT(*) FROM audit_trail")[0][0]
    with pytest.raises(StoreUrlError, match="kept by `ledger project`"):
        Ledger(store)
    assert query_store(store, "SELECT COUNT(*) FROM audit_trail")[0][0] == trail
    with Ledger(store, read_models="kafka") as ledger:  # the right way still works
        assert ledger.reference_data() is not None
