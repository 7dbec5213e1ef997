"""Settlement results from the post office and the banks: checked whole against the approved
lists (rule 7), then applied whole; the same file again changes nothing."""

from __future__ import annotations

import hashlib
from collections import defaultdict

from ledger import values
from ledger.aggregates import PaymentList, payment_list_id
from ledger.inputs import InputFile, InputRejected, Problems, SettlementRow, read_rows
from ledger.rules import RuleViolation
from ledger.service_layer.common import ImportResult, repeated, sorted_problems
from ledger.service_layer.ports import Ports


def settle(ports: Ports, file: InputFile, actor: str) -> ImportResult:
    """Apply a settlement results file: checked whole, then applied whole. The same file again
    (recognised by its SHA-256), or rows already applied, change nothing. Every row's payment
    and status that are fine on their own are checked against the lists too, so that every
    problem of the file is reported at once; a bad file's rows are not kept whole."""
    problems = Problems()
    partial: list[tuple[int, dict[str, str]]] = []  # rows not applied: fields fine alone
    rows = read_rows(
        file,
        SettlementRow,
        problems,
        refused=partial,
        now=ports.clock.now(),
        keep=("payment_id", "status"),
    )
    ports.decide_from_read_models()
    name = file.name
    digest = hashlib.sha256(file.data).hexdigest()
    if not problems and ports.db.query(
        "SELECT 1 FROM settlement_files WHERE file_sha256 = ?", (digest,)
    ):
        return ImportResult(0, len(rows))
    # every payment the file names, with its status when valid, from every row
    named: list[tuple[int, str, str | None]] = [(n, r.payment_id, r.status) for n, r in rows]
    named += [(n, f["payment_id"], f.get("status")) for n, f in partial if f.get("payment_id")]
    seen, repeats = repeated(name, "payment_id", [(number, pid) for number, pid, _ in named])
    problems += repeats
    lists: dict[tuple[str, str], PaymentList | None] = {}
    for key in dict.fromkeys(values.payment_list_of(pid) for _, pid, _ in named):
        lists[key] = ports.events.get(payment_list_id(*key))
    applied = unchanged = 0
    for number, pid, status in named:
        found = lists[values.payment_list_of(pid)]
        if found is None or pid not in found.lines:
            problems.append(f"{name}: row {number}: payment_id: unknown payment {pid}")
        elif seen[pid] == number and status is not None:  # a repeated row: named above
            try:
                if found.check_settlement(pid, status) is None:
                    unchanged += 1
                else:
                    applied += 1
            except RuleViolation as err:
                problems.append(f"{name}: row {number}: status: {err}")
    if problems:
        raise InputRejected(sorted_problems(problems))
    by_list: dict[tuple[str, str], list[tuple[int, SettlementRow]]] = defaultdict(list)
    for number, row in rows:
        by_list[values.payment_list_of(row.payment_id)].append((number, row))
    settled = [lists[key] for key in by_list]
    for payment_list in settled:
        assert payment_list is not None
        payment_list.settle(
            [
                {**row.model_dump(), "row": number}
                for number, row in by_list[(payment_list.period, payment_list.province_code)]
            ],
            digest,
            actor,
            name,
        )
    ports.save(*settled)
    return ImportResult(applied, unchanged)
