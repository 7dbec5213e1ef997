"""Enrolment and the changes an operator makes to a beneficiary: hold, release, terminate,
move. Rule 10 (the dead are not enrolled) is decided on the death records themselves and
checked again under the store's write lock."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from itertools import islice
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from ledger import values
from ledger.aggregates import Beneficiary, DeathRecord, beneficiary_id, death_record_id
from ledger.inputs import (
    ENROLMENT_COLUMNS,
    EnrolmentRow,
    Entry,
    InputFile,
    InputRejected,
    Problems,
    check_entries,
    entry_chunks,
)
from ledger.months import month_of
from ledger.rules import RuleViolation
from ledger.service_layer.common import (
    check_month,
    check_values,
    repeated_in_staged,
    sorted_problems,
)
from ledger.service_layer.population import identity_problems
from ledger.service_layer.ports import ConcurrentChange, Fence, Ports, Staging
from ledger.values import shown

# The rows of an enrolment file as staged between its check and its application: every
# field of a valid row (applicable = 1), the fields still checked of a refused one.
STAGED = (
    ("row_number", "BIGINT"),
    ("applicable", "INTEGER"),
    *((column, "TEXT") for column in ENROLMENT_COLUMNS),
    ("name_key", "TEXT"),  # the name as the population register's check compares it
)
APPLY_CHUNK = 5000  # people per chunk of the save (one transaction for the whole file)


def enrol(ports: Ports, file: InputFile, actor: str) -> int:
    """Enrol every row of an enrolment file, or none. The rows without a format error are
    checked against the ledger too, so that every problem of the file is reported at once.

    A national migration is millions of rows: the file is checked a chunk at a time into a
    staging table, the checks across rows are set-based queries on it, and the people are
    then stored a chunk at a time in one transaction, so memory stays flat. They are made
    (and encoded) before the store's write lock is taken, which then covers only their
    insertion: death registrations wait seconds for it, not the whole migration."""
    ports.decide_from_read_models()
    # rule 10 is checked on the death records as they are now; a death put in force after
    # this point is caught by the fence, under the store's write lock
    checked_after = ports.events.latest_notification_id()
    staged = ports.stage("enrolment", STAGED)
    try:
        problems = _check(ports, file, staged)
        if problems:
            raise InputRejected(sorted_problems(problems))
        total = staged.query("SELECT COUNT(*) FROM {staged} WHERE applicable = 1")[0][0]
        fence = Fence(checked_after, _DEATH_IN_FORCE, _death_records_in(staged))
        saved = ports.events.save_stored_in_chunks(
            _people(ports, file.name, staged, actor, total), fence=fence, spool=True
        )
    except ConcurrentChange:
        raise RuleViolation(
            "a death registration of a person in this file was recorded while it was being "
            "enrolled; nothing was recorded: run the command again"
        ) from None
    finally:
        staged.close()
    ports.show_saved()
    return saved


# the events that put a person's death in force (a correction or revocation never does)
_DEATH_IN_FORCE = (
    get_topic(DeathRecord.Registered),  # type: ignore[attr-defined]
    get_topic(DeathRecord.RegisteredAgain),  # type: ignore[attr-defined]
)


def _death_records_in(staged: Staging) -> Callable[[AbstractSet[UUID]], list[UUID]]:
    """Of the death records that recorded a registration since the file was checked, those of
    people in the file (asked only when there are any: a death during a migration)."""

    def watched(since: AbstractSet[UUID]) -> list[UUID]:
        return [
            record
            for (personal_id,) in staged.stream(
                "SELECT personal_id FROM {staged} WHERE applicable = 1"
            )
            if (record := death_record_id(personal_id)) in since
        ]

    return watched


def _check(ports: Ports, file: InputFile, staged: Staging) -> Problems:
    """Every problem of the file, the rows staged as they are checked."""
    problems = Problems()
    name = file.name
    expected = file.count_lines()
    done = 0
    now = ports.clock.now()
    known = _codes_so_far(ports)
    jobs = ((name, chunk, now, known) for chunk in entry_chunks(file, EnrolmentRow))
    for rows, found in ports.in_order(_staging_rows, jobs):
        problems.extend(found)
        staged.add(rows)
        done += len(rows)
        ports.progress(f"checking {name}", done, max(done, expected))
    staged.index("personal_id")
    problems.extend(repeated_in_staged(name, staged))
    for number, pid in staged.stream(
        "SELECT s.row_number, s.personal_id FROM {staged} s"
        " JOIN beneficiaries b ON b.personal_id = s.personal_id"
    ):
        problems.append(f"{name}: row {number}: personal_id: {pid} is already enrolled")
    earliest = max(  # the first month both a level and a multiplier are in force
        str(first)
        for _, first in ports.db.query(
            "SELECT kind, MIN(from_month) FROM reference_levels GROUP BY kind"
        )
    )
    for number, month in staged.stream(
        "SELECT row_number, effective_month FROM {staged} WHERE effective_month < ?",
        (earliest,),
    ):
        problems.append(
            f"{name}: row {number}: effective_month: no standard level in "
            f"force for {month} (the first is from {earliest})"
        )
    problems.extend(identity_problems(ports, name, staged))
    return problems


def _staging_rows(
    ports: Ports, job: tuple[str, list[Entry], datetime, frozenset[str]]
) -> tuple[list[tuple[Any, ...]], list[str]]:
    """A chunk of the file checked (by a worker while the next is read): its rows as staged,
    and its problem lines, rule 10 among them (the chunk's people looked up among the death
    records, in one query)."""
    name, chunk, now, known = job
    valid, refused, found = check_entries(
        name, chunk, EnrolmentRow, now=now, keep=("personal_id", "effective_month", "province_code")
    )
    # rule 9: a code of the right form, checked against the store's (a refused row's too)
    provinces = [(n, row.province_code) for n, row in valid]
    provinces += [(n, f["province_code"]) for n, f in refused if f.get("province_code")]
    found += [
        f"{name}: row {number}: province_code: unknown province code {shown(code)}"
        for number, code in provinces
        if code not in known
    ]
    rows = [
        (number, 1, *row.model_dump().values(), values.name_key(row.full_name))
        for number, row in valid
    ]
    rows += [
        (number, 0, *(f.get(c) or None for c in ENROLMENT_COLUMNS), None) for number, f in refused
    ]
    named = [(row[0], row[2]) for row in rows if row[2]]  # (row number, personal_id)
    dead = deaths_in_record(ports, sorted({pid for _, pid in named}))
    found += [
        f"{name}: row {number}: personal_id: {pid} has a death "
        "registration in force and cannot be enrolled"
        for number, pid in named
        if pid in dead
    ]
    return rows, found


def _people(
    ports: Ports, name: str, staged: Staging, actor: str, total: int
) -> Iterator[tuple[list[Any], dict[UUID, int | None]]]:
    """The staged people's enrolments, a chunk at a time, made and encoded by the workers
    (rule 10 is the save's fence: see enrol)."""
    columns = ", ".join(ENROLMENT_COLUMNS)
    rows = iter(
        staged.stream(
            f"SELECT row_number, {columns} FROM {{staged}} WHERE applicable = 1 ORDER BY row_number"
        )
    )
    chunks = iter(lambda: list(islice(rows, APPLY_CHUNK)), [])
    done = 0
    for stored in ports.in_order(_enrolled, ((name, actor, chunk) for chunk in chunks)):
        yield stored, {}
        done += len(stored)
        ports.progress(f"enrolling from {name}", done, total)


def _enrolled(ports: Ports, job: tuple[str, str, list[tuple[Any, ...]]]) -> list[Any]:
    """A chunk of staged rows as Beneficiary aggregates' events, encoded for the store."""
    name, actor, chunk = job
    people = (
        {
            **dict(zip(ENROLMENT_COLUMNS, fields, strict=True)),
            "actor": actor,
            "source": f"{name} row {number}",
        }
        for number, *fields in chunk
    )
    return ports.events.created_events(Beneficiary, Beneficiary.Enrolled, people)  # type: ignore[attr-defined]


def deaths_in_record(ports: Ports, personal_ids: Sequence[str]) -> set[str]:
    """Rule 10 from the record, not a read model: who among these people has a death in
    force (a death put in force after the check is the save's fence: see enrol)."""
    records = ports.events.load_many([death_record_id(p) for p in personal_ids])
    return {r.personal_id for r in records.values() if r.in_force}


def beneficiary(ports: Ports, personal_id: str) -> Beneficiary:
    check_values([("personal id", values.personal_id, personal_id)])
    found = ports.events.get(beneficiary_id(personal_id))
    if found is None:
        raise RuleViolation(f"{personal_id} is not enrolled")
    return found  # type: ignore[no-any-return]


def _reason(reason: str) -> str:
    """The reason as recorded (values.required_reason), or InputRejected naming --reason."""
    try:
        return values.required_reason(reason)
    except values.InvalidValue as err:
        raise InputRejected([f"--reason: {err}"]) from None


def hold(ports: Ports, personal_id: str, reason: str, actor: str) -> None:
    why = _reason(reason)
    b = beneficiary(ports, personal_id)
    b.hold(why, actor, "ledger hold")
    ports.save(b)


def release(ports: Ports, personal_id: str, actor: str) -> None:
    b = beneficiary(ports, personal_id)
    b.release(actor, "ledger release")
    ports.save(b)


def terminate(ports: Ports, personal_id: str, from_month: str, reason: str, actor: str) -> None:
    check_month(from_month, "--from", ports.clock.now())
    why = _reason(reason)
    b = beneficiary(ports, personal_id)
    b.terminate(from_month, why, actor, "ledger terminate")
    ports.save(b)


def move(ports: Ports, personal_id: str, province_code: str, commune_code: str, actor: str) -> None:
    known = _codes_so_far(ports)
    check_values(
        [
            ("personal id", values.personal_id, personal_id),
            ("--province", lambda code: values.province_code(code, known), province_code),
            ("--commune", values.commune_code, commune_code),
        ]
    )
    b = beneficiary(ports, personal_id)
    b.move(province_code, commune_code, actor, "ledger move")
    ports.save(b)


def _codes_so_far(ports: Ports) -> frozenset[str]:
    """Rule 9: the province codes in force at some time up to now (not one a reorganisation
    makes in a month still to come)."""
    return ports.units().codes_by(month_of(ports.clock.today()))
