"""The ledger's Kafka clients on the broker's secured listeners (scripts/services: TLS on the
port + 2, SCRAM-SHA-512 over TLS on the port + 3, a certificate signed by a CA of their own),
as real processes configured only by LEDGER_KAFKA_SECURITY_PROTOCOL and its variables:
`ledger publish --once` puts the store's events on the topic and `ledger project --once`
applies them; `ledger deaths publish` and `ledger deaths consume --once` apply a death
registration. A wrong password or a CA that did not sign the broker's certificate stops each
command, in bounded time, with one line and no traceback."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters import avro
from adapters.civil_registry import SUBJECT, row_fields
from adapters.death_consumer import REJECTED_SUFFIX
from ledger.application import Ledger
from projections.readmodels import READ_MODEL_TABLES
from replay.rebuild import whole_topic
from tests import roles as test_roles
from tests import services
from tests.conftest import KEY_VARIABLES, SOURCE, Files, death, enrolment, query_store

pytestmark = pytest.mark.integration

LISTENERS = ("tls", "sasl")
# what a command may take to give up on a broker it cannot use (kafka-python's bootstrap
# timeout is 30 s), and when it is taken as hanging
GIVES_UP_WITHIN = 120.0
HANGS_AFTER = 240.0


@dataclass(frozen=True)
class Secured:
    """The broker's secured listeners, as `scripts/services env` names them."""

    tls: str
    sasl: str
    cafile: Path
    mechanism: str
    user: str
    password_file: Path

    def client(self, listener: str, **replaced: str) -> dict[str, str]:
        """The LEDGER_KAFKA* variables of a client of this listener."""
        if listener == "tls":
            found = {
                "LEDGER_KAFKA": self.tls,
                "LEDGER_KAFKA_SECURITY_PROTOCOL": "SSL",
                "LEDGER_KAFKA_SSL_CAFILE": str(self.cafile),
            }
        else:
            found = {
                "LEDGER_KAFKA": self.sasl,
                "LEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "LEDGER_KAFKA_SSL_CAFILE": str(self.cafile),
                "LEDGER_KAFKA_SASL_MECHANISM": self.mechanism,
                "LEDGER_KAFKA_SASL_USERNAME": self.user,
                "LEDGER_KAFKA_SASL_PASSWORD_FILE": str(self.password_file),
            }
        return found | replaced


NAMES = {
    "tls": "LEDGER_TEST_KAFKA_TLS",
    "sasl": "LEDGER_TEST_KAFKA_SASL",
    "cafile": "LEDGER_TEST_KAFKA_CAFILE",
    "user": "LEDGER_TEST_KAFKA_SASL_USER",
    "password_file": "LEDGER_TEST_KAFKA_SASL_PASSWORD_FILE",
}


def secured_listeners() -> Secured:
    """From the environment (`eval "$(scripts/services up)"`, as `make test` does), else from
    the project's own services, started here, unless the tests were given other services."""
    given: dict[str, str] = {k: v for k, v in os.environ.items() if k.startswith("LEDGER_TEST_")}
    if not all(given.get(name) for name in NAMES.values()):
        if given.get("LEDGER_TEST_KAFKA"):
            services.unavailable(
                "a secured Kafka listener",
                f"LEDGER_TEST_KAFKA is set but not {', '.join(NAMES.values())}: give the "
                "variables `scripts/services env` prints",
            )
        try:
            given = services._project_services()
        except RuntimeError as err:
            services.unavailable("a secured Kafka listener", str(err))
    found = Secured(
        tls=given[NAMES["tls"]],
        sasl=given[NAMES["sasl"]],
        cafile=Path(given[NAMES["cafile"]]),
        mechanism=given.get("LEDGER_TEST_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        user=given[NAMES["user"]],
        password_file=Path(given[NAMES["password_file"]]),
    )
    for path in (found.cafile, found.password_file):
        if not path.is_file():
            services.unavailable("a secured Kafka listener", f"no file {path}")
    for listener in (found.tls, found.sasl):
        host, port = listener.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as err:
            services.unavailable("a secured Kafka listener", f"{listener}: {err}")
    return found


_made_topics: list[tuple[Secured, str]] = []


@pytest.fixture(scope="module")
def secured() -> Iterator[Secured]:
    found = secured_listeners()
    yield found
    tidy = [topic for _, topic in _made_topics]
    _made_topics.clear()
    if not tidy:
        return
    from kafka.admin import KafkaAdminClient

    with pytest.MonkeyPatch.context() as patch:
        for name, value in found.client("tls").items():
            patch.setenv(name, value)
        from adapters.kafka_client import connection

        try:
            admin = KafkaAdminClient(**connection(found.tls), request_timeout_ms=10_000)
        except Exception:  # tidying only
            return
        try:
            admin.delete_topics([t for t in tidy if t in set(admin.list_topics())])
        except Exception:
            pass
        finally:
            admin.close()


def topic_of(secured: Secured, kind: str) -> str:
    name = f"{kind}.secured-{uuid.uuid4().hex[:8]}"
    _made_topics.append((secured, name))
    if kind.startswith("civil-registry"):
        _made_topics.append((secured, name + REJECTED_SUFFIX))
    return name


def command_env(tmp_path: Path, client: dict[str, str], **extra: str) -> dict[str, str]:
    """The environment of a ledger command: none of the caller's LEDGER_* variables but the
    tests' keys, the client's Kafka settings, and a TMPDIR of the test's for crash reports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_") or k in KEY_VARIABLES}
    return {**env, "TMPDIR": str(tmp_path), **client, **extra}


def ledger_cli(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.ledger_as_role", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANGS_AFTER,
    )


def records(secured: Secured, listener: str, topic: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every record of a topic, read over the secured listener by the ledger's own reader."""
    with monkeypatch.context() as patch:
        for name, value in secured.client(listener).items():
            patch.setenv(name, value)
        return list(whole_topic(secured.client(listener)["LEDGER_KAFKA"], topic))


def tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    return {t: sorted(query_store(url, f"SELECT * FROM {t}"), key=repr) for t in READ_MODEL_TABLES}


# The listeners' certificate -------------------------------------------------------------


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
def test_the_certificate_is_for_both_loopback_names_and_signed_by_the_ca(
    secured: Secured, name: str
) -> None:
    context = ssl.create_default_context(cafile=str(secured.cafile))
    assert context.check_hostname
    for listener in (secured.tls, secured.sasl):
        port = int(listener.rsplit(":", 1)[1])
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            alternatives: Any = (tls.getpeercert() or {}).get("subjectAltName", ())
            names = {str(value) for _, value in alternatives}
            assert {"127.0.0.1", "localhost"} <= names


# publish and project ----------------------------------------------------------------------


@pytest.mark.parametrize("listener", LISTENERS)
def test_publish_and_project_over_a_secured_listener(
    listener: str,
    secured: Secured,
    postgres_server: str,
    files: Files,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = services.new_database(postgres_server)
    with Ledger(url) as ledger:  # a history made on the embedded path's code...
        people = [f"0030000{i:05d}" for i in range(12)]
        ledger.enrol(files.enrolments([enrolment(p) for p in people]), "maker")
        ledger.import_deaths(files.deaths([death(people[0])]), "registry")
        ledger.run_payroll("2025-07", None, "maker")
        ledger.approve_payroll("2025-07", None, "checker")
    expected = tables(url)
    assert expected["payment_lines"]
    trail = dict(query_store(url, "SELECT notification_id, event_type FROM audit_trail"))
    import psycopg

    with psycopg.connect(url) as con, con.transaction():  # ...then its read models forgotten
        con.execute("SELECT set_config('ledger.projecting', 'on', true)")
        for t in (*READ_MODEL_TABLES, "projection_position"):
            con.execute(f"DELETE FROM {t}")
    assert query_store(url, "SELECT COUNT(*) FROM ledger_events") == [(len(trail),)]

    topic = topic_of(secured, "ledger.events")
    env = command_env(
        tmp_path,
        secured.client(listener),
        LEDGER_STORE=url,
        LEDGER_EVENTS_TOPIC=topic,
        LEDGER_EVENTS_PARTITIONS="3",
    )
    run = ledger_cli(env, "publish", "--once")
    assert run.returncode == 0, run.stderr
    assert f"{topic}: {len(trail):,} events published" in run.stdout, run.stdout

    on_topic = records(secured, listener, topic, monkeypatch)
    events = [avro.decode("ledger.events-value", r.value) for r in on_topic]
    assert sorted(e["notification_id"] for e in events) == sorted(trail)  # each once
    for record, event in zip(on_topic, events, strict=True):
        assert dict(record.headers)["notification_id"] == str(event["notification_id"]).encode()
        assert record.key.decode() == str(event["aggregate_id"])
        assert event["event_type"] == trail[event["notification_id"]]

    run = ledger_cli(env, "project", "--once")
    assert run.returncode == 0, run.stderr
    assert f"{topic}: {len(trail):,} events applied to the read models" in run.stdout, run.stdout
    assert tables(url) == expected


# a death registration, from the registry to the payroll ----------------------------------


@pytest.mark.parametrize("listener", LISTENERS)
def test_a_death_registration_published_and_consumed_over_a_secured_listener(
    listener: str,
    secured: Secured,
    files: Files,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    person = "003100000007"
    with Ledger(store) as ledger:  # a beneficiary: the death matters to the payroll
        ledger.enrol(files.enrolments([enrolment(person)]), "officer")
    sent = death(person, registration_number="KT-SEC-1", date_of_death="2025-07-12")
    path = files.deaths([sent])
    topic = topic_of(secured, "civil-registry.deaths")
    env = command_env(
        tmp_path,
        secured.client(listener),
        LEDGER_DEATHS_TOPIC=topic,
        LEDGER_USER="civil-registry-consumer",
    )

    run = ledger_cli(env, "deaths", "publish", path)
    assert run.returncode == 0, run.stderr
    assert f"1 registrations published to {topic}" in run.stdout, run.stdout
    (record,) = records(secured, listener, topic, monkeypatch)
    assert record.key == person.encode()
    assert record.value[0] == 0 and int.from_bytes(record.value[1:5], "big") == 3  # v2
    fields = row_fields(avro.decode(SUBJECT, record.value))
    assert (fields["event_id"], fields["personal_id"], fields["registration_number"]) == (
        sent["event_id"],
        person,
        "KT-SEC-1",
    )

    run = ledger_cli(env, "deaths", "consume", "--once", "--store", store)
    assert run.returncode == 0, run.stderr
    assert re.search(r"applied\s*│\s*1\s", run.stdout), run.stdout
    assert re.search(r"all\s*│\s*1\s", run.stdout), run.stdout
    assert query_store(
        store, "SELECT personal_id, date_of_death FROM deaths WHERE in_force = 1"
    ) == [(person, "2025-07-12")]
    with Ledger(store) as ledger:
        (source,) = [
            s
            for (s,) in query_store(
                store, "SELECT source FROM audit_trail WHERE event_type LIKE 'DeathRecord.%'"
            )
        ]
        account = ledger.account(person)
    found = SOURCE.match(source)
    assert found and found["topic"] == topic
    assert (int(found["partition"]), int(found["offset"])) == (record.partition, record.offset)
    assert account is not None and account.dead
    assert records(secured, listener, topic + REJECTED_SUFFIX, monkeypatch) == []

    again = ledger_cli(env, "deaths", "consume", "--once", "--store", store)
    assert again.returncode == 0, again.stderr
    assert re.search(r"all\s*│\s*0\s", again.stdout), again.stdout


# refusals ---------------------------------------------------------------------------------


def another_ca(directory: Path) -> Path:
    """A CA certificate, PEM, that did not sign the broker's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another CA")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / "another-ca.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


COMMANDS = ("publish --once", "project --once", "deaths publish", "deaths consume --once")
FAULTS = ("wrong SASL password", "wrong CA on TLS", "wrong CA on SASL_SSL")
CASES = [(fault, command) for fault in FAULTS for command in COMMANDS]


@dataclass
class Outcome:
    returncode: int | None  # None: it was still running after HANGS_AFTER, and was killed
    stdout: str
    stderr: str
    seconds: float


@dataclass
class Refusals:
    outcomes: dict[tuple[str, str], Outcome]
    deaths_stored: int  # by the consumers that could not connect


@pytest.fixture(scope="module")
def refused(
    secured: Secured,
    postgres_server: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Refusals:
    """Each command under each fault, side by side (each waits for its client to give up)."""
    base = tmp_path_factory.mktemp("refused")
    files = Files(base)
    url = services.new_database(postgres_server)
    sqlite = f"sqlite:///{base / 'ledger.sqlite'}"
    for store in (url, sqlite):
        with Ledger(store) as ledger:
            ledger.enrol(files.enrolments([enrolment("003200000001")]), "officer")
    test_roles.projector_url(url)  # its login made once, before the commands side by side
    deaths = files.deaths([death("003200000001")])
    wrong = base / "wrong.password"
    wrong.write_text("not-the-password\n", encoding="utf-8")
    other_ca = another_ca(base)
    faults = {
        "wrong SASL password": secured.client("sasl", LEDGER_KAFKA_SASL_PASSWORD_FILE=str(wrong)),
        "wrong CA on TLS": secured.client("tls", LEDGER_KAFKA_SSL_CAFILE=str(other_ca)),
        "wrong CA on SASL_SSL": secured.client("sasl", LEDGER_KAFKA_SSL_CAFILE=str(other_ca)),
    }
    arguments = {
        "publish --once": ["publish", "--once", "--store", url],
        "project --once": ["project", "--once", "--store", url],
        "deaths publish": ["deaths", "publish", str(deaths)],
        "deaths consume --once": ["deaths", "consume", "--once", "--store", sqlite],
    }
    as_user = {"deaths consume --once": {"LEDGER_USER": "civil-registry-consumer"}}

    def run(case: tuple[str, str]) -> Outcome:
        fault, command = case
        where = base / f"{FAULTS.index(fault)}-{COMMANDS.index(command)}"
        where.mkdir()
        env = command_env(
            where,
            faults[fault],
            LEDGER_EVENTS_TOPIC=topic_of(secured, "ledger.events"),
            LEDGER_DEATHS_TOPIC=topic_of(secured, "civil-registry.deaths"),
            **as_user.get(command, {}),
        )
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.ledger_as_role", *arguments[command]],
            env=env,
            cwd=where,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = proc.communicate(timeout=HANGS_AFTER)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return Outcome(None, out, err, time.monotonic() - started)
        return Outcome(proc.returncode, out, err, time.monotonic() - started)

    with ThreadPoolExecutor(max_workers=len(CASES)) as pool:
        outcomes = dict(zip(CASES, pool.map(run, CASES), strict=True))
    return Refusals(outcomes, query_store(sqlite, "SELECT COUNT(*) FROM deaths")[0][0])


def what_it_said(stderr: str) -> list[str]:
    """What a command told its operator on stderr: its plain lines, and the messages of its
    own JSON log records at error level (the long-running commands log JSON lines; the
    Kafka library's own records, its retries, are not the command's word)."""
    said = []
    for line in stderr.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            said.append(line)
            continue
        if not isinstance(record, dict):
            said.append(line)
        elif record.get("logger") == "ansinh" and record.get("level") in ("error", "critical"):
            said.append(str(record.get("message")))
    return said


@pytest.mark.parametrize(("fault", "command"), CASES)
def test_a_wrong_password_or_ca_stops_the_command_in_one_line(
    refused: Refusals, secured: Secured, fault: str, command: str
) -> None:
    outcome = refused.outcomes[(fault, command)]
    assert outcome.returncode is not None, (
        f"`ledger {command}` with a {fault} still ran after {HANGS_AFTER:.0f} s; "
        f"stderr: {outcome.stderr[-2000:]}"
    )
    assert outcome.returncode != 0, outcome.stdout
    assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    said = what_it_said(outcome.stderr)
    assert len(said) == 1, said
    assert said[0].startswith("refused: "), said  # the operator's to fix, not a fault of ours
    broker = secured.tls if fault == "wrong CA on TLS" else secured.sasl
    assert broker in said[0], said  # which broker it could not use
    cause = "SaslAuthenticationFailedError" if "password" in fault else "CERTIFICATE_VERIFY_FAILED"
    assert cause in said[0], said  # and why, in the client's words
    assert outcome.seconds < GIVES_UP_WITHIN, f"{outcome.seconds:.0f} s: {said}"


def test_a_consumer_that_cannot_connect_applies_nothing(refused: Refusals) -> None:
    assert refused.deaths_stored == 0
