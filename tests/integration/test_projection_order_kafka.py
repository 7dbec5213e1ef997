"""Projections commute on the real Kafka path, and what is judged of them is what they hold.

A settlement file over three provinces settles three payment lists, three aggregates, so its
events lie in different partitions of `ledger.events` and `ledger project` applies them in any
order. Held back on the partition of the earliest of them, the read models hold later events
above a gap: `verify` and `replay --check-issued` judge them up to the contiguous watermark and
find nothing; once the gap is filled, both still find nothing, and the file's row is the one
notification order gives. A list whose approval is applied but not yet all its lines is not
judged until they are."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import TopicPartition

from adapters.kafka_log import TopicSettings
from adapters.kafka_projection import GROUP, ProjectionWorker
from adapters.sql import PostgresDatabase
from ledger.application import Ledger
from projections.applied import contiguous_watermark
from projections.readmodels import READ_MODEL_TABLES
from replay.as_of import VIETNAM, Cut, check_issued
from replay.rebuild import whole_topic
from replay.verify import verify
from tests.conftest import Files, death, enrolment, query_store, settlement
from tests.integration.test_kafka_path import kafka_env, ledger_cli
from tests.services import new_database

pytestmark = pytest.mark.integration

PROVINCES = ("01", "79", "48")
PEOPLE = [f"0030000{i:05d}" for i in range(12)]


def forget_read_models(url: str) -> None:
    """The read models as a store kept by `ledger project` starts: empty (written as the
    projection writes them, which the guards allow)."""
    with psycopg.connect(url) as con:  # one transaction
        con.execute("SELECT set_config('ledger.projecting', 'on', true)")
        for t in (*READ_MODEL_TABLES, "projection_position"):
            con.execute(f"DELETE FROM {t}")


def lines_settled(url: str) -> list[tuple[int, str]]:
    """(notification id, payment list) of every LinesSettled event, in notification order."""
    return [
        (int(n), str(uuid.UUID(str(oid))))
        for n, oid in query_store(
            url,
            "SELECT notification_id, originator_id FROM ledger_events"
            " WHERE topic LIKE '%LinesSettled' ORDER BY notification_id",
        )
    ]


def partition_of(bootstrap: str, topic: str, aggregate: str) -> int:
    return next(r.partition for r in whole_topic(bootstrap, topic) if r.key.decode() == aggregate)


def project_all_but(worker: ProjectionWorker, held: TopicPartition) -> None:
    """Apply every partition to its end but `held`, which is not read at all."""
    deadline = time.monotonic() + 120
    while len(worker.positioned) < 6:  # assigned and positioned from the database
        worker.poll_once(timeout_ms=500)
        assert time.monotonic() < deadline, "the worker was not assigned every partition"
    worker.consumer.pause(held)
    while True:
        worker.poll_once(timeout_ms=500)
        others = [tp for tp in worker.consumer.assignment() if tp != held]
        ends = worker.consumer.end_offsets(others)
        if all(worker.consumer.position(tp) >= ends[tp] for tp in others):
            return
        assert time.monotonic() < deadline, "the other partitions were not read to their end"


def applied(url: str) -> set[int]:
    return {n for (n,) in query_store(url, "SELECT notification_id FROM audit_trail")}


def history(url: str, files: Files, line_chunk: int = 1000) -> None:
    """July paid in three provinces, made on the embedded path's code; then the read models
    are forgotten, to be kept from Kafka."""
    with Ledger(url) as ledger:
        ledger.enrol(
            files.enrolments(
                [
                    enrolment(p, province_code=PROVINCES[i % 3], effective_month="2025-07")
                    for i, p in enumerate(PEOPLE)
                ]
            ),
            "officer",
        )
        ledger.import_deaths(files.deaths([death(PEOPLE[0])]), "registry")
        ledger.run_payroll("2025-07", None, "maker")
        ledger.LINE_CHUNK = line_chunk  # lines per LinesIssued event
        ledger.approve_payroll("2025-07", None, "checker")
    forget_read_models(url)


def findings(url: str, kafka: tuple[str, str]) -> dict[str, Any]:
    with Ledger(url, read_models="none", existing=True) as ledger:  # not waiting for Kafka
        report = verify(ledger, kafka=kafka)
        issued = check_issued(ledger, Cut.of(datetime.now(VIETNAM).date()))
    return {
        "verify": {c.name: c.findings for c in report.checks},
        "lists judged": len({(c.period, c.province_code) for c in issued}),
        "lists differing": [c for c in issued if not c.ok],
    }


def test_a_settlement_file_over_provinces_applied_out_of_order_gives_no_finding(
    tmp_path: Path, files: Files, postgres_server: str, kafka_bootstrap: str
) -> None:
    url = new_database(postgres_server)
    history(url, files)
    topic = f"ledger.events.order-{uuid.uuid4().hex[:8]}"
    env = kafka_env(kafka_bootstrap, url, topic)
    kafka = (kafka_bootstrap, topic)
    for command in ("publish", "project"):
        run = ledger_cli(env, command, "--once")
        assert run.returncode == 0, run.stderr

    # a settlement file over the three provinces, recorded while the read models are kept by
    # `ledger project` (the command does not wait for them)
    paid = [settlement(f"2025-07-{PROVINCES[i % 3]}-{p}") for i, p in enumerate(PEOPLE[1:], 1)]
    with Ledger(url, read_models="none") as ledger:
        assert ledger.settle(files.settlements(paid), "bank").applied == len(paid)
    run = ledger_cli(env, "publish", "--once")
    assert run.returncode == 0, run.stderr
    settled = lines_settled(url)
    assert len(settled) == 3  # one event per list: three aggregates
    (first, first_list), *later = settled
    held = TopicPartition(topic, partition_of(kafka_bootstrap, topic, first_list))
    ahead = [n for n, lst in later if partition_of(kafka_bootstrap, topic, lst) != held.partition]
    assert ahead, "every list of the file is in one partition: nothing can arrive out of order"

    worker = ProjectionWorker(PostgresDatabase(url), kafka_bootstrap, TopicSettings(topic, 6))
    assert worker.group == GROUP  # the group `ledger project` keeps its offsets under
    try:
        project_all_but(worker, held)
    finally:
        worker.close()
        worker.db.close()
    done = applied(url)
    assert first not in done and set(ahead) <= done  # applied out of notification order
    with Ledger(url, read_models="none", existing=True) as ledger:
        assert contiguous_watermark(ledger.db, "ledger_events") == first - 1
    partly = findings(url, kafka)
    assert partly["verify"] == {
        "hash chain": [],
        "immutability guards": [],
        "read models": [],
        "books": [],
        "chain published on Kafka": [],
    }
    assert partly["lists judged"] == 3 and partly["lists differing"] == []

    run = ledger_cli(env, "project", "--once")  # the held partition too, from its offsets
    assert run.returncode == 0, run.stderr
    assert query_store(url, "SELECT COUNT(*) FROM audit_trail") == query_store(
        url, "SELECT COUNT(*) FROM ledger_events"
    )
    whole = findings(url, kafka)
    assert all(found == [] for found in whole["verify"].values()), whole["verify"]
    assert whole["lists judged"] == 3 and whole["lists differing"] == []
    # the file's row is its first event's, though that one was applied last
    times = dict(
        query_store(
            url,
            "SELECT notification_id, recorded_at FROM audit_trail"
            " WHERE event_type = 'PaymentList.LinesSettled'",
        )
    )
    assert len(set(times.values())) == 3 and times[first] == min(times.values())
    assert query_store(url, "SELECT first_applied_at FROM settlement_files") == [(times[first],)]

    today = datetime.now(VIETNAM).date().isoformat()
    for command in (("verify",), ("replay", "--as-of", today, "--check-issued")):
        run = ledger_cli(env, *command, cwd=tmp_path)
        assert run.returncode == 0, (command, run.stdout, run.stderr)


def test_a_list_whose_lines_are_partly_applied_is_judged_once_they_all_are(
    files: Files, postgres_server: str, kafka_bootstrap: str
) -> None:
    url = new_database(postgres_server)
    history(url, files, line_chunk=1)  # one LinesIssued event per line
    topic = f"ledger.events.lines-{uuid.uuid4().hex[:8]}"
    run = ledger_cli(kafka_env(kafka_bootstrap, url, topic), "publish", "--once")
    assert run.returncode == 0, run.stderr
    (last_list,) = [
        str(uuid.UUID(str(oid)))
        for (oid,) in query_store(
            url,
            "SELECT originator_id FROM ledger_events WHERE topic LIKE '%PaymentList.Approved'"
            " ORDER BY notification_id DESC LIMIT 1",
        )
    ]
    approved, *issued = [
        int(n)
        for (n,) in query_store(
            url,
            "SELECT notification_id FROM ledger_events WHERE originator_id = ?"
            " AND (topic LIKE '%Approved' OR topic LIKE '%LinesIssued') ORDER BY 1",
            (uuid.UUID(last_list),),
        )
    ]
    assert len(issued) == len(PEOPLE) // 3 and issued[0] == approved + 1

    # every other partition to its end; the last list's, one event at a time, to the
    # approval and its first line only
    held = TopicPartition(topic, partition_of(kafka_bootstrap, topic, last_list))
    worker = ProjectionWorker(
        PostgresDatabase(url), kafka_bootstrap, TopicSettings(topic, 6), max_poll_records=1
    )
    try:
        project_all_but(worker, held)
        worker.consumer.pause(*(tp for tp in worker.consumer.assignment() if tp != held))
        worker.consumer.resume(held)
        deadline = time.monotonic() + 120
        while issued[0] not in applied(url):
            worker.poll_once(timeout_ms=500)
            assert time.monotonic() < deadline
    finally:
        worker.close()
        worker.db.close()
    done = applied(url)
    assert approved in done and issued[1] not in done
    with Ledger(url, read_models="none", existing=True) as ledger:
        # applied without a gap up to the first line (the approval's postings come between
        # its lines, in the order one reading of its draft gives them)
        assert contiguous_watermark(ledger.db, "ledger_events") == issued[0]
    partly = findings(url, (kafka_bootstrap, topic))
    assert all(found == [] for found in partly["verify"].values()), partly["verify"]
    # the two lists approved before it are judged; the last one is not, yet
    assert partly["lists judged"] == 2 and partly["lists differing"] == []

    run = ledger_cli(kafka_env(kafka_bootstrap, url, topic), "project", "--once")
    assert run.returncode == 0, run.stderr
    whole = findings(url, (kafka_bootstrap, topic))
    assert all(found == [] for found in whole["verify"].values()), whole["verify"]
    assert whole["lists judged"] == 3 and whole["lists differing"] == []
