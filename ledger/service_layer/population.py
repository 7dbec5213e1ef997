"""Identities checked against the national population register: its extracts loaded whole or
not at all (`ledger population import`), and what enrolment and the death registrations ask
of it. Without an extract nothing is checked, and enrolment says so."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ledger import values
from ledger.inputs import (
    POPULATION_COLUMNS,
    Entry,
    InputFile,
    InputRejected,
    PopulationRow,
    Problems,
    check_entries,
    entry_chunks,
)
from ledger.rules import RuleViolation
from ledger.service_layer.common import repeated_in_staged, sorted_problems
from ledger.service_layer.ports import Extract, Ports, Staging
from ledger.values import shown

STAGED = (
    ("row_number", "BIGINT"),
    ("applicable", "INTEGER"),
    *((column, "TEXT") for column in POPULATION_COLUMNS),
    ("name_key", "TEXT"),
)


def import_population(
    ports: Ports, file: InputFile, extract_date: str, actor: str
) -> tuple[Extract, bool]:
    """Load an extract: every row checked, then the people it names put in the register as it
    gives them, in one transaction; the extract and whether it was loaded before (the same
    bytes again change nothing). An extract dated before the latest loaded is refused: it
    would put back what a newer one corrected."""
    now = ports.clock.now()
    try:
        day = values.iso_date(extract_date, now)
    except values.InvalidValue as err:
        raise RuleViolation(f"--date: {err}") from None
    before = ports.population.extract_of(file.sha256)
    if before is not None:
        return before, True
    latest = ports.population.latest()
    if latest is not None and day < latest.extract_date:
        raise RuleViolation(
            f"{file.name} is an extract of {day}, older than the extract {latest.extract_no} of "
            f"{latest.extract_date} already loaded: nothing was changed (load extracts in the "
            "order the register made them)"
        )
    staged = ports.stage("population", STAGED)
    try:
        rows = _check(ports, file, staged)
        loaded = Extract(0, day, file.sha256, file.name, rows, 0, 0, now.isoformat(), actor)
        return ports.population.load(staged, loaded), False
    finally:
        staged.close()


def _check(ports: Ports, file: InputFile, staged: Staging) -> int:
    """Every row checked into the staging table, a chunk at a time; how many rows, or every
    problem of the file at once."""
    problems = Problems()
    now = ports.clock.now()
    done = 0
    expected = file.count_lines()
    jobs = ((file.name, chunk, now) for chunk in entry_chunks(file, PopulationRow))
    for rows, found in ports.in_order(_staging_rows, jobs):
        problems.extend(found)
        staged.add(rows)
        done += len(rows)
        ports.progress(f"checking {file.name}", done, max(done, expected))
    staged.index("personal_id")
    problems.extend(repeated_in_staged(file.name, staged))
    if problems:
        raise InputRejected(sorted_problems(problems))
    return done


def _staging_rows(
    ports: Ports, job: tuple[str, list[Entry], datetime]
) -> tuple[list[tuple[Any, ...]], list[str]]:
    name, chunk, now = job
    valid, refused, found = check_entries(
        name, chunk, PopulationRow, now=now, keep=("personal_id",)
    )
    rows: list[tuple[Any, ...]] = [
        (number, 1, *row.model_dump().values(), values.name_key(row.full_name))
        for number, row in valid
    ]
    rows += [
        (number, 0, *(f.get(c) or None for c in POPULATION_COLUMNS), None) for number, f in refused
    ]
    return rows, found


def identity_problems(ports: Ports, name: str, staged: Staging) -> Iterable[str]:
    """What the register says of an enrolment file's staged rows (which hold `name_key`): a
    person it does not hold, a name or a date of birth that differs (both shown), a person it
    records as dead. Nothing when no extract is loaded."""
    latest = ports.population.latest()
    if latest is None:
        return
    extract = f"the population register (extract {latest.extract_no} of {latest.extract_date})"
    for row in ports.population.mismatches(staged):
        number, pid, full_name, key, born, held, their_name, their_key, their_born, died = row
        where = f"{name}: row {number}"
        if not held:
            yield f"{where}: personal_id: {pid} is not in {extract}"
            continue
        if their_key != key:
            yield (
                f"{where}: full_name: {shown(full_name)} differs from {shown(their_name)} in "
                f"{extract}"
            )
        if their_born != born:
            yield f"{where}: date_of_birth: {born} differs from {their_born} in {extract}"
        if died:
            yield f"{where}: personal_id: {pid} died on {died} according to {extract}"
