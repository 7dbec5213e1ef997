"""The Kafka path against the real broker and server: `ledger publish` and `ledger project`
as real processes, read models in PostgreSQL applied exactly once (duplicates, two workers,
one killed), operator commands that see their own writes, and exports byte-identical to the
embedded path's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ledger.application import Ledger
from projections.readmodels import READ_MODEL_TABLES
from tests.conftest import KEY_VARIABLES, Files, death, enrolment, query_store, settlement
from tests.services import new_database

pytestmark = pytest.mark.integration

READ_MODELS = READ_MODEL_TABLES


def kafka_env(kafka: str, store: str, topic: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_") or k in KEY_VARIABLES}
    return {
        **env,
        "LEDGER_KAFKA": kafka,
        "LEDGER_STORE": store,
        "LEDGER_EVENTS_TOPIC": topic,
        "LEDGER_EVENTS_PARTITIONS": "6",
        **extra,
    }


def ledger_cli(env: dict[str, str], *args: str | Path, cwd: Path | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "tests.ledger_as_role", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
    )


@contextmanager
def background(env: dict[str, str], *args: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.ledger_as_role", *a.split()],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for a in args
    ]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    return {t: sorted(query_store(url, f"SELECT * FROM {t}"), key=repr) for t in READ_MODELS}


def rebuilt_in_process(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """The read models projected afresh from the stored events, by the embedded path's code."""
    import psycopg

    with psycopg.connect(url) as con, con.transaction():  # a rebuild, past the guards
        con.execute("SELECT set_config('ledger.projecting', 'on', true)")
        for t in (*READ_MODELS, "projection_position"):
            con.execute(f"DELETE FROM {t}")
    Ledger(url).close()
    return tables(url)


def wait_until_applied(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        stored = query_store(url, "SELECT COUNT(*) FROM ledger_events")[0][0]
        applied = query_store(url, "SELECT COUNT(*) FROM audit_trail")[0][0]
        if stored == applied:
            return
        assert time.monotonic() < deadline, f"{applied} of {stored} events applied"
        time.sleep(0.2)


def story(files: Files) -> list[tuple[str | Path, ...]]:
    """An operator's two months, as command lines."""
    people = [f"0010000{i:05d}" for i in range(40)]
    # rule 9: some recorded under codes the 2025 merger retired (Hà Giang 02 is paid in
    # Tuyên Quang 08, Bà Rịa-Vũng Tàu 77 in Hồ Chí Minh City 79)
    recorded = ("01", "79", "48", "02", "77")
    paid_in = {"02": "08", "77": "79"}
    enrol = files.enrolments(
        [
            enrolment(
                p,
                province_code=recorded[i % 5],
                channel="BANK" if i % 2 else "POST",
                bank_code="VCB" if i % 2 else "",
                account_number=f"9{i:09d}" if i % 2 else "",
                effective_month="2025-06" if i % 5 == 0 else "2025-07",
            )
            for i, p in enumerate(people)
        ]
    )
    deaths = files.deaths(
        [
            death(people[3], date_of_death="2025-07-10"),
            death(
                people[4],
                date_of_death="2025-06-20",
                claimant_personal_id="",
                claimant_name="",
                claimant_channel="",
            ),
        ]
    )
    paid = files.settlements(
        [
            settlement(
                f"2025-07-{paid_in.get(recorded[i % 5], recorded[i % 5])}-{p}",
                "FAILED" if i == 6 else "PAID",
            )
            for i, p in enumerate(people)
            if i not in (3, 4)
        ]
        + [settlement(f"2025-07-79-{people[4]}", "PAID")] * 0
    )
    units = files.units([("2025-08", "79", "00001", "01", "00001")])
    return [
        ("enrol", enrol),
        ("deaths", "import", deaths),
        ("payroll", "run", "--period", "2025-07", "--by", "maker"),
        ("payroll", "approve", "--period", "2025-07", "--by", "checker"),
        ("payroll", "export", "--period", "2025-07", "--out", "out"),
        ("settle", paid),
        ("hold", people[8], "--reason", "not found at address"),
        ("move", people[9], "--province", "48", "--commune", "00777"),
        # a reorganisation from August: Hồ Chí Minh City's communes 00001 to Hà Nội
        ("units", "import", units, "--by", "ministry"),
        ("rates", "set", "--from", "2025-08", "--amount", "550000", "--by", "ministry"),
        ("reference", "approve", "--by", "checker"),
        ("payroll", "run", "--period", "2025-08", "--by", "maker"),
        ("payroll", "approve", "--period", "2025-08", "--by", "checker"),
        ("payroll", "export", "--period", "2025-08", "--out", "out"),
    ]


def test_both_paths_agree_byte_for_byte(
    tmp_path: Path, files: Files, postgres_server: str, kafka_bootstrap: str
) -> None:
    steps = story(files)
    embedded, kafka_dir = tmp_path / "embedded", tmp_path / "kafka"
    embedded.mkdir()
    kafka_dir.mkdir()
    plain = {
        k: v for k, v in os.environ.items() if not k.startswith("LEDGER_") or k in KEY_VARIABLES
    }
    plain["LEDGER_STORE"] = f"sqlite:///{embedded / 'ledger.sqlite'}"
    for step in [("init",), *steps]:
        run = ledger_cli(plain, *step, cwd=embedded)
        assert run.returncode == 0, (step, run.stderr)

    url = new_database(postgres_server)
    env = kafka_env(kafka_bootstrap, url, f"ledger.events.agree-{uuid.uuid4().hex[:8]}")
    assert ledger_cli(env, "init", cwd=kafka_dir).returncode == 0  # before its processes
    with background(env, "publish", "project"):
        for step in steps:  # each command waits until it can read its own writes
            run = ledger_cli(env, *step, cwd=kafka_dir)
            assert run.returncode == 0, (step, run.stderr)
    exported = sorted(p.name for p in (embedded / "out").iterdir())
    assert len(exported) >= 8
    # rule 9 on both paths: July paid in the provinces the 2025 merger made; in August
    # Hồ Chí Minh City's commune 00001 (everyone recorded in 79 and 77 here) in Hà Nội
    csv_files = [name for name in exported if name.endswith(".csv")]
    assert {"2025-07_08_POST.csv", "2025-07_79_POST.csv"} <= set(csv_files)
    assert not [name for name in csv_files if name.startswith(("2025-07_02", "2025-07_77"))]
    assert not [name for name in csv_files if name.startswith("2025-08_79")]
    assert sorted(p.name for p in (kafka_dir / "out").iterdir()) == exported
    for name in exported:
        mine, theirs = (
            (kafka_dir / "out" / name).read_bytes(),
            (embedded / "out" / name).read_bytes(),
        )
        if name.endswith(".manifest.json"):  # the two approvals happened at different times
            mine, theirs = (
                {k: v for k, v in json.loads(m).items() if k not in ("approved_at", "chain_head")}
                for m in (mine, theirs)
            )
        assert mine == theirs


def test_read_models_are_applied_exactly_once_by_workers_that_come_and_go(
    tmp_path: Path, files: Files, postgres_server: str, kafka_bootstrap: str
) -> None:
    url = new_database(postgres_server)
    with Ledger(url) as ledger:  # history made on the embedded path's code...
        people = [f"0020000{i:05d}" for i in range(20000)]
        ledger.enrol(files.enrolments([enrolment(p) for p in people]), "maker")
        ledger.import_deaths(files.deaths([death(people[0])]), "registry")
        ledger.run_payroll("2025-07", None, "maker")
        ledger.approve_payroll("2025-07", None, "checker")
        expected = tables(url)
    import psycopg

    with psycopg.connect(url) as con, con.transaction():  # ...then its read models forgotten
        con.execute("SELECT set_config('ledger.projecting', 'on', true)")
        for t in (*READ_MODELS, "projection_position"):
            con.execute(f"DELETE FROM {t}")

    env = kafka_env(kafka_bootstrap, url, f"ledger.events.workers-{uuid.uuid4().hex[:8]}")
    assert ledger_cli(env, "publish", "--once").returncode == 0
    # the publisher crashed after sending, before recording how far it got: it finds its
    # events on the topic and sends none of them again
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("DELETE FROM publisher_position")
    assert ledger_cli(env, "publish", "--once").returncode == 0

    stored = query_store(url, "SELECT COUNT(*) FROM ledger_events")[0][0]
    with background(env, "project") as (first,):
        while query_store(url, "SELECT COUNT(*) FROM audit_trail")[0][0] == 0:
            time.sleep(0.05)
        with background(env, "project"):  # a second worker joins: the partitions are shared
            time.sleep(1.0)
            first.send_signal(signal.SIGKILL)  # its partitions go to the other worker
            applied_at_kill = query_store(url, "SELECT COUNT(*) FROM audit_trail")[0][0]
            wait_until_applied(url)
    assert applied_at_kill < stored, "the work was over before the kill: use more events"
    assert tables(url) == expected
    # and a rebuild by the embedded path's code from the same events gives the same
    assert rebuilt_in_process(url) == expected


def test_a_command_that_cannot_see_its_writes_says_so(
    tmp_path: Path, files: Files, postgres_server: str, kafka_bootstrap: str
) -> None:
    url = new_database(postgres_server)
    env = kafka_env(
        kafka_bootstrap, url, f"ledger.events.idle-{uuid.uuid4().hex[:8]}", LEDGER_READ_TIMEOUT="2"
    )
    assert ledger_cli(env, "init").returncode == 0
    run = ledger_cli(env, "enrol", files.enrolments([enrolment("001000000001")]))
    assert run.returncode == 1
    assert "check that `ledger publish` and `ledger project` are running" in run.stderr
    # it refused before acting on read models it could not trust: only the reference data
    # (its levels and the 2025 reorganisation), loaded when the store was made, is stored;
    # no enrolment
    events = query_store(url, "SELECT topic FROM ledger_events")
    assert [t.rsplit(":", 1)[1] for (t,) in events] == [
        "ReferenceDataHistory.Loaded",
        "ReferenceDataHistory.UnitsReorganised",
    ]
