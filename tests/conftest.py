"""Shared fixtures: a ledger on a fresh store of each kind (the embedded SQLite file and a new
database on the real PostgreSQL server), the real Kafka broker, and writers for the contract's
files. Where the services come from is tests/services.py's business."""

from __future__ import annotations

import csv
import json
import os
import re
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from ledger.application import Ledger
from ledger.inputs import DEATH_COLUMNS, ENROLMENT_COLUMNS, SETTLEMENT_COLUMNS, UNIT_COLUMNS
from ledger.months import VIETNAM
from tests import services

STORE_KINDS = ("sqlite", "postgresql")

# `python -m tests.ledger_as_role` (the ledger as the role a command needs, tests/roles.py)
# from any working directory a test runs a command in
_ROOT = str(Path(__file__).resolve().parent.parent)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [_ROOT, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
)

# The chain key of every store the tests make (adapters/chain_key.py): never the user's key
# file, nor one in the working directory. Subprocesses inherit it through os.environ.
TEST_CHAIN_KEY = "5e" * 32
# and the key that seals their personal data (adapters/cipher_keys.py), likewise
TEST_CIPHER_KEY = "c1" * 32
KEY_VARIABLES = ("LEDGER_CHAIN_KEY", "LEDGER_CIPHER_KEY")


@pytest.fixture(scope="session", autouse=True)
def chain_key() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEDGER_CHAIN_KEY", TEST_CHAIN_KEY)
        patch.setenv("LEDGER_CIPHER_KEY", TEST_CIPHER_KEY)
        yield TEST_CHAIN_KEY


@pytest.fixture(scope="module", autouse=True)
def _followers_of_the_module() -> Iterator[None]:
    """The `ledger project` followers of the stores a module made, stopped when it ends."""
    from tests import roles as test_roles

    mark = services.databases_made()
    yield
    test_roles.stop_followers_of(services.made_since(mark))


@pytest.fixture(autouse=True)
def _followers_of_the_test() -> Iterator[None]:
    """And those of the stores a test made, stopped when it ends."""
    from tests import roles as test_roles

    mark = services.databases_made()
    yield
    test_roles.stop_followers_of(services.made_since(mark))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a database on the real PostgreSQL server, to create test databases from."""
    with services.postgres() as url:
        yield url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """host:port of the real Kafka broker."""
    with services.kafka() as bootstrap:
        _broker_in_use.append(bootstrap)
        yield bootstrap


_broker_in_use: list[str] = []
_module_used_the_broker: list[bool] = []


@pytest.fixture(autouse=True)
def _marks_a_module_using_the_broker(request: pytest.FixtureRequest) -> None:
    if "kafka_bootstrap" in request.fixturenames:
        _module_used_the_broker.append(True)


@pytest.fixture(scope="module", autouse=True)
def _topics_of_the_module() -> Iterator[None]:
    """The topics a module made, deleted when it ends (each test names its own): a broker
    that keeps thousands of partitions spends its cores on them, and the tests after wait.
    Only after a module that used the broker."""
    _module_used_the_broker.clear()
    yield
    if not _broker_in_use or not _module_used_the_broker:
        return
    from kafka.admin import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=_broker_in_use[0], request_timeout_ms=10_000)
    except Exception:  # the broker is gone (a fault test stopped it): nothing to tidy
        return
    try:
        made = [t for t in admin.list_topics() if not t.startswith("__")]
        if made:
            admin.delete_topics(made)
    except Exception:  # tidying only: a test's result never depends on it
        pass
    finally:
        admin.close()


@pytest.fixture(scope="module", params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Tests that use a store run once on each kind of store."""
    return str(request.param)


def new_store(kind: str, directory: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty store of the given kind."""
    if kind == "sqlite":
        return f"sqlite:///{directory / 'store' / 'ledger.sqlite'}"
    return services.new_database(request.getfixturevalue("postgres_server"))


def read_models_of_topic(bootstrap: str, topic: str, url: str) -> None:
    """A database made to hold the read models of the store whose events are on a topic (as
    tests that project one history into several databases do): given that store's identity,
    which a projection worker checks every message against."""
    import psycopg

    from adapters import store_identity
    from adapters.kafka_log import tails

    (store_id,) = {t.store_id for t in tails(bootstrap, topic)}
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(store_identity.SCHEMA)
        con.execute(f"DELETE FROM {store_identity.TABLE}")
        con.execute(f"INSERT INTO {store_identity.TABLE} VALUES (%s)", (store_id,))


@pytest.fixture
def store_url(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return new_store(store_kind, tmp_path, request)


def opened(state: bytes) -> dict[str, Any]:
    """A stored event's JSON with its personal data opened (the tests' cipher key): what it
    records, whatever nonce sealed it (two runs seal the same facts differently)."""
    from adapters.cipher_keys import load_key_ring
    from adapters.personal_data import PersonalData

    return PersonalData(load_key_ring).unseal(json.loads(state))


def query_store(url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Read a store's tables directly, as an auditor's SQL client would (`?` placeholders)."""
    if url.startswith("sqlite:///"):
        con = sqlite3.connect(f"file:{url[len('sqlite:///') :]}?mode=ro", uri=True)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()
    import psycopg

    with psycopg.connect(url) as con:
        return con.execute(sql.replace("%", "%%").replace("?", "%s"), params).fetchall()


def events_write_locked(url: str) -> bool:
    """Whether a transaction holds the PostgreSQL store's write lock (the EXCLUSIVE lock on
    its events table that every append takes), seen from a connection of its own."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as watch:
        row = watch.execute(
            "SELECT COUNT(*) FROM pg_locks WHERE granted AND mode = 'ExclusiveLock'"
            " AND relation = 'ledger_events'::regclass"
        ).fetchone()
    return bool(row and row[0])


def events_table(url: str) -> str:
    return "stored_events" if url.startswith("sqlite:") else "ledger_events"


@pytest.fixture
def ledger(store_url: str) -> Iterator[Ledger]:
    with Ledger(store_url) as opened:
        yield opened


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


# a category whose coefficients include the one a test gives (categories.csv)
CATEGORY_OF = {
    "1.0": "elderly_80_plus_no_pension",
    "1.5": "severely_disabled_adult",
    "2.0": "especially_severely_disabled_adult",
    "2.5": "especially_severely_disabled_child_or_elderly",
}


def enrolment(personal_id: str, **overrides: Any) -> dict[str, Any]:
    """An enrolment row with sensible defaults: POST, coefficient 1.0, province 01; the
    category, unless given, one that allows the coefficient (combined_categories otherwise)."""
    coefficient = str(overrides.get("coefficient", "1.0"))
    row = {
        "personal_id": personal_id,
        "full_name": f"Người {personal_id[-4:]}",
        "date_of_birth": "1940-01-01",
        "sex": "F",
        "province_code": "01",
        "commune_code": "00001",
        "category": CATEGORY_OF.get(coefficient, "combined_categories"),
        "coefficient": "1.0",
        "effective_month": "2025-01",
        "channel": "POST",
        "bank_code": "",
        "account_number": "",
        "decision_ref": f"QD-{personal_id[-4:]}",
    }
    row.update(overrides)
    return row


def death(personal_id: str, **overrides: Any) -> dict[str, Any]:
    """A REGISTERED death row with a POST claimant; override event_type, date, claimant..."""
    row = {
        "event_id": str(uuid.uuid4()),
        "event_type": "REGISTERED",
        "registration_number": f"KT-{personal_id[-6:]}",
        "personal_id": personal_id,
        "full_name": f"Người {personal_id[-4:]}",
        "date_of_death": "2025-07-15",
        "registered_at": "2025-07-20T09:00:00+07:00",
        "registry_office": "UBND phường Ba Đình",
        "claimant_personal_id": "009999999999",
        "claimant_name": "Con trai",
        "claimant_channel": "POST",
        "claimant_bank_code": "",
        "claimant_account_number": "",
    }
    row.update(overrides)
    return row


# the overrides of a `death` row that names no funeral claimant
NO_CLAIMANT = {
    "claimant_personal_id": "",
    "claimant_name": "",
    "claimant_channel": "",
    "claimant_bank_code": "",
    "claimant_account_number": "",
}


def avro_death_record(row: dict[str, Any]) -> dict[str, Any]:
    """The Avro DeathRegistration a registry sends for a CSV row's fields: the same values,
    its time as the instant in UTC; written as they are, never validated on the way."""
    at = datetime.fromisoformat(row["registered_at"]).astimezone(UTC)
    claimant = None
    if row["claimant_personal_id"] or row["claimant_name"]:
        claimant = {
            "personal_id": row["claimant_personal_id"],
            "name": row["claimant_name"],
            "channel": row["claimant_channel"],
            "bank_code": row["claimant_bank_code"] or None,
            "account_number": row["claimant_account_number"] or None,
        }
    return {
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "registration_number": row["registration_number"],
        "personal_id": row["personal_id"],
        "full_name": row["full_name"],
        # the record requires a date; a revocation's is the day it was registered, in Vietnam
        "date_of_death": date.fromisoformat(
            row["date_of_death"] or at.astimezone(VIETNAM).date().isoformat()
        ),
        "registered_at": at,
        "registry_office": row["registry_office"],
        "claimant": claimant,
    }


# the overrides that make a `death` row a revocation (no date, no claimant)
REVOKE = {
    "event_type": "REVOKED",
    "date_of_death": "",
    "claimant_personal_id": "",
    "claimant_name": "",
    "claimant_channel": "",
}

# the audit trail's source of an event caused by a consumed Kafka message
SOURCE = re.compile(r"^(?P<topic>\S+) partition (?P<partition>\d+) offset (?P<offset>\d+)")


def settlement(payment_id: str, status: str = "PAID", **overrides: Any) -> dict[str, Any]:
    """A settlement row, settled on 25 July 2025, or on the 25th of its payment's period when
    that is later (a settlement is not before its period)."""
    period = payment_id[:7] if re.fullmatch(r"\d{4}-\d{2}", payment_id[:7]) else ""
    row = {
        "payment_id": payment_id,
        "status": status,
        "settled_at": f"{max(period, '2025-07')}-25T10:00:00+07:00",
        "reference": f"REF-{payment_id[-6:]}",
        "reason": "" if status == "PAID" else "account closed",
    }
    row.update(overrides)
    return row


class Files:
    """Writes the contract's input files into a test's temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def _path(self, stem: str) -> Path:
        self.count += 1
        return self.root / f"{stem}-{self.count}.csv"

    def enrolments(self, rows: Sequence[dict[str, Any]]) -> Path:
        return write_csv(self._path("enrol"), ENROLMENT_COLUMNS, rows)

    def deaths(self, rows: Sequence[dict[str, Any]]) -> Path:
        return write_csv(self._path("deaths"), DEATH_COLUMNS, rows)

    def settlements(self, rows: Sequence[dict[str, Any]]) -> Path:
        return write_csv(self._path("settle"), SETTLEMENT_COLUMNS, rows)

    def units(self, rows: Sequence[Sequence[str]], path: Path | None = None) -> Path:
        """A reorganisation file (`ledger units import`) from rows of its five columns."""
        return write_csv(
            path or self._path("units"),
            UNIT_COLUMNS,
            [dict(zip(UNIT_COLUMNS, row, strict=True)) for row in rows],
        )


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)
