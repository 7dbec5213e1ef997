"""Death registrations in an Avro container file, as civil registries write them, go through
the same validation and rules as the CSV file; any registered schema version is read."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import fastavro
import pytest

from adapters import avro
from adapters.civil_registry import SUBJECT, avro_record, write_container
from ledger.application import Ledger
from ledger.inputs import DeathRow, InputRejected
from tests.conftest import Files, death, enrolment

A = "001000000001"


def rows(*dicts: dict) -> list[DeathRow]:
    return [DeathRow.model_validate(d) for d in dicts]


def test_a_container_file_is_imported_like_the_csv(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    ledger.enrol(files.enrolments([enrolment(A)]), "maker")
    registered = death(
        A,
        date_of_death="2025-07-15",
        claimant_channel="BANK",
        claimant_bank_code="VCB",
        claimant_account_number="0123456789",
    )
    corrected = death(
        A,
        event_type="CORRECTED",
        date_of_death="2025-07-10",
        claimant_personal_id="",
        claimant_name="",
        claimant_channel="",
    )
    path = tmp_path / "deaths.avro"
    write_container(path, rows(registered, corrected))
    result = ledger.import_deaths(path, "registry")
    assert (result.applied, result.unchanged) == (2, 0)
    assert ledger.db.query(
        "SELECT date_of_death, claimant_channel, claimant_bank_code, in_force FROM deaths"
    ) == [("2025-07-10", "BANK", "VCB", 1)]
    assert ledger.import_deaths(path, "registry").unchanged == 2  # the same file again
    sources = {
        r[0]
        for r in ledger.db.query(
            "SELECT source FROM audit_trail WHERE event_type LIKE 'DeathRecord.%'"
        )
    }
    assert sources >= {"deaths.avro record 1", "deaths.avro record 2"}


def test_a_container_written_with_the_first_schema_version_is_read(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    ledger.enrol(files.enrolments([enrolment(A)]), "maker")
    v1 = json.loads(resources.files("schemas").joinpath("death_registration.v1.avsc").read_text())
    path = tmp_path / "old.avro"
    with path.open("wb") as f:
        record = avro_record(rows(death(A))[0])
        fastavro.writer(f, fastavro.parse_schema(v1), [record])
    assert ledger.import_deaths(path, "registry").applied == 1
    assert ledger.db.query("SELECT personal_id FROM deaths WHERE in_force = 1") == [(A,)]


def test_a_bad_record_rejects_the_whole_container(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    ledger.enrol(files.enrolments([enrolment(A)]), "maker")
    good = avro_record(rows(death(A))[0])
    bad = {**avro_record(rows(death("001000000002"))[0]), "personal_id": "12345"}
    path = tmp_path / "deaths.avro"
    with path.open("wb") as f:
        schema = fastavro.parse_schema(
            json.loads(
                resources.files("schemas").joinpath("death_registration.v2.avsc").read_text()
            )
        )
        fastavro.writer(f, schema, [good, bad])
    with pytest.raises(InputRejected) as refused:
        ledger.import_deaths(path, "registry")
    assert refused.value.problems == [
        "deaths.avro: record 2: personal_id: Value error, a personal id must be 12 digits, "
        "got '12345'"
    ] or any("record 2: personal_id" in p for p in refused.value.problems)
    assert ledger.db.query("SELECT COUNT(*) FROM deaths")[0][0] == 0


def test_a_file_that_is_not_a_container_is_read_as_csv(ledger: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "deaths.avro"
    path.write_bytes(b"Obj\x01 but broken")
    with pytest.raises(InputRejected, match="not an Avro container file"):
        ledger.import_deaths(path, "registry")


def test_every_bad_record_of_a_container_is_reported_with_the_refused_registrations(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    ledger.enrol(files.enrolments([enrolment(A)]), "maker")
    good = avro_record(rows(death(A))[0])
    arabic = {**avro_record(rows(death("001000000002"))[0]), "personal_id": "٠٠١٠٠٠٠٠٠٠٠٢"}
    unknown = avro_record(rows(death("001000000003", event_type="CORRECTED"))[0])
    path = tmp_path / "deaths.avro"
    with path.open("wb") as f:
        fastavro.writer(f, avro.latest(SUBJECT).schema, [good, arabic, unknown])
    with pytest.raises(InputRejected) as refused:
        ledger.import_deaths(path, "registry")
    assert refused.value.problems == [
        "deaths.avro: record 2: personal_id: must be 12 digits 0-9, got '٠٠١٠٠٠٠٠٠٠٠٢'",
        "deaths.avro: record 3: registration_number: corrected of unknown registration KT-000003",
    ]
    assert ledger.db.query("SELECT COUNT(*) FROM deaths")[0][0] == 0
