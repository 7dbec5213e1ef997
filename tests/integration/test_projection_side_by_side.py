"""Workers of `ledger project` apply their partitions side by side, each under a lock of its
partition rather than the read models' one. What they make must be what one worker makes, and a
deadlock between two of them (a person's balance moved by a list's events in one and by their
enrolment in the other) must cost a retry, never an event."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from adapters import kafka_projection
from adapters.kafka_log import TopicSettings
from adapters.kafka_projection import ProjectionWorker
from adapters.sql import PostgresDatabase
from adapters.store import StoreUrlError
from projections.readmodels import Projector
from replay.rebuild import differences
from tests.conftest import Files, new_store, query_store, read_models_of_topic
from tests.integration.test_kafka_path import kafka_env, ledger_cli
from tests.integration.test_projection_slices import projected
from tests.integration.test_publish import published

pytestmark = pytest.mark.integration


def one_worker(
    bootstrap: str, topic: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> PostgresDatabase:
    return projected(bootstrap, topic, url, kafka_projection.APPLY_BYTES, monkeypatch)


def projected_later(
    files: Files,
    bootstrap: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    people: int,
    **published_as: float,
) -> tuple[TopicSettings, list[int], str, dict[str, str]]:
    """A store's history on a topic of 3 partitions, and a new store to project it into: the
    topic, the stored notification ids, the new store and the environment naming both."""
    settings, stored = published(
        new_store("postgresql", tmp_path, request), files, bootstrap, people, **published_as
    )
    target = new_store("postgresql", tmp_path, request)
    env = kafka_env(bootstrap, target, settings.name, LEDGER_EVENTS_PARTITIONS="3")
    assert ledger_cli(env, "init").returncode == 0
    read_models_of_topic(bootstrap, settings.name, target)
    return settings, stored, target, env


def test_two_workers_make_the_read_models_one_worker_makes(
    files: Files,
    kafka_bootstrap: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a third of the history sent twice, as after a crash of the publisher
    settings, stored, target, env = projected_later(
        files, kafka_bootstrap, tmp_path, request, 60, resend_from=2 / 3
    )

    run = ledger_cli(env, "project", "--once", "--jobs", "2")

    assert run.returncode == 0, run.stderr
    counts = [
        int(line.rsplit(": ", 1)[1].split()[0].replace(",", ""))
        for line in run.stdout.splitlines()
        if line.endswith("events applied to the read models")
    ]
    assert len(counts) == 2 and sum(counts) == len(stored)  # each event once, by one of them
    side_by_side = PostgresDatabase(target)
    alone = one_worker(
        kafka_bootstrap, settings.name, new_store("postgresql", tmp_path, request), monkeypatch
    )
    try:
        assert side_by_side.query("SELECT COUNT(*) FROM audit_trail") == [(len(stored),)]
        assert differences(side_by_side, alone) == {}
        assert side_by_side.query("SELECT COUNT(*) FROM payment_lines")[0][0] > 30
    finally:
        side_by_side.close()
        alone.close()


def test_a_poll_rolled_back_for_a_deadlock_is_applied_again(
    files: Files,
    kafka_bootstrap: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = new_store("postgresql", tmp_path, request)
    settings, stored = published(store, files, kafka_bootstrap, 20)
    target = new_store("postgresql", tmp_path, request)
    db = PostgresDatabase(target)
    with db.transaction() as cursor:  # the tables are the owner's to make (`ledger init`)
        Projector.create_schema(cursor)
    read_models_of_topic(kafka_bootstrap, settings.name, target)
    worker = ProjectionWorker(db, kafka_bootstrap, TopicSettings(settings.name, 3), "g-deadlock")
    other = psycopg.connect(target)  # another worker's transaction, as PostgreSQL sees it
    try:
        # it holds the audit row of the first event, not committed: the worker's poll waits
        # for it while holding its partitions' locks...
        other.execute("SET deadlock_timeout = '20s'")  # so that the worker's check finds it
        other.execute("SELECT set_config('ledger.projecting', 'on', true)")
        other.execute(
            "INSERT INTO audit_trail (notification_id, recorded_at, event_type, aggregate_id,"
            " aggregate_version) VALUES (%s, 'now', 'Held', 'held', 1)",
            (min(stored),),
        )
        failure: list[BaseException] = []

        def project() -> None:
            try:
                worker.run(once=True)
            except BaseException as err:  # the test's own thread: reported below
                failure.append(err)

        thread = threading.Thread(target=project)
        thread.start()
        deadline = time.monotonic() + 60
        while not waiting_for_a_row(target):
            assert time.monotonic() < deadline and thread.is_alive(), failure
            time.sleep(0.05)
        # ...and then this one asks for those partitions' locks: each waits for the other
        for partition in range(3):
            other.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (worker.partition_lock(partition),)
            )
        other.rollback()  # PostgreSQL chose the worker's poll; this one got the locks
        thread.join(timeout=120)
        assert not thread.is_alive() and failure == []
        assert worker.deadlocks == 1
        # the poll rolled back was applied again: every event once, the books as one worker's
        assert db.query("SELECT COUNT(*) FROM audit_trail") == [(len(stored),)]
        alone = one_worker(
            kafka_bootstrap, settings.name, new_store("postgresql", tmp_path, request), monkeypatch
        )
        try:
            assert differences(db, alone) == {}
        finally:
            alone.close()
    finally:
        other.close()
        worker.close()
        db.close()


def waiting_for_a_row(url: str) -> bool:
    """A session of the store's database waits for another transaction's row."""
    with psycopg.connect(url, autocommit=True) as con:
        row = con.execute(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND wait_event = 'transactionid'"
        ).fetchone()
    return bool(row and row[0])


def test_no_more_workers_than_the_topic_has_partitions(
    files: Files, kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings, stored, target, env = projected_later(files, kafka_bootstrap, tmp_path, request, 10)

    run = ledger_cli(env, "project", "--once", "--jobs", "5")

    assert run.returncode == 0, run.stderr
    assert f"{settings.name} has 3 partitions: 3 workers, not 5" in run.stderr
    assert run.stdout.count("events applied to the read models") == 3
    assert query_store(target, "SELECT COUNT(*) FROM audit_trail") == [(len(stored),)]


@pytest.mark.parametrize("how", ["Ctrl-C", "SIGTERM"])
def test_workers_stop_together_and_the_command_says_they_stopped_well(
    how: str, files: Files, kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings, stored, target, env = projected_later(files, kafka_bootstrap, tmp_path, request, 10)
    command = [
        sys.executable,
        "-m",
        "tests.ledger_as_role",
        "project",
        "--jobs",
        "2",
        "--store",
        target,
    ]
    # its own process group, as a terminal's foreground job: Ctrl-C reaches every process
    run = subprocess.Popen(
        command,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while query_store(target, "SELECT COUNT(*) FROM audit_trail") != [(len(stored),)]:
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.1)

    if how == "Ctrl-C":
        os.killpg(run.pid, signal.SIGINT)
    else:  # a service manager stops the command, not its workers
        run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=60)

    assert run.returncode == 0, err
    assert out.count("events applied to the read models") == 2
    assert "stopped on a problem" not in err and "Traceback" not in err
    time.sleep(0.5)
    workers = subprocess.run(
        ["pgrep", "-f", f"ledger.cli project --store {target}"], capture_output=True
    )
    assert workers.stdout == b""  # none left behind (the workers are started with --store)


def test_a_worker_starts_beside_running_polls_without_waiting_for_them(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target = new_store("postgresql", tmp_path, request)
    env = kafka_env(kafka_bootstrap, target, f"ledger.events.start-{uuid.uuid4().hex[:8]}")
    assert ledger_cli(env, "init").returncode == 0
    settings = TopicSettings(env["LEDGER_EVENTS_TOPIC"], 3)
    poll = psycopg.connect(target)  # another worker's poll, writing the lines, not committed
    poll.execute("LOCK TABLE payment_lines, audit_trail IN ROW EXCLUSIVE MODE")
    started: list[ProjectionWorker] = []
    try:
        thread = threading.Thread(
            target=lambda: started.append(
                ProjectionWorker(PostgresDatabase(target), kafka_bootstrap, settings, "g-start")
            )
        )
        thread.start()
        thread.join(timeout=30)
        # CREATE INDEX IF NOT EXISTS would have waited for the poll's commit
        assert started, "the worker waited for another worker's poll to start"
    finally:
        poll.rollback()
        poll.close()
        thread.join(timeout=60)
        for worker in started:
            worker.close()
    # a read model's index missing: a worker refuses to start (it makes no table or index:
    # the projector role may not), and the owner's `ledger init` makes it again
    with psycopg.connect(target, autocommit=True) as con:
        con.execute("DROP INDEX payment_lines_person")
    db = PostgresDatabase(target)
    with pytest.raises(StoreUrlError, match="ledger init"):
        ProjectionWorker(db, kafka_bootstrap, settings, "g-start")
    assert ledger_cli(env, "init").returncode == 0
    ProjectionWorker(db, kafka_bootstrap, settings, "g-start").close()
    assert db.query("SELECT to_regclass('payment_lines_person') IS NOT NULL") == [(True,)]
    db.close()
