"""The reference data the rules read: the standard level and the funeral multiplier by month,
loaded once into a new store. Every later change is proposed by one person (`ledger rates
set`), shown with its impact (`ledger reference pending`) and takes effect only when a second
person approves it (`ledger reference approve`); until then nothing reads it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import IntegrityError

from ledger import views
from ledger.aggregates import (
    FUNERAL_MULTIPLIER,
    PAYING_ACCOUNT,
    REFERENCE_DATA_ID,
    STANDARD_LEVEL,
    UNIT_REORGANISATION,
    Proposal,
    ReferenceDataHistory,
    Schedules,
)
from ledger.inputs import InputRejected
from ledger.months import month_of, parse_month
from ledger.reference import (
    built_in_reorganisations,
    default_funeral_multipliers,
    default_standard_levels,
    reference_data,
)
from ledger.rules import ReferenceData, RuleViolation
from ledger.service_layer import impact
from ledger.service_layer.common import check_month
from ledger.service_layer.impact import Impact
from ledger.service_layer.ports import Ports

PROPOSE_SOURCE = "ledger rates set"
APPROVE_SOURCE = "ledger reference approve"


@dataclass(frozen=True)
class PendingChange:
    """A proposal waiting for approval, with what it would replace and do."""

    proposal: Proposal
    # the value in force in the proposal's month before it (after the pending changes
    # approved ahead of it); None when nothing is in force then
    replaces: Any
    impact: Impact | None  # None for a kind whose impact is not computed


def ensure_reference_data(ports: Ports) -> None:
    """Load the built-in reference data into a store that has none, and the reorganisations
    that ship with the ledger into one that lacks them (a store made before rule 9): several
    processes may open a store at once, and one of them loads it."""
    history: ReferenceDataHistory | None = ports.events.get(REFERENCE_DATA_ID)
    new = history is None
    if history is None:
        history = ReferenceDataHistory(
            standard_levels=default_standard_levels(),
            funeral_multipliers=default_funeral_multipliers(),
            actor="ledger",
            source="reference_data/standard_levels.csv, funeral_multipliers.csv",
        )
    for month, rows, source in built_in_reorganisations():
        history.load_reorganisation(month, rows, source)
    if not history.pending_events:
        return
    try:
        if new:
            ports.events.save_new(history)
        else:
            ports.save(history)
    except IntegrityError:
        pass  # another process loaded it


def reference_history(ports: Ports) -> ReferenceDataHistory:
    """The reference data as recorded, with its proposals."""
    return _history(ports)


def _history(ports: Ports) -> ReferenceDataHistory:
    history: ReferenceDataHistory | None = ports.events.get(REFERENCE_DATA_ID)
    if history is None:  # every store is opened with it loaded
        raise RuntimeError("the store holds no reference data")
    return history


def _actor(actor: str) -> str:
    if not actor.strip():
        raise InputRejected(["--by: who is acting is required"])
    return actor


def propose_reference_change(
    ports: Ports,
    kind: str,
    from_month: str,
    value: Any,
    actor: str,
    source: str = PROPOSE_SOURCE,
) -> Proposal:
    """Propose one change (`kind`: standard_level or funeral_multiplier) from a month on; it
    changes nothing until someone else approves it."""
    return propose_reference_changes(ports, from_month, [(kind, value)], actor, source)[0]


def propose_reference_changes(
    ports: Ports,
    from_month: str,
    changes: Sequence[tuple[str, Any]],
    actor: str,
    source: str = PROPOSE_SOURCE,
) -> list[Proposal]:
    """Propose several changes from one month on, in one transaction (all or none)."""
    check_month(from_month, "--from", ports.clock.now())
    _actor(actor)
    history = _history(ports)
    at = ports.clock.now().isoformat()
    proposals = [
        history.propose(kind, from_month, value, actor, source, at) for kind, value in changes
    ]
    try:
        ports.save(history)
    except IntegrityError:
        raise RuleViolation(
            "another change of the reference data was recorded at the same moment: nothing "
            "was proposed; run the command again"
        ) from None
    return proposals


def propose_rates(
    ports: Ports,
    from_month: str,
    actor: str,
    amount: int | None = None,
    multiplier: int | None = None,
) -> list[Proposal]:
    """`ledger rates set`: a new standard level and/or funeral multiplier from a month on,
    proposed (the multiplier first: a level may need it to be in force)."""
    changes: list[tuple[str, Any]] = []
    if multiplier is not None:
        changes.append((FUNERAL_MULTIPLIER, multiplier))
    if amount is not None:
        changes.append((STANDARD_LEVEL, amount))
    if not changes:
        raise InputRejected(["rates set needs --amount VND, --funeral-multiplier N, or both"])
    return propose_reference_changes(ports, from_month, changes, actor)


def _reference(schedules: Schedules) -> ReferenceData:
    levels, multipliers = schedules
    return reference_data(
        [(STANDARD_LEVEL, m, v) for m, v in levels.items()]
        + [(FUNERAL_MULTIPLIER, m, v) for m, v in multipliers.items()]
    )


def _in_force(schedules: Schedules, kind: str, from_month: str) -> Any:
    ref = _reference(schedules)
    schedule = ref.standard_level if kind == STANDARD_LEVEL else ref.funeral_multiplier
    try:
        return schedule.at(parse_month(from_month))
    except RuleViolation:
        return None


def pending_reference_changes(ports: Ports) -> list[PendingChange]:
    """The proposals waiting for approval, in the order an approval applies them, each with
    its impact measured on top of the ones before it (so that the impacts add up to what
    approving all of them does)."""
    history = _history(ports)
    pending = history.pending()
    if not pending:
        return []
    ports.decide_from_read_models()
    through = views.latest_approved_period(ports.db)
    groups = impact.cohorts(ports.db, through)
    current = month_of(ports.clock.today())
    schedules = history.schedules
    out = []
    for p in pending:
        after = ReferenceDataHistory.with_change(schedules, p.kind, p.from_month, p.value)
        effect = None
        if p.kind in (STANDARD_LEVEL, FUNERAL_MULTIPLIER):
            effect = impact.impact(
                groups,
                _reference(schedules),
                _reference(after),
                max(parse_month(p.from_month), current),
                parse_month(through) if through is not None else None,
            )
        replaces = (
            None
            if p.kind == UNIT_REORGANISATION
            else _accounts_replaced(history, p.value)
            if p.kind == PAYING_ACCOUNT
            else _in_force(schedules, p.kind, p.from_month)
        )
        out.append(PendingChange(p, replaces, effect))
        schedules = after
    return out


def _accounts_replaced(history: ReferenceDataHistory, rows: list[list[str]]) -> list[list[str]]:
    """The paying accounts in force of the provinces a proposal names."""
    return [
        [code, *history.paying_accounts[code]]
        for code in sorted({row[0] for row in rows})
        if code in history.paying_accounts
    ]


def describe(p: Proposal) -> str:
    """A proposal as one line names it."""
    what = p.kind.replace("_", " ")
    if p.kind == UNIT_REORGANISATION:
        n = len(p.value)
        what, value = f"reorganisation of {n:,} unit{'' if n == 1 else 's'}", ""
    elif p.kind == PAYING_ACCOUNT:
        n = len(p.value)
        what, value = f"paying accounts of {n:,} province{'' if n == 1 else 's'}", ""
    else:
        value = f" {p.value:,} VND" if p.kind == STANDARD_LEVEL else f" {p.value}"
    return f"proposal {p.proposal_id} ({what}{value} from {p.from_month}, by {p.proposed_by})"


def approve_reference_changes(
    ports: Ports, actor: str, proposal_ids: Sequence[str] | None = None
) -> list[Proposal]:
    """Approve every pending change (or those of `proposal_ids`), in one transaction. Refused
    whole, one line per proposal, when the approver proposed any of them (the maker is never
    the checker) or one can no longer take effect: nothing is then recorded."""
    _actor(actor)
    history = _history(ports)
    pending = history.pending()
    if proposal_ids is not None:
        wanted = [str(i) for i in proposal_ids]
        waiting = {p.proposal_id for p in pending}
        unknown = [i for i in wanted if i not in waiting]
        if unknown:
            raise InputRejected(
                [f"proposal {i}: no such reference-data change is pending" for i in unknown]
            )
        pending = [p for p in pending if p.proposal_id in wanted]
    if not pending:
        raise RuleViolation(
            "no reference-data change is pending: propose one with `ledger rates set`"
        )
    if proposal_ids is None:  # an account money leaves from is approved by its name only
        named = [p for p in pending if p.kind == PAYING_ACCOUNT]
        if named:
            raise InputRejected(
                [
                    f"{describe(p)}: paying accounts are approved by the proposal's id, once "
                    f"read in `ledger reference pending`: `ledger reference approve --proposal "
                    f"{p.proposal_id} --by USER`"
                    for p in named
                ]
            )
    problems = []
    for p in pending:
        try:
            history.check_approver(p.proposal_id, actor)
        except RuleViolation as err:
            problems.append(f"{describe(p)}: {err}")
    if not problems:
        for p in pending:
            try:
                history.approve(
                    p.proposal_id, actor, f"{APPROVE_SOURCE} (proposal {p.proposal_id})"
                )
            except RuleViolation as err:
                problems.append(f"{describe(p)}: {err}")
    if problems:
        raise InputRejected(problems)
    try:
        ports.save(history)
    except IntegrityError:
        raise RuleViolation(
            "the reference data changed while this approval was decided (a proposal or an "
            "approval recorded at the same moment): nothing was approved; review the pending "
            "changes again"
        ) from None
    return [history.proposals[p.proposal_id] for p in pending]


def withdraw_reference_change(ports: Ports, proposal_id: str, reason: str, actor: str) -> Proposal:
    """Drop a pending proposal: by its proposer, or by a reviewer who turns it down."""
    _actor(actor)
    if not reason.strip():
        raise InputRejected(["--reason: a reason is required"])
    history = _history(ports)
    history.withdraw(str(proposal_id), reason.strip(), actor, "ledger reference withdraw")
    try:
        ports.save(history)
    except IntegrityError:
        raise RuleViolation(
            "the reference data changed at the same moment: nothing was withdrawn; run the "
            "command again"
        ) from None
    return history.proposals[str(proposal_id)]
