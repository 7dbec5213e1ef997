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

from collections.abc import Iterator, Mapping
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


# A leg: (debit, credit, amount, personal id), the amount of any sign (a negative one is the
# reverse transfer: a back-dated death, say, takes back credits that were posted); the rule
# of which accounts each event's amounts move between, in one place.
_Leg = tuple[str, str, int, str]


def _legs(event_type: str, payload: Mapping[str, Any]) -> Iterator[_Leg]:
    if event_type == "PaymentList.CreditsAccrued":
        at = {name: i for i, name in enumerate(payload["columns"])}
        pid, allowance, funeral = at["personal_id"], at["allowance_delta"], at["funeral_delta"]
        for row in payload["accruals"]:
            yield ALLOWANCE_EXPENSE, PAYABLE, row[allowance], row[pid]
            yield FUNERAL_EXPENSE, PAYABLE, row[funeral], row[pid]
    elif event_type == "PaymentList.LinesIssued":
        at = {name: i for i, name in enumerate(payload["columns"])}
        pid, channel, total = at["personal_id"], at["channel"], at["total_amount"]
        for row in payload["lines"]:
            yield PAYABLE, clearing(row[channel]), row[total], row[pid]
    elif event_type == "PaymentList.LinesSettled":
        for s in payload["settlements"]:
            yield _settlement_leg(
                s["previous_status"], s["status"], s["channel"], s["total_amount"], s["personal_id"]
            )


def _transfers(event_type: str, payload: Mapping[str, Any]) -> Iterator[_Leg]:
    """The legs as transfers: a positive amount as it is, a negative one reversed, none for
    a zero."""
    for debit, credit, amount, pid in _legs(event_type, payload):
        if amount > 0:
            yield debit, credit, amount, pid
        elif amount < 0:
            yield credit, debit, -amount, pid


def transfers_of(event_type: str, payload: Mapping[str, Any]) -> list[Transfer]:
    """The transfers a recorded event makes; most events move no money."""
    return [Transfer(*t) for t in _transfers(event_type, payload)]


def post_event(event_type: str, payload: Mapping[str, Any], into: dict[str, list[int]]) -> None:
    """Add the event's transfers to running [debits, credits] per account: the sums of
    `transfers_of`, without a transfer made for each of a list's lines (a projection posts
    millions of them)."""
    for debit, credit, amount, _ in _transfers(event_type, payload):
        into.setdefault(debit, [0, 0])[0] += amount
        into.setdefault(credit, [0, 0])[1] += amount


def _settlement_leg(
    previous: str, status: str, channel: str, amount: int, personal_id: str
) -> _Leg:
    if previous == PENDING and status == PAID:
        return clearing(channel), disbursed(channel), amount, personal_id
    if previous == PENDING and status in (FAILED, RETURNED):
        return clearing(channel), PAYABLE, amount, personal_id
    if previous == PAID and status == RETURNED:
        return disbursed(channel), PAYABLE, amount, personal_id
    raise ValueError(f"no settlement from {previous} to {status}")
