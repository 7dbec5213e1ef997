"""The long-running processes as an operator's monitoring sees them, on a real PostgreSQL store
and a real broker: `publish`, `project`, `deaths consume`, `registry serve` and `console`,
each with `--metrics-port`, through a small month with deaths coming in over HTTP. Their
metrics are scraped and checked against what each did (events published and projected,
registrations applied and rejected by reason, requests by route and status); their health
and readiness answer; and their logs are one JSON object a line in which none of the
personal ids, names or account numbers of the run appears."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Files, enrolment, query_store
from tests.console_server import free_port
from tests.integration.test_kafka_path import kafka_env, ledger_cli
from tests.integration.test_registry_http import send
from tests.registry_messages import Registry, death_event, keys_file, tokens_file
from tests.services import new_database

pytestmark = pytest.mark.integration

NAMES = ["Trần Thị Hoa", "Lê Văn Bình", "Phạm Thị Cúc", "Hoàng Văn Dũng", "Võ Thị Én"]
PEOPLE = [f"0040{i:08d}" for i in range(1, 41)]


def person_row(i: int, pid: str) -> dict[str, Any]:
    if i % 2:  # half of them paid through a bank: their account numbers are in the store
        return enrolment(
            pid,
            full_name=f"{NAMES[i % len(NAMES)]} {'ABCDEFGHIJKLMNOPQRSTUVWXYZ'[i % 26]}",
            channel="BANK",
            bank_code="VCB",
            account_number=f"97{i:012d}",
        )
    return enrolment(pid, full_name=f"{NAMES[i % len(NAMES)]} {chr(65 + i % 26)}")


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: dict, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include these."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and wanted <= ls)


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    metrics: int


@dataclass
class Run:
    store: str
    events_topic: str
    deaths_topic: str
    processes: dict[str, Process] = field(default_factory=dict)
    metrics: dict[str, dict] = field(default_factory=dict)
    health: dict[str, tuple[int, int]] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)  # by DCI status
    statuses: dict[str, int] = field(default_factory=dict)  # by HTTP status
    console_requests: int = 0
    logs: dict[str, str] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)


def start(run: Run, folder: Path, name: str, env: dict[str, str], *args: str) -> Process:
    port = free_port()
    log = folder / f"{name}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.ledger_as_role", *args, "--metrics-port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    run.processes[name] = Process(name, proc, log, port)
    deadline = time.monotonic() + 60
    while True:  # up once its metrics answer
        assert proc.poll() is None, f"{name} stopped: {log.read_text()}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return run.processes[name]
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{name} did not serve its metrics in 60 s"
        time.sleep(0.2)


def wait_for(what: str, done: Any, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds:.0f} s"
        time.sleep(0.25)


def junk_on(bootstrap: str, topic: str) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(topic, key=b"junk", value=b"not a registration").get(timeout=30)
    finally:
        producer.close()


@pytest.fixture(scope="module")
def observed(
    postgres_server: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("observed")
    files = Files(folder)
    store = new_database(postgres_server)
    suffix = uuid.uuid4().hex[:8]
    run = Run(store, f"ledger.events.observed-{suffix}", f"civil-registry.deaths.obs-{suffix}")
    hanoi = Registry()
    env = kafka_env(
        kafka_bootstrap,
        store,
        run.events_topic,
        LEDGER_DEATHS_TOPIC=run.deaths_topic,
        LEDGER_REGISTRY_KEYS=str(keys_file(folder / "keys.jwks", hanoi)),
        LEDGER_REGISTRY_TOKENS=str(tokens_file(folder / "tokens", hanoi)),
    )
    env.pop("LEDGER_LOG_FORMAT", None)  # the processes' default: JSON
    assert ledger_cli(env, "init").returncode == 0
    try:
        start(run, folder, "publish", env, "publish")
        start(run, folder, "project", env, "project")
        start(run, folder, "deaths-consume", env, "deaths", "consume")
        registry_port = free_port()
        start(
            run,
            folder,
            "registry",
            env,
            "registry",
            "serve",
            "--port",
            str(registry_port),
            "--store",
            store,
        )
        console_port = free_port()
        start(run, folder, "console", env, "console", "--port", str(console_port))

        rows = [person_row(i, pid) for i, pid in enumerate(PEOPLE)]
        run.secrets = {r["personal_id"] for r in rows} | {r["full_name"] for r in rows}
        run.secrets |= {r["account_number"] for r in rows if r["account_number"]}
        steps = [
            ("enrol", files.enrolments(rows)),
            ("payroll", "run", "--period", "2025-07", "--by", "maker"),
            ("payroll", "approve", "--period", "2025-07", "--by", "checker"),
        ]
        for step in steps:
            done = ledger_cli(env, *step)
            assert done.returncode == 0, (step, done.stderr)

        base = f"http://127.0.0.1:{registry_port}"
        notifications = [
            hanoi.notification(death_event(pid, registration_number=f"KT-{i}"))
            for i, pid in enumerate(PEOPLE[:3])
        ]
        forged = hanoi.notification(death_event(PEOPLE[3]))  # altered after it was signed
        forged["message"]["notify_event"][0]["data"]["reg_records"]["death_date"] = "2025-07-01"
        for notification in [*notifications, forged]:
            answer = send(base, notification, hanoi)
            status = answer.json()["message"]["ack_status"]
            run.answers[status] = run.answers.get(status, 0) + 1
            run.statuses[str(answer.status_code)] = run.statuses.get(str(answer.status_code), 0) + 1
        junk_on(kafka_bootstrap, run.deaths_topic)

        console = f"http://127.0.0.1:{console_port}"
        for _ in range(3):
            assert httpx.get(f"{console}/login", timeout=10).status_code == 200
        run.console_requests = 3

        deaths = run.processes["deaths-consume"].metrics
        wait_for(
            "the deaths consumer read the four messages",
            lambda: value(scrape(deaths), "ansinh_messages_consumed_total") >= 4,
        )
        wait_for(
            "the read models reached the store's last event",
            lambda: (
                query_store(store, "SELECT MAX(notification_id) FROM ledger_events")[0][0]
                == value(
                    scrape(run.processes["project"].metrics),
                    "ansinh_last_projected_notification_id",
                )
            ),
        )
        for name, process in run.processes.items():
            run.metrics[name] = scrape(process.metrics)
            base_url = f"http://127.0.0.1:{process.metrics}"
            run.health[name] = (
                httpx.get(f"{base_url}/healthz", timeout=10).status_code,
                httpx.get(f"{base_url}/readyz", timeout=30).status_code,
            )
    finally:
        for process in run.processes.values():
            if process.proc.poll() is None:
                process.proc.send_signal(signal.SIGINT)
        for process in run.processes.values():
            try:
                process.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.proc.kill()
                process.proc.wait()
            run.logs[process.name] = process.log.read_text(encoding="utf-8", errors="replace")
    yield run


def stored_events(store: str) -> tuple[int, int]:
    count, highest = query_store(store, "SELECT COUNT(*), MAX(notification_id) FROM ledger_events")[
        0
    ]
    return count, highest


def test_publish_counts_every_event_once_and_names_the_last(observed: Run) -> None:
    count, highest = stored_events(observed.store)
    metrics = observed.metrics["publish"]
    assert value(metrics, "ansinh_events_published_total", topic=observed.events_topic) == count
    assert value(metrics, "ansinh_last_published_notification_id") == highest
    assert value(metrics, "ansinh_consumer_lag_messages", process="publish") == 0
    assert value(metrics, "ansinh_batch_duration_seconds_count", process="publish") >= 1


def test_project_counts_what_it_applied_and_its_lag(observed: Run) -> None:
    count, highest = stored_events(observed.store)
    metrics = observed.metrics["project"]
    topic = observed.events_topic
    assert value(metrics, "ansinh_messages_applied_total", topic=topic) == count
    consumed = value(metrics, "ansinh_messages_consumed_total", topic=topic)
    unchanged = value(metrics, "ansinh_messages_unchanged_total", topic=topic)
    assert consumed == count + unchanged
    assert value(metrics, "ansinh_last_projected_notification_id") == highest
    assert value(metrics, "ansinh_consumer_lag_messages", topic=topic) == 0


def test_deaths_consume_counts_applied_and_rejected_by_reason(observed: Run) -> None:
    metrics = observed.metrics["deaths-consume"]
    topic = observed.deaths_topic
    acknowledged = observed.answers.get("ACK", 0)
    assert acknowledged == 3
    assert value(metrics, "ansinh_messages_consumed_total", topic=topic) == acknowledged + 1
    assert value(metrics, "ansinh_messages_applied_total", topic=topic) == acknowledged
    assert value(metrics, "ansinh_messages_rejected_total", reason="undecodable") == 1
    assert value(metrics, "ansinh_messages_rejected_total") == 1
    recorded = query_store(observed.store, "SELECT COUNT(*) FROM deaths")[0][0]
    assert recorded == acknowledged


def test_registry_and_console_count_requests_by_route_and_status(observed: Run) -> None:
    registry = observed.metrics["registry"]
    notified = value(registry, "ansinh_http_requests_total", route="/registry/notify")
    assert notified == sum(observed.answers.values()) == 4
    for status, count in observed.statuses.items():
        counted = value(
            registry, "ansinh_http_requests_total", route="/registry/notify", status=status
        )
        assert counted == count, status
    assert observed.answers["ACK"] == 3 and len(observed.statuses) == 2  # the forged one refused
    timed = value(registry, "ansinh_http_request_duration_seconds_count", route="/registry/notify")
    assert timed == 4
    console = observed.metrics["console"]
    logins = value(
        console, "ansinh_http_requests_total", route="/login", method="GET", status="200"
    )
    assert logins == observed.console_requests


def test_every_process_is_alive_and_ready(observed: Run) -> None:
    assert observed.health == {name: (200, 200) for name in observed.processes}


def test_logs_are_json_lines_without_personal_data(observed: Run) -> None:
    for name, text in observed.logs.items():
        lines = text.splitlines()
        assert lines, f"{name} logged nothing"
        for line in lines:
            entry = json.loads(line)  # every line one JSON object
            assert entry["process"] == name and entry["level"] and entry["message"]
        for secret in observed.secrets:
            assert secret not in text, f"{name}'s log holds {secret!r}"
            assert json.dumps(secret)[1:-1] not in text, f"{name}'s log holds {secret!r}"
    rejected = [
        json.loads(line)
        for line in observed.logs["deaths-consume"].splitlines()
        if json.loads(line)["message"].startswith("a death registration was rejected")
    ]
    assert [(r["topic"], r["reason"], r["offset"] >= 0) for r in rejected] == [
        (observed.deaths_topic, "undecodable", True)
    ]


def test_readiness_names_what_is_wrong(tmp_path: Path) -> None:
    """Not ready: one line per check that fails, and 503."""
    from adapters import observability

    health = observability.Health("publish")
    health.checks += [
        observability.broker_answers("127.0.0.1:1"),
        observability.store_answers("postgresql://nobody@127.0.0.1:1/none"),
        observability.lag_under("publish", 10),
    ]
    observability.set_lag("publish", "t", {0: 11})
    port = free_port()
    stop = observability.serve(health, port)
    try:
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30)
        alive = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
    finally:
        stop()
        observability.set_lag("publish", "t", {0: 0})
    assert alive.status_code == 200
    assert ready.status_code == 503
    problems = ready.json()["problems"]
    assert len(problems) == 3
    assert "no Kafka broker answers at 127.0.0.1:1" in problems[0]
    assert problems[1].startswith("the store does not answer")
    assert problems[2] == "11 messages behind, more than 10"


def test_the_endpoints_workers_are_counted_together(
    postgres_server: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """`registry serve --workers 2`: each worker counts its own requests; the parent serves
    their sum."""
    hanoi = Registry()
    store = new_database(postgres_server)
    env = kafka_env(
        kafka_bootstrap,
        store,
        f"ledger.events.workers-{uuid.uuid4().hex[:8]}",
        LEDGER_DEATHS_TOPIC=f"civil-registry.deaths.workers-{uuid.uuid4().hex[:8]}",
        LEDGER_REGISTRY_KEYS=str(keys_file(tmp_path / "keys.jwks", hanoi)),
        LEDGER_REGISTRY_TOKENS=str(tokens_file(tmp_path / "tokens", hanoi)),
    )
    run = Run(store, "", "")
    port = free_port()
    process = start(
        run,
        tmp_path,
        "registry",
        env,
        *("registry", "serve", "--workers", "2", "--port", str(port), "--store", store),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for("the workers answer", lambda: _answers(f"{base}/healthz"))
        sent = [
            send(
                base,
                hanoi.notification(death_event(f"0041{i:08d}", registration_number=f"W{i}")),
                hanoi,
            )
            for i in range(12)
        ]
        assert all(answer.status_code == 200 for answer in sent)
        metrics = scrape(process.metrics)
    finally:
        process.proc.send_signal(signal.SIGINT)
        process.proc.wait(timeout=30)
    assert value(metrics, "ansinh_http_requests_total", route="/registry/notify") == 12


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
