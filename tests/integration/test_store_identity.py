"""Two stores pointed at one `ledger.events` topic by mistake: each message carries the
identity of the store it was published from, and `publish` and `project` of the other store
refuse the topic with one line naming both stores, before writing anything."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ledger.application import Ledger
from tests.conftest import Files, enrolment, query_store
from tests.integration.test_kafka_path import kafka_env, ledger_cli
from tests.services import new_database

pytestmark = pytest.mark.integration


def a_store(server: str, files: Files, first: str) -> tuple[str, str]:
    url = new_database(server)
    with Ledger(url) as ledger:
        ledger.enrol(files.enrolments([enrolment(f"{first}{i:05d}") for i in range(5)]), "maker")
    (store_id,) = query_store(url, "SELECT store_id FROM store_identity")[0]
    return url, store_id


def test_a_topic_of_another_store_is_refused_by_publish_and_project(
    tmp_path: Path, files: Files, postgres_server: str, kafka_bootstrap: str
) -> None:
    topic = f"ledger.events.shared-{uuid.uuid4().hex[:8]}"
    first, first_id = a_store(postgres_server, files, "0030000")
    second, second_id = a_store(postgres_server, files, "0031000")
    assert first_id != second_id
    assert ledger_cli(kafka_env(kafka_bootstrap, first, topic), "publish", "--once").returncode == 0

    for command in (("publish", "--once"), ("project", "--once")):
        run = ledger_cli(kafka_env(kafka_bootstrap, second, topic), *command)
        assert run.returncode == 1, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
        assert first_id in lines[0] and second_id in lines[0] and topic in lines[0]
    # nothing of the first store's reached the second's read models or its position
    assert query_store(second, "SELECT COUNT(*) FROM projection_offsets")[0][0] == 0
    assert query_store(second, "SELECT COUNT(*) FROM publisher_position")[0][0] == 0
    # while the first store's own worker applies the topic
    run = ledger_cli(kafka_env(kafka_bootstrap, first, topic), "project", "--once")
    assert run.returncode == 0, run.stderr
