"""The accounts the provinces pay from: a province's bank transfers (`payroll export --format
pain001`) name its paying account as their debtor. A file of them is imported as a proposal of
reference data, in force once a second person approves it (`ledger reference approve`): whoever
could change the account money leaves from alone could send a month's allowances elsewhere."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.aggregates import (
    MAX_PAYING_ACCOUNT_ROWS,
    PAYING_ACCOUNT,
    AlreadyRecorded,
    Proposal,
)
from ledger.inputs import (
    InputFile,
    InputRejected,
    PayingAccountRow,
    Problems,
    Refused,
    read_rows,
)
from ledger.months import format_month, month_of
from ledger.service_layer.common import sorted_problems
from ledger.service_layer.ports import PayingAccount, Ports
from ledger.service_layer.reference import (
    ensure_reference_data,
    propose_reference_change,
    reference_history,
)

IMPORT_SOURCE = "ledger paying-accounts import"


@dataclass(frozen=True)
class PayingAccountsImported:
    """What an import did: a proposal, or nothing (`unchanged` says why)."""

    rows: int
    proposal: Proposal | None
    unchanged: str | None = None


def import_paying_accounts(ports: Ports, file: InputFile, actor: str) -> PayingAccountsImported:
    """Propose the paying accounts of a file, checked whole first: one line per problem (file,
    row, field); nothing is recorded unless every row is right. Each province is one in force
    now (rule 9), once in the file. The same file imported again changes nothing."""
    ensure_reference_data(ports)
    problems = Problems()
    refused: list[Refused] = []
    rows = read_rows(
        file, PayingAccountRow, problems, refused, now=ports.clock.now(), keep=("province_code",)
    )
    if not rows and not refused:
        raise InputRejected([f"{file.name}: no row: name at least one province's account"])
    if len(rows) + len(refused) > MAX_PAYING_ACCOUNT_ROWS:
        raise InputRejected(
            [f"{file.name}: more than {MAX_PAYING_ACCOUNT_ROWS} rows: one a province, at most"]
        )
    # every row's province, those of rows with other problems too: the file reported whole
    codes = sorted(
        [(n, r.province_code) for n, r in rows]
        + [(n, f["province_code"]) for n, f in refused if "province_code" in f]
    )
    month = month_of(ports.clock.today())
    history = reference_history(ports)
    in_force = history.units().in_force(month)
    first: dict[str, int] = {}
    for n, code in codes:
        if code not in in_force:
            problems.append(
                f"{file.name}: row {n}: province_code: {code} is not a province in force in "
                f"{format_month(month)} (`ledger units show`)"
            )
        elif code in first:
            problems.append(
                f"{file.name}: row {n}: province_code: {code} is on row {first[code]} too: one "
                "account a province"
            )
        first.setdefault(code, n)
    if problems:
        raise InputRejected(sorted_problems(problems))
    accounts = [[r.province_code, r.debtor_name, r.bank_code, r.account_number] for _, r in rows]
    wanted = sorted(map(tuple, accounts))
    for p in history.pending():
        if p.kind == PAYING_ACCOUNT and sorted(map(tuple, p.value)) == wanted:
            return PayingAccountsImported(len(rows), p, "already proposed, waiting for approval")
    try:
        proposal = propose_reference_change(
            ports,
            PAYING_ACCOUNT,
            format_month(month),
            accounts,
            actor,
            f"{IMPORT_SOURCE} {file.name}",
        )
    except AlreadyRecorded:
        return PayingAccountsImported(len(rows), None, "already in force")
    return PayingAccountsImported(len(rows), proposal)


def paying_accounts(ports: Ports) -> dict[str, PayingAccount]:
    """The paying accounts in force, by province, from the record (the reference data's
    events), never from a table."""
    return {
        code: PayingAccount(code, *account)
        for code, account in sorted(reference_history(ports).paying_accounts.items())
    }
