"""The set-based path of the projection (COPY, staging tables, balances summed per batch) on
the real PostgreSQL server gives the same read models as row statements on SQLite, whatever
order the aggregates' events arrive in and however they are cut into batches."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.sql import PostgresDatabase
from projections import writes
from projections.readmodels import READ_MODEL_TABLES, RecordedEvent
from tests.property.test_projection_order import (
    PLAN,
    batches,
    history,
    interleaving,
    projected,
    projected_into,
)
from tests.services import new_database


def projected_on_postgres(url: str, polls: Iterator[list[RecordedEvent]]) -> dict[str, list]:
    return projected_into(PostgresDatabase(url), polls)


@pytest.fixture
def every_run_set_based(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run of rows through COPY and staging tables, however small."""
    monkeypatch.setattr(writes, "BULK_ROWS", 1)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(plan=PLAN, data=st.data())
def test_set_based_projection_on_postgres_equals_row_statements(
    plan: dict[str, Any], data: st.DataObject, postgres_server: str, every_run_set_based: None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        events = history(plan, root)
        expected = projected(root / "rows.sqlite", iter([events]))
        assert expected["payment_lists"]  # a history happened
        whole = projected_on_postgres(new_database(postgres_server), iter([events]))
        for table in READ_MODEL_TABLES:
            assert whole[table] == expected[table], table
        rng = data.draw(st.randoms(use_true_random=False))
        shuffled = interleaving(events, rng)
        got = projected_on_postgres(new_database(postgres_server), batches(shuffled, rng))
        for table in READ_MODEL_TABLES:
            assert got[table] == expected[table], table
