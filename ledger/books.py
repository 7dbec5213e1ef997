"""Double-entry books: every amount that moves is a balanced transfer between two accounts.

Transfers are derived from recorded events by one pure function, so the projection that keeps
the balances and an auditor recomputing them from the store get the same numbers. A balance is
never stored as the truth; it is the sum of the transfers.

    allowance_expense / funeral_expense   what the state has granted (debit balance)
    beneficiary_payable                   what the ledger owes beneficiaries (control account;
                                          one subledger account per personal id: a debit
                                          balance there is an overpayment, a receivable)
    clearing:POST / clearing:BANK         payments sent to a channel, not yet confirmed
    disbursed:POST / disbursed:BANK       money that has left through the channel
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from ledger.rules import FAILED, PAID, PENDING, RETURNED

ALLOWANCE_EXPENSE = "allowance_expense"
FUNERAL_EXPENSE = "funeral_expense"
PAYABLE = "beneficiary_payable"


def clearing(channel: str) -> str:
    return f"clearing:{channel}"


def disbursed(channel: str) -> str:
    return f"disbursed:{channel}"


class Transfer(NamedTuple):
    """Immutable; a tuple, not a frozen dataclass: a national month makes millions of them,
    and a frozen dataclass takes several times as long to make."""

    debit: str
    credit: str
    amount: int  # always > 0
    personal_id: str  # the beneficiary whose payable subledger account is touched


def _move(debit: str, credit: str, amount: int, personal_id: str) -> list[Transfer]:
    """A transfer of `amount`; a negative amount is the reverse transfer (a back-dated
    death, say, takes back credits that were posted)."""
    if amount > 0:
        return [Transfer(debit, credit, amount, personal_id)]
    if amount < 0:
        return [Transfer(credit, debit, -amount, personal_id)]
    return []


def transfers_of(event_type: str, payload: Mapping[str, Any]) -> list[Transfer]:
    """The transfers a recorded event makes; most events move no money."""
    out: list[Transfer] = []
    if event_type == "PaymentList.CreditsAccrued":
        at = {name: i for i, name in enumerate(payload["columns"])}
        pid, allowance, funeral = at["personal_id"], at["allowance_delta"], at["funeral_delta"]
        for row in payload["accruals"]:
            out += _move(ALLOWANCE_EXPENSE, PAYABLE, row[allowance], row[pid])
            out += _move(FUNERAL_EXPENSE, PAYABLE, row[funeral], row[pid])
    elif event_type == "PaymentList.LinesIssued":
        at = {name: i for i, name in enumerate(payload["columns"])}
        pid, channel, total = at["personal_id"], at["channel"], at["total_amount"]
        for row in payload["lines"]:
            out += _move(PAYABLE, clearing(row[channel]), row[total], row[pid])
    elif event_type == "PaymentList.LinesSettled":
        for s in payload["settlements"]:
            out += settlement_transfers(
                s["previous_status"],
                s["status"],
                s["channel"],
                s["total_amount"],
                s["personal_id"],
            )
    return out


def settlement_transfers(
    previous: str, status: str, channel: str, amount: int, personal_id: str
) -> list[Transfer]:
    if previous == PENDING and status == PAID:
        return _move(clearing(channel), disbursed(channel), amount, personal_id)
    if previous == PENDING and status in (FAILED, RETURNED):
        return _move(clearing(channel), PAYABLE, amount, personal_id)
    if previous == PAID and status == RETURNED:
        return _move(disbursed(channel), PAYABLE, amount, personal_id)
    raise ValueError(f"no settlement from {previous} to {status}")


def post(transfers: Iterable[Transfer], into: dict[str, list[int]]) -> None:
    """Add transfers to running [debits, credits] per account."""
    for t in transfers:
        into.setdefault(t.debit, [0, 0])[0] += t.amount
        into.setdefault(t.credit, [0, 0])[1] += t.amount
