"""Settlement results from the post office and the banks: checked whole against the approved
lists (rule 7), then applied whole; the same file again changes nothing."""

from __future__ import annotations

import hashlib
from collections import defaultdict

from ledger import values
from ledger.aggregates import PaymentList, UnknownPayment, payment_list_id
from ledger.inputs import InputFile, InputRejected, SettlementRow, read_rows
from ledger.rules import RuleViolation
from ledger.service_layer.common import ImportResult, sorted_problems
from ledger.service_layer.ports import Ports


def settle(ports: Ports, file: InputFile, actor: str) -> ImportResult:
    """Apply a settlement results file: checked whole, then applied whole. The same file again
    (recognised by its SHA-256), or rows already applied, change nothing. The rows without a
    format error are checked against the lists too, so that every problem of the file is
    reported at once."""
    problems: list[str] = []
    rows = read_rows(file, SettlementRow, problems)
    ports.decide_from_read_models()
    name = file.name
    digest = hashlib.sha256(file.data).hexdigest()
    if not problems and ports.db.query(
        "SELECT 1 FROM settlement_files WHERE file_sha256 = ?", (digest,)
    ):
        return ImportResult(0, len(rows))
    seen: dict[str, int] = {}
    by_list: dict[tuple[str, str], list[tuple[int, SettlementRow]]] = defaultdict(list)
    for number, row in rows:
        if row.payment_id in seen:
            problems.append(
                f"{name}: row {number}: payment_id: {row.payment_id} is already "
                f"on row {seen[row.payment_id]}"
            )
            continue
        seen[row.payment_id] = number
        by_list[values.payment_list_of(row.payment_id)].append((number, row))
    lists: list[PaymentList] = []
    applied = unchanged = 0
    for (period, province), list_rows in by_list.items():
        payment_list: PaymentList | None = ports.events.get(payment_list_id(period, province))
        for number, row in list_rows:
            try:
                if payment_list is None:
                    raise UnknownPayment(f"unknown payment {row.payment_id}")
                if payment_list.check_settlement(row.payment_id, row.status) is None:
                    unchanged += 1
                else:
                    applied += 1
            except UnknownPayment as err:
                problems.append(f"{name}: row {number}: payment_id: {err}")
            except RuleViolation as err:
                problems.append(f"{name}: row {number}: status: {err}")
        if payment_list is not None:
            lists.append(payment_list)
    if problems:
        raise InputRejected(sorted_problems(problems))
    for payment_list in lists:
        payment_list.settle(
            [
                {**row.model_dump(), "row": number}
                for number, row in by_list[(payment_list.period, payment_list.province_code)]
            ],
            digest,
            actor,
            name,
        )
    ports.save(*lists)
    return ImportResult(applied, unchanged)
