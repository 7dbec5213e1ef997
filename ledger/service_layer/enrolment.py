"""Enrolment and the changes an operator makes to a beneficiary: hold, release, terminate,
move. Rule 10 (the dead are not enrolled) is decided on the death records themselves and
checked again under the store's write lock."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from ledger import values
from ledger.aggregates import Beneficiary, beneficiary_id, death_record_id
from ledger.inputs import EnrolmentRow, InputFile, InputRejected, Problems, read_rows
from ledger.rules import RuleViolation
from ledger.service_layer.common import check_month, check_values, repeated, sorted_problems
from ledger.service_layer.ports import Ports


def enrol(ports: Ports, file: InputFile, actor: str) -> int:
    """Enrol every row of an enrolment file, or none. The rows without a format error are
    checked against the ledger too, so that every problem of the file is reported at once.
    A bad file's rows are not kept whole: only the fields checked against the ledger."""
    problems = Problems()
    partial: list[tuple[int, dict[str, str]]] = []  # rows not applied: fields fine alone
    rows = read_rows(
        file,
        EnrolmentRow,
        problems,
        refused=partial,
        now=ports.clock.now(),
        keep=("personal_id", "effective_month"),
    )
    ports.decide_from_read_models()
    name = file.name
    # every person the file names, from good rows and bad ones alike
    named = [(number, row.personal_id) for number, row in rows]
    named += [(number, f["personal_id"]) for number, f in partial if f.get("personal_id")]
    first_rows, repeats = repeated(name, "personal_id", named)
    problems += repeats
    ids = list(first_rows)
    enrolled = ports.existing("beneficiaries", "personal_id", ids)
    dead, death_versions = deaths_in_record(ports, ids)
    for number, pid in named:
        if pid in enrolled:
            problems.append(f"{name}: row {number}: personal_id: {pid} is already enrolled")
        if pid in dead:
            problems.append(
                f"{name}: row {number}: personal_id: {pid} has a death "
                "registration in force and cannot be enrolled"
            )
    earliest = max(  # the first month both a level and a multiplier are in force
        str(first)
        for _, first in ports.db.query(
            "SELECT kind, MIN(from_month) FROM reference_levels GROUP BY kind"
        )
    )
    months = [(number, row.effective_month) for number, row in rows]
    months += [(number, f["effective_month"]) for number, f in partial if f.get("effective_month")]
    for number, month in months:
        if month < earliest:
            problems.append(
                f"{name}: row {number}: effective_month: no standard level in "
                f"force for {month} (the first is from {earliest})"
            )
    if problems:
        raise InputRejected(sorted_problems(problems))
    beneficiaries = [
        Beneficiary(**row.model_dump(), actor=actor, source=f"{name} row {number}")
        for number, row in rows
    ]
    ports.save(*beneficiaries, expected_versions=death_versions)
    return len(beneficiaries)


def deaths_in_record(
    ports: Ports, personal_ids: Sequence[str]
) -> tuple[set[str], dict[UUID, int | None]]:
    """Rule 10 from the record, not a read model: who among these people has a death in
    force, and the version of each one's death record (None: no record) for the save to
    check under the store's write lock."""
    ids = [death_record_id(p) for p in personal_ids]
    records = ports.events.load_many(ids)
    dead = {r.personal_id for r in records.values() if r.in_force}
    return dead, {i: (records[i].version if i in records else None) for i in ids}


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
    check_values(
        [
            ("personal id", values.personal_id, personal_id),
            ("--province", values.province_code, province_code),
            ("--commune", values.commune_code, commune_code),
        ]
    )
    b = beneficiary(ports, personal_id)
    b.move(province_code, commune_code, actor, "ledger move")
    ports.save(b)
