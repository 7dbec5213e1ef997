"""Shared fixtures: a ledger on a fresh embedded store, and writers for the contract's files."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ledger.application import Ledger
from ledger.inputs import DEATH_COLUMNS, ENROLMENT_COLUMNS, SETTLEMENT_COLUMNS


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'ledger.sqlite'}"


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


def enrolment(personal_id: str, **overrides: Any) -> dict[str, Any]:
    """An enrolment row with sensible defaults: POST, coefficient 1.0, province 01."""
    row = {
        "personal_id": personal_id,
        "full_name": f"Người {personal_id[-4:]}",
        "date_of_birth": "1940-01-01",
        "sex": "F",
        "province_code": "01",
        "commune_code": "00001",
        "category": "elderly_80_plus",
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


def settlement(payment_id: str, status: str = "PAID", **overrides: Any) -> dict[str, Any]:
    row = {
        "payment_id": payment_id,
        "status": status,
        "settled_at": "2025-07-25T10:00:00+07:00",
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


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)
