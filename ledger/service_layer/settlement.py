"""Settlement results from the post office and the banks: checked whole against the approved
lists (rule 7), then applied whole; the same file again changes nothing.

A national file is millions of rows: its rows are checked a chunk at a time into a staging
table, and checked against one payment list at a time (the lists are the record of each line's
state), so memory holds one list, not the country."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from uuid import UUID

from ledger import values
from ledger.aggregates import PaymentList, payment_list_id
from ledger.inputs import (
    SETTLEMENT_COLUMNS,
    InputFile,
    InputRejected,
    Problems,
    SettlementRow,
    checked_chunks,
)
from ledger.rules import RuleViolation
from ledger.service_layer.common import ImportResult, sorted_problems
from ledger.service_layer.ports import Ports, Staging

# The rows of a results file as staged: every field of a valid row (applicable = 1), the
# payment and status of a refused one, and the list each payment is on.
STAGED = (
    ("row_number", "BIGINT"),
    ("applicable", "INTEGER"),
    *((column, "TEXT") for column in SETTLEMENT_COLUMNS),
    ("period", "TEXT"),
    ("province_code", "TEXT"),
)


def settle(ports: Ports, file: InputFile, actor: str) -> ImportResult:
    """Apply a settlement results file: checked whole, then applied whole. The same file again
    (recognised by its SHA-256), or rows already applied, change nothing. Every row's payment
    and status that are fine on their own are checked against the lists too, so that every
    problem of the file is reported at once."""
    ports.decide_from_read_models()
    staged = ports.stage("settlement", STAGED)
    try:
        problems = Problems()
        rows = _stage(ports, file, staged, problems)
        digest = hashlib.sha256(file.data).hexdigest()
        if not problems and ports.db.query(
            "SELECT 1 FROM settlement_files WHERE file_sha256 = ?", (digest,)
        ):
            return ImportResult(0, rows)
        applied, unchanged = _check(ports, file.name, staged, problems)
        if problems:
            raise InputRejected(sorted_problems(problems))
        ports.events.save_in_chunks(_settled(ports, file.name, staged, digest, actor))
    finally:
        staged.close()
    ports.show_saved()
    return ImportResult(applied, unchanged)


def _stage(ports: Ports, file: InputFile, staged: Staging, problems: Problems) -> int:
    """Check the file's rows into the staging table; how many are valid."""
    valid_rows = 0
    chunks = checked_chunks(
        file, SettlementRow, problems, now=ports.clock.now(), keep=("payment_id", "status")
    )
    for valid, refused in chunks:
        rows = [
            (number, 1, *row.model_dump().values(), *values.payment_list_of(row.payment_id))
            for number, row in valid
        ]
        rows += [
            (
                number,
                0,
                *(f.get(c) or None for c in SETTLEMENT_COLUMNS),
                *(values.payment_list_of(f["payment_id"]) if f.get("payment_id") else (None, None)),
            )
            for number, f in refused
        ]
        staged.add(rows)
        valid_rows += len(valid)
    staged.index("period", "province_code")
    return valid_rows


def _check(ports: Ports, name: str, staged: Staging, problems: Problems) -> tuple[int, int]:
    """Each named payment against its list, one list at a time: unknown payments, repeated
    rows, and moves the line's status does not allow (rule 7). (applied, unchanged) rows."""
    applied = unchanged = 0
    for period, province in staged.query(
        "SELECT DISTINCT period, province_code FROM {staged} WHERE period IS NOT NULL ORDER BY 1, 2"
    ):
        found: PaymentList | None = ports.events.get(payment_list_id(period, province))
        for number, pid, status, first in staged.stream(
            "SELECT row_number, payment_id, status,"
            " MIN(row_number) OVER (PARTITION BY payment_id) FROM {staged}"
            " WHERE period = ? AND province_code = ? ORDER BY row_number",
            (period, province),
        ):
            if number != first:
                problems.append(
                    f"{name}: row {number}: payment_id: {pid} is already on row {first}"
                )
            if found is None or pid not in found.lines:
                problems.append(f"{name}: row {number}: payment_id: unknown payment {pid}")
            elif number == first and status is not None:
                try:
                    if found.check_settlement(pid, status) is None:
                        unchanged += 1
                    else:
                        applied += 1
                except RuleViolation as err:
                    problems.append(f"{name}: row {number}: status: {err}")
    return applied, unchanged


def _settled(
    ports: Ports, name: str, staged: Staging, digest: str, actor: str
) -> Iterator[tuple[list[PaymentList], dict[UUID, int | None]]]:
    """Each list with its rows settled, one list at a time, for one transaction."""
    columns = ", ".join(SETTLEMENT_COLUMNS)
    for period, province in staged.query(
        "SELECT DISTINCT period, province_code FROM {staged} WHERE applicable = 1 ORDER BY 1, 2"
    ):
        payment_list = ports.events.get(payment_list_id(period, province))
        if payment_list is None:  # checked above; a store never loses an aggregate
            raise RuleViolation(f"the list {period} {province} is not in the record")
        payment_list.settle(
            [
                {**dict(zip(SETTLEMENT_COLUMNS, fields, strict=True)), "row": number}
                for number, *fields in staged.stream(
                    f"SELECT row_number, {columns} FROM {{staged}} WHERE applicable = 1"
                    " AND period = ? AND province_code = ? ORDER BY row_number",
                    (period, province),
                )
            ],
            digest,
            actor,
            name,
        )
        yield [payment_list], {}
