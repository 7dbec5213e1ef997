"""Rule 10 holds under concurrency, on both stores: an enrolment and a death registration of the
same person never both succeed with the death recorded before the enrolment. Either the
enrolment is refused, or the death was recorded after it (and takes effect on the enrolled
beneficiary)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ledger.application import Ledger
from ledger.rules import RuleViolation
from ledger.service_layer import enrolment as enrolment_handlers
from ledger.service_layer.ports import Ports
from tests.conftest import (
    Files,
    death,
    enrolment,
    events_table,
    events_write_locked,
    new_store,
    query_store,
)

pytestmark = pytest.mark.integration

ROUNDS = 12


def order_of(url: str, personal_id: str) -> tuple[int | None, int | None]:
    """Notification ids of the person's enrolment and of their first death registration."""
    nid = "rowid" if url.startswith("sqlite:") else "notification_id"
    found: dict[str, int] = {}
    for n, topic, state in query_store(
        url, f"SELECT {nid}, topic, state FROM {events_table(url)} ORDER BY {nid}"
    ):
        text = bytes(state).decode("utf-8", "replace")
        if personal_id not in text:
            continue
        if topic.endswith("Beneficiary.Enrolled") or topic.endswith("Beneficiary.Created"):
            found.setdefault("enrolled", n)
        if topic.startswith("ledger.aggregates:DeathRecord"):
            found.setdefault("died", n)
    return found.get("enrolled"), found.get("died")


def registry_records_after_the_check(
    monkeypatch: pytest.MonkeyPatch, registry: Ledger, deaths_file: Path
) -> None:
    """The race made certain: the registry's deaths land just after the enrolment read the
    death records (its check) and before it saves."""
    read = enrolment_handlers.deaths_in_record

    def read_then_the_registry_records(ports: Ports, ids: Sequence[str]) -> Any:
        found = read(ports, ids)
        registry.import_deaths(deaths_file, "registry")
        return found

    monkeypatch.setattr(enrolment_handlers, "deaths_in_record", read_then_the_registry_records)


def test_a_death_recorded_between_the_check_and_the_save_refuses_the_enrolment(
    store_url: str, files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race made certain: the registry's death lands just after the enrolment read the
    death records and before it saves."""
    pid = "002000000001"
    enrol_file = files.enrolments([enrolment(pid)])
    deaths_file = files.deaths([death(pid)])
    with Ledger(store_url) as enrolling, Ledger(store_url) as registry:
        registry_records_after_the_check(monkeypatch, registry, deaths_file)
        with pytest.raises(RuleViolation, match="run the command again"):
            enrolling.enrol(enrol_file, "maker")
        monkeypatch.undo()
        assert order_of(store_url, pid)[0] is None  # nothing was enrolled
        with pytest.raises(Exception, match="death registration in force"):
            enrolling.enrol(enrol_file, "maker")  # run again: refused by rule 10
        assert order_of(store_url, pid)[0] is None


def test_concurrent_enrolment_and_death_never_enrol_the_dead(
    store_url: str, files: Files, tmp_path: Path
) -> None:
    with Ledger(store_url) as enrolling, Ledger(store_url) as registry:
        outcomes = []
        for i in range(ROUNDS):
            pid = f"0030000{i:05d}"
            enrol_file = files.enrolments([enrolment(pid)])
            deaths_file = files.deaths([death(pid)])
            start = threading.Barrier(2)
            errors: dict[str, BaseException] = {}

            def enrol(
                f: Path = enrol_file,
                e: dict[str, BaseException] = errors,
                start: threading.Barrier = start,
            ) -> None:
                start.wait()
                try:
                    enrolling.enrol(f, "maker")
                except Exception as err:
                    e["enrol"] = err

            def register(
                f: Path = deaths_file,
                e: dict[str, BaseException] = errors,
                start: threading.Barrier = start,
            ) -> None:
                start.wait()
                try:
                    registry.import_deaths(f, "registry")
                except Exception as err:
                    e["death"] = err

            threads = [threading.Thread(target=enrol), threading.Thread(target=register)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert "death" not in errors, errors  # a registration is never refused for this
            enrolled, died = order_of(store_url, pid)
            assert died is not None
            if enrolled is None:
                assert "enrol" in errors
                assert "death registration" in str(errors["enrol"])
            else:
                assert "enrol" not in errors
                assert enrolled < died, f"{pid}: enrolled after the death was recorded"
            outcomes.append(enrolled is None)
        # the dead are never listed: no line for any of them but a funeral line
        enrolling.catch_up()
        rows = enrolling.db.query(
            "SELECT b.personal_id FROM beneficiaries b LEFT JOIN deaths d"
            " ON d.personal_id = b.personal_id AND d.in_force = 1 WHERE d.personal_id IS NULL"
        )
        assert rows == []


def test_a_death_of_someone_else_recorded_meanwhile_does_not_refuse_the_enrolment(
    store_url: str, files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The save's fence asks which people of the file have a death registered since the check:
    a death of someone not in the file changes nothing."""
    people = [f"00400000000{n}" for n in range(3)]
    enrol_file = files.enrolments([enrolment(p) for p in people])
    deaths_file = files.deaths([death("004000000009")])  # not in the file
    with Ledger(store_url) as enrolling, Ledger(store_url) as registry:
        registry_records_after_the_check(monkeypatch, registry, deaths_file)
        assert enrolling.enrol(enrol_file, "maker") == 3
    assert all(order_of(store_url, p)[0] is not None for p in people)
    assert order_of(store_url, "004000000009")[1] is not None


def test_an_enrolment_makes_its_people_before_it_takes_the_write_lock(
    files: Files, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A national migration takes many minutes to make and encode its people: death
    registrations and approvals wait for its lock only while its events are inserted."""
    store = new_store("postgresql", tmp_path, request)
    monkeypatch.setattr(enrolment_handlers, "APPLY_CHUNK", 100)
    people = files.enrolments([enrolment(f"0050000{n:05d}") for n in range(250)])
    locked_while_making: list[bool] = []
    make = enrolment_handlers._people

    def watched(*args: Any) -> Any:
        for chunk in make(*args):
            locked_while_making.append(events_write_locked(store))
            yield chunk

    monkeypatch.setattr(enrolment_handlers, "_people", watched)
    with Ledger(store) as ledger:
        assert ledger.enrol(people, "maker") == 250

    assert locked_while_making == [False, False, False]  # three chunks, none under the lock
