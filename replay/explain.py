"""`ledger explain ID [--period YYYY-MM]`: every amount of one person, decomposed into the facts
behind it, each with the event that recorded it (notification id), when it took effect and
when the ledger learned it (recorded_at).

Nothing here decides an amount on its own: months, levels, allowances, the funeral allowance,
the balance and the withheld reason come from the pure rules of `ledger/rules.py`, fed with
the same read models the payroll reads. The events (read from the store and joined with the
audit trail for their notification ids) say *why*; the read models say *what*; the checks at
the end prove the two agree and that the decomposition adds up to what the rules compute.

The balance of a period M is rule 2 as an auditor reads it for M: the credits of every entitled
month up to M (plus the funeral allowance) minus the approved lines *of periods up to M* that
are PENDING or PAID now. For the latest period (the default) that is exactly the balance the
payroll and `ledger receivables` use; for an earlier M, lines of later periods are listed but
left out of the balance (they pay months after M).
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from msgspec import Struct, structs

from ledger import values
from ledger.aggregates import REFERENCE_DATA_ID, beneficiary_id, death_record_id
from ledger.application import Ledger
from ledger.inputs import InputRejected
from ledger.months import InvalidMonth, format_month, month_of, month_of_iso, parse_month
from ledger.reference import reference_data
from ledger.rules import (
    COUNTS_AS_ISSUED,
    FUNERAL,
    LINE_FIELDS,
    PENDING,
    REGULAR,
    Credits,
    Entitlement,
    Issued,
    IssuedLine,
    ReferenceData,
    RuleViolation,
    Schedule,
    assess,
    counts_in_balance,
    credits_through,
    funeral_credit,
    issued_through,
    monthly_allowance,
    overpaid_months,
    payment_id,
)
from ledger.rules import (
    balance as balance_of,
)
from ledger.service_layer.common import check_values
from ledger.terminal import SafeTable
from projections.readmodels import SUMMARISED, holds
from replay.explain_units import UnitsOfPerson

# Payment-list events that carry rows for many people (lines, postings, settlements).
_BULK = sorted(SUMMARISED)
# Event attributes that are bookkeeping of the event library, not facts.
_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


# What the explanation is made of


@dataclass(frozen=True)
class EventRef:
    """The stored event behind a fact: its place in the one notification log, when the ledger
    recorded it, who caused it and from what."""

    notification_id: int
    event_type: str
    recorded_at: str
    actor: str | None
    source: str | None


@dataclass(frozen=True)
class PersonEvent:
    """One event of the person's own history (enrolment, hold, move, death registration...)."""

    event: EventRef
    what: str
    effective: str | None  # the month or date it takes effect; None: from when it was recorded
    details: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DeathInForce:
    registration_number: str
    date_of_death: str
    month_of_death: str
    registered_at: str  # the civil registry's time of the registration that set the date
    registry_office: str
    claimant_personal_id: str | None
    claimant_name: str | None
    claimant_channel: str | None
    event: EventRef  # the event that set the date of death now in force
    claimant_event: EventRef | None  # the event that named the claimant now in force
    first_recorded_at: str  # when the ledger first learned of this registration


@dataclass(frozen=True)
class Person:
    personal_id: str
    full_name: str
    province_code: str
    commune_code: str
    category: str
    coefficient: str  # exact decimal text, as enrolled
    effective_month: str
    channel: str
    terminated_from: str | None
    held: bool
    last_entitled_month: str | None
    enrolment: EventRef
    death: DeathInForce | None


@dataclass(frozen=True)
class MonthCredit:
    """One entitled month: level in force x coefficient, rounded half-up by the rules."""

    month: str
    standard_level: int
    level_from: str  # the month from which that level is in force
    level_event: EventRef  # the reference-data event that set it
    coefficient: str
    allowance: int


@dataclass(frozen=True)
class FuneralCredit:
    """Rule 4: multiplier x level in force in the month of death, credited once."""

    month_of_death: str
    standard_level: int
    level_event: EventRef
    multiplier: int
    multiplier_event: EventRef
    amount: int
    death_event: EventRef


@dataclass(frozen=True)
class SettlementStep:
    previous_status: str
    status: str
    settled_at: str
    reference: str
    reason: str
    event: EventRef  # source: the settlement file and row


@dataclass(frozen=True)
class Line:
    period: str
    payment_id: str
    province_code: str
    kind: str
    payee_personal_id: str
    payee_name: str
    channel: str
    regular_amount: int
    funeral_amount: int
    arrears_amount: int
    total_amount: int
    status: str
    counts: bool  # PENDING or PAID: in the balance of its period and every later one
    approval: EventRef  # actor = approved by
    drafted_by: str | None
    issued: EventRef  # the LinesIssued event that holds this line
    settlements: tuple[SettlementStep, ...]
    registration_number: str | None = None  # the death a FUNERAL line was paid under
    # rule 9: the unit paid in (province_code/commune_code), the unit the person was recorded
    # in when the list was approved, and the reorganisations (their notifications) between
    commune_code: str = ""
    recorded_unit: str = ""
    reorganised_by: tuple[int, ...] = ()

    def issued_line(self) -> IssuedLine:
        return IssuedLine(
            parse_month(self.period),
            self.status,
            self.total_amount,
            self.funeral_amount,
            self.regular_amount,
            self.arrears_amount,
            self.registration_number,
        )


@dataclass(frozen=True)
class ClaimantDebt:
    """Rule 4: what a funeral claimant was paid under a registration since revoked; the
    claimant owes it, not the beneficiary."""

    claimant_personal_id: str
    claimant_name: str
    registration_number: str
    amount: int
    payment_ids: tuple[str, ...]


@dataclass(frozen=True)
class Posting:
    """Credits brought up to date in the books on an approval (PaymentList.CreditsAccrued)."""

    period: str
    province_code: str
    allowance_delta: int
    funeral_delta: int
    credited_through: str
    event: EventRef


@dataclass(frozen=True)
class Overpayment:
    """What the lines paid beyond what is due, and why: months paid after entitlement ended
    (by lines approved before the ledger learned of a back-dated death or termination), and a
    funeral allowance paid that is no longer due (the death revoked, or moved to a month the
    person was not entitled in). Amounts at the levels in force now."""

    outstanding: int  # the receivable: what the credits not yet paid did not absorb
    months: tuple[str, ...]
    months_amount: int
    months_cause: EventRef | None
    funeral_paid: int  # funeral allowance on PENDING or PAID lines beyond the funeral credit
    funeral_cause: EventRef | None
    explanation: str


@dataclass(frozen=True)
class Balance:
    period: str
    allowance_credits: int
    funeral_credit: int
    credits: int
    issued: int  # lines of periods <= period, PENDING or PAID
    owed: int  # credits - issued (rule 2)
    receivable: int  # -owed when negative: an overpayment to recover
    state: str  # TO_PAY, NOTHING_DUE or RECEIVABLE
    withheld: str | None  # HELD or NO_CLAIMANT: owed but no line (rules 4, 5)
    # the books (balances read model), as posted by the approvals so far
    books_credited_through: str | None
    books_allowance_credited: int
    books_funeral_credited: int
    books_issued_total: int


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Explanation:
    personal_id: str
    period: str
    known_through: int  # the last notification the read models had applied
    person: Person
    history: tuple[PersonEvent, ...]
    months: tuple[MonthCredit, ...]
    funeral: FuneralCredit | None
    lines: tuple[Line, ...]
    postings: tuple[Posting, ...]
    balance: Balance
    overpayment: Overpayment | None
    claimant_debts: tuple[ClaimantDebt, ...]
    notes: tuple[str, ...]
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


# Reading the events


@dataclass(frozen=True)
class _Recorded:
    ref: EventRef
    aggregate_id: str
    version: int
    facts: dict[str, Any]


class _Events:
    """Stored events of a few aggregates, each joined with its audit-trail row (notification id,
    recorded_at): the store says what happened, the audit trail where it sits in the log."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.problems: list[str] = []
        self.ignored = 0  # recorded after the read models were read

    def of(
        self,
        ids: Sequence[UUID],
        person: str | None = None,
        payment_ids: dict[str, set[str]] | None = None,
    ) -> dict[UUID, list[_Recorded]]:
        """With `person`, the bulk events of a payment list (thousands of lines each) leave
        the database only when they may hold the person's entries: their personal id, or one
        of the list's `payment_ids` of theirs, within the range their audit-trail summary
        keeps. One person's view of a national list reads that person's events."""
        audit = self._audit([str(u) for u in ids])
        mapper = self.ledger.app.mapper
        out: dict[UUID, list[_Recorded]] = {}
        for uid in ids:
            rows = audit.get(str(uid), {})
            recorded = []
            joined = 0
            stored_events = self._stored(uid, rows, person, (payment_ids or {}).get(str(uid)))
            for stored in stored_events:
                # an event of many people without this one: its bytes stayed in the database
                version, topic = (
                    stored
                    if isinstance(stored, tuple)
                    else (stored.originator_version, stored.topic)
                )
                event_type = topic.rsplit(":", 1)[1]
                row = rows.get(version)
                if row is None:
                    if not rows or version > max(rows):
                        self.ignored += 1  # newer than the read models: not part of this view
                    else:
                        self.problems.append(
                            f"{uid} version {version} is stored but not in the audit trail"
                        )
                    continue
                joined += 1
                ref = EventRef(row[0], row[2], row[1], row[3], row[4])
                if ref.event_type != event_type:
                    self.problems.append(
                        f"notification {ref.notification_id}: {ref.event_type} in the audit "
                        f"trail, {event_type} in the store"
                    )
                if isinstance(stored, tuple):
                    continue
                attributes = vars(mapper.to_domain_event(stored))
                facts = {k: v for k, v in attributes.items() if k not in _ENVELOPE}
                stamp = attributes["timestamp"].isoformat()
                if stamp != ref.recorded_at:
                    self.problems.append(
                        f"notification {ref.notification_id}: recorded_at {ref.recorded_at} in "
                        f"the audit trail, {stamp} in the store"
                    )
                recorded.append(_Recorded(ref, str(uid), version, facts))
            if joined != len(rows):
                self.problems.append(
                    f"{uid}: {len(rows)} events in the audit trail, {joined} stored"
                )
            out[uid] = recorded
        return out

    def _stored(
        self,
        uid: UUID,
        rows: dict[int, tuple[Any, ...]],
        person: str | None,
        payment_ids: set[str] | None,
    ) -> Iterable[StoredEvent | tuple[int, str]]:
        """The aggregate's stored events, its bulk ones read only when they may hold the
        person's entries: by their summaries' ranges, or else (summaries an earlier version
        wrote without one) by a search of their bytes in the database."""
        events = self.ledger.events
        if person is None:
            return events.app.recorder.select_events(uid)
        keys = {"personal_id": {person}, "payment_id": payment_ids or set()}
        wanted: set[int] = set()
        for version, row in rows.items():
            summarised = SUMMARISED.get(row[2])
            if summarised is None:
                continue
            key = summarised[1]
            may_hold = holds(_summary(row[5]), key, keys[key])
            if may_hold is None:
                return self._searched(uid, person)
            if may_hold:
                wanted.add(version)
        return events.events_with(uid, _BULK, wanted)

    def _searched(self, uid: UUID, person: str) -> Iterable[StoredEvent | tuple[int, str]]:
        mapper = self.ledger.app.mapper
        if mapper.compressor is not None or mapper.cipher is not None:
            # a compressed or enciphered store hides the id from a byte search: read them all
            return self.ledger.app.recorder.select_events(uid)
        return self.ledger.events.events_holding(uid, _BULK, person.encode())

    def _audit(self, ids: list[str]) -> dict[str, dict[int, tuple[Any, ...]]]:
        """Each aggregate's audit-trail rows by version: notification id, recorded at, event
        type, actor, source, and the summary of a bulk event (None for the others)."""
        found: dict[str, dict[int, tuple[Any, ...]]] = defaultdict(dict)
        of_bulk = ",".join("?" * len(_BULK))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for n, at, kind, agg, version, actor, source, summary in self.ledger.db.query(
                "SELECT notification_id, recorded_at, event_type, aggregate_id,"
                f" aggregate_version, actor, source, CASE WHEN event_type IN ({of_bulk})"
                " THEN facts END FROM audit_trail"
                f" WHERE aggregate_id IN ({','.join('?' * len(chunk))})",
                [*_BULK, *chunk],
            ):
                found[agg][int(version)] = (int(n), str(at), kind, actor, source, summary)
        return found


def _summary(facts: Any) -> dict[str, Any]:
    """A bulk event's summary in the audit trail; empty when it is not one (the event is
    then searched, and the events = audit trail check names what is amiss)."""
    try:
        found = json.loads(facts) if isinstance(facts, str) else None
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


# The explanation


def explain(ledger: Ledger, personal_id: str, period: str | None = None) -> Explanation:
    """Every amount of one person through `period` (default: the latest period with a list,
    else the current month), with the events behind it."""
    check_values([("personal id", values.personal_id, personal_id)])
    ledger.catch_up()
    through = _period(ledger, period)
    known_through = int(
        ledger.db.query("SELECT COALESCE(MAX(notification_id), 0) FROM audit_trail")[0][0]
    )
    account = ledger.account(personal_id)
    if account is None:
        dead = ledger.db.query(
            "SELECT date_of_death FROM deaths WHERE personal_id = ? AND in_force = 1",
            (personal_id,),
        )
        also = f" (a death on {dead[0][0]} is recorded for them)" if dead else ""
        raise RuleViolation(f"{personal_id} is not enrolled: nothing to explain{also}")
    ref = ledger.reference_data()

    events = _Events(ledger)
    loaded = events.of(
        [beneficiary_id(personal_id), death_record_id(personal_id), REFERENCE_DATA_ID]
    )
    # the rules' inputs come from the aggregates' own folds; the events give the provenance
    aggregates = ledger.events.load_many(
        [beneficiary_id(personal_id), death_record_id(personal_id)]
    )
    record = aggregates.get(death_record_id(personal_id))
    in_force = record.death_in_force if record is not None else None
    entitlement = aggregates[beneficiary_id(personal_id)].entitlement(in_force)
    person, history, provinces, cause = _person(
        personal_id,
        loaded[beneficiary_id(personal_id)],
        loaded[death_record_id(personal_id)],
        entitlement,
        in_force.registration_number if in_force else None,
    )
    levels = _Levels(loaded[REFERENCE_DATA_ID])
    checks: list[Check] = []
    notes: list[str] = []

    # Credits, month by month (rules 1 and 4)
    credits = credits_through(entitlement, through, ref)
    months = _months(entitlement, through, ref, levels)
    funeral = _funeral(entitlement, through, ref, levels, person.death)
    if person.death is not None and funeral is None:
        death_month = parse_month(person.death.month_of_death)
        if death_month > through:
            notes.append(
                f"the funeral allowance is credited from {person.death.month_of_death}, "
                f"after {format_month(through)}"
            )
        else:
            notes.append(
                f"no funeral allowance: not entitled in {person.death.month_of_death}, "
                "the month of death (rule 4)"
            )
    allowance_sum = sum(m.allowance for m in months)
    funeral_sum = funeral.amount if funeral else 0
    checks.append(
        _check(
            "credits decomposed = rules' credits_through",
            (allowance_sum, funeral_sum),
            (credits.allowance, credits.funeral),
        )
    )
    checks.append(
        _check(
            "reference data from its events = read model",
            levels.reference_data(),
            ref,
            show=False,
        )
    )
    checks.append(
        _check(
            "entitlement from the person's events = read models",
            _entitlement_text(entitlement),
            _entitlement_text(account.entitlement),
        )
    )

    # Lines and books postings (the payment lists' events)
    units = UnitsOfPerson(
        [
            (r.ref.notification_id, r.facts["effective_month"], r.facts["mappings"])
            for r in loaded[REFERENCE_DATA_ID]
            if r.ref.event_type.endswith(".UnitsReorganised")
        ],
        [
            (h.event.notification_id, dict(h.details)["province"], dict(h.details)["commune"])
            for h in history
            if h.what in ("enrolled", "moved")
        ],
    )
    lists = _lists(ledger, personal_id, provinces | units.provinces())
    list_events = events.of(
        [UUID(list_id) for list_id in lists],
        personal_id,
        _payment_ids(ledger, personal_id, lists),
    )
    lines = _lines(ledger, personal_id, list_events, checks, units)
    postings = _postings(personal_id, lists, list_events)

    # The balance (rule 2) and what the rules would do with it (rules 3 to 5)
    revoked = ledger.revoked_registrations(personal_id)
    in_balance = [ln for ln in lines if counts_in_balance(ln.issued_line(), through, revoked)]
    issued = issued_through((ln.issued_line() for ln in lines), through, revoked)
    owed = balance_of(entitlement, issued, through, ref).owed
    claimant_debts = _claimant_debts(lines, through, revoked)
    assessment = assess(
        structs.replace(account, issued=issued, entitlement=entitlement), through, ref
    )
    checks.append(_check("balance = rules' assess (rule 2)", owed, assessment.owed))
    # the read models' issued total counts every period (no later-period cut): compare alike
    every_period = parse_month("9999-12")
    counting = [ln for ln in lines if counts_in_balance(ln.issued_line(), every_period, revoked)]
    checks.append(
        _check(
            "PENDING and PAID lines = balances read model (issued, funeral issued)",
            _pair(issued_through((ln.issued_line() for ln in lines), every_period, revoked)),
            (account.issued.total, account.issued.funeral),
        )
    )
    checks.append(
        _check(
            "postings = balances read model (allowance, funeral credited)",
            (sum(p.allowance_delta for p in postings), sum(p.funeral_delta for p in postings)),
            (account.posted.allowance, account.posted.funeral),
        )
    )
    later = [ln.payment_id for ln in counting if parse_month(ln.period) > through]
    if later:
        notes.append(
            f"{len(later)} PENDING or PAID line(s) of periods after {format_month(through)} "
            "are not in this balance: they pay later months"
        )
    else:
        # what `ledger receivables` computes for each account, here for this one only (the
        # report itself walks every account of the country): the read models' entitlement
        # and issued total, through the same rule
        reported = credits_through(account.entitlement, through, ref).total - account.issued.total
        checks.append(
            _check(
                "balance = the ledger's receivables rule on its read models",
                (owed, -owed if owed < 0 else 0),
                (reported, -reported if reported < 0 else 0),
            )
        )
    if events.problems:
        checks.append(Check("events = audit trail", False, "; ".join(events.problems[:20])))
    else:
        checks.append(Check("events = audit trail", True, "every event joined"))
    if events.ignored:
        notes.append(
            f"{events.ignored} event(s) recorded after the read models were read are left out"
        )
    if account.credited_through is not None and account.credited_through < through:
        notes.append(
            f"the books are posted through {format_month(account.credited_through)}: "
            "credits after that are posted by the next approval"
        )

    balance = Balance(
        period=format_month(through),
        allowance_credits=credits.allowance,
        funeral_credit=credits.funeral,
        credits=credits.total,
        issued=issued.total,
        owed=owed,
        receivable=-owed if owed < 0 else 0,
        state="RECEIVABLE" if owed < 0 else "TO_PAY" if owed > 0 else "NOTHING_DUE",
        withheld=assessment.withheld,
        books_credited_through=(
            format_month(account.credited_through) if account.credited_through is not None else None
        ),
        books_allowance_credited=account.posted.allowance,
        books_funeral_credited=account.posted.funeral,
        books_issued_total=account.issued.total,
    )
    return Explanation(
        personal_id=personal_id,
        period=format_month(through),
        known_through=known_through,
        person=person,
        history=history,
        months=months,
        funeral=funeral,
        lines=tuple(lines),
        postings=postings,
        balance=balance,
        overpayment=_overpayment(
            entitlement, history, in_balance, owed, credits, ref, cause, through
        ),
        claimant_debts=claimant_debts,
        notes=tuple(notes),
        checks=tuple(checks),
    )


def _period(ledger: Ledger, period: str | None) -> int:
    current = month_of(ledger.today())
    if period is None:
        latest = ledger.db.query("SELECT MAX(period) FROM payment_lists")[0][0]
        return parse_month(str(latest)) if latest is not None else current
    try:
        through = parse_month(period)
    except InvalidMonth:
        raise InputRejected([f"--period: must be a month YYYY-MM, got {period!r}"]) from None
    if through > current:
        # credits of a month not yet begun are not owed: explaining them would be a forecast
        raise RuleViolation(
            f"{period} is in the future: explain {format_month(current)} or an earlier month"
        )
    return through


def _check(name: str, computed: Any, expected: Any, show: bool = True) -> Check:
    ok = computed == expected
    if ok:
        return Check(name, True, str(computed) if show else "equal")
    return Check(name, False, f"{computed} here, {expected} in the ledger")


def _entitlement_text(e: Entitlement) -> str:
    """What decides the entitled months (rule 1), in months as people write them."""

    def month(m: int | None) -> str:
        return "-" if m is None else format_month(m)

    return (
        f"from {month(e.effective_month)}, coefficient {e.coefficient}, terminated from "
        f"{month(e.terminated_from)}, death in {month(e.death_month)}"
    )


# The person


def _details(**facts: Any) -> tuple[tuple[str, str], ...]:
    return tuple((k, str(v)) for k, v in facts.items() if v not in (None, ""))


def _person(
    personal_id: str,
    beneficiary: list[_Recorded],
    death_record: list[_Recorded],
    entitlement: Entitlement,
    in_force: str | None,
) -> tuple[Person, tuple[PersonEvent, ...], set[str], tuple[EventRef, str] | None]:
    """The person's history from their events, and which event set each fact the aggregates
    hold (`entitlement`, the registration `in_force`): the provenance an auditor reads."""
    history: list[PersonEvent] = []
    state: dict[str, Any] = {"terminated": None, "held": False}
    provinces: set[str] = set()
    enrolment: _Recorded | None = None
    for r in beneficiary:
        f, kind = r.facts, r.ref.event_type.rsplit(".", 1)[1]
        if kind == "Enrolled":
            enrolment = r
            state.update(province=f["province_code"], commune=f["commune_code"])
            provinces.add(f["province_code"])
            history.append(
                PersonEvent(
                    r.ref,
                    "enrolled",
                    f["effective_month"],
                    _details(
                        coefficient=f["coefficient"],
                        category=f["category"],
                        province=f["province_code"],
                        commune=f["commune_code"],
                        channel=f["channel"],
                        decision=f["decision_ref"],
                    ),
                )
            )
        elif kind == "PaymentsHeld":
            state["held"] = True
            history.append(PersonEvent(r.ref, "payments held", None, _details(reason=f["reason"])))
        elif kind == "PaymentsReleased":
            state["held"] = False
            history.append(PersonEvent(r.ref, "payments released", None, ()))
        elif kind == "EntitlementTerminated":
            state["terminated"] = (f["from_month"], r.ref)
            history.append(
                PersonEvent(
                    r.ref, "entitlement terminated", f["from_month"], _details(reason=f["reason"])
                )
            )
        elif kind == "Reinstated":  # a wrong termination undone: entitled again
            state["terminated"] = None
            history.append(
                PersonEvent(
                    r.ref,
                    "entitlement reinstated",
                    f["terminated_from"],  # the months from then on are entitled again
                    _details(undoes_termination_from=f["terminated_from"], reason=f["reason"]),
                )
            )
        elif kind == "Moved":
            state.update(province=f["province_code"], commune=f["commune_code"])
            provinces.add(f["province_code"])
            history.append(
                PersonEvent(
                    r.ref,
                    "moved",
                    None,
                    _details(province=f["province_code"], commune=f["commune_code"]),
                )
            )
    if enrolment is None:
        raise RuleViolation(f"{personal_id} is not enrolled: nothing to explain")

    # registration number -> its facts and the events that set them
    registrations: dict[str, dict[str, Any]] = {}
    for r in death_record:
        f, kind = r.facts, r.ref.event_type.rsplit(".", 1)[1]
        number = f["registration_number"]
        claimant = f.get("claimant") or None
        if kind in ("Registered", "RegisteredAgain"):
            registrations[number] = {
                "facts": f,
                "date_event": r.ref,
                "claimant": claimant,
                "claimant_event": r.ref if claimant else None,
                "first": r.ref,
            }
            what = "death registered"
        elif kind == "Corrected":
            reg = registrations[number]
            reg["facts"] = {**reg["facts"], **{k: v for k, v in f.items() if k != "claimant"}}
            reg["date_event"] = r.ref
            if claimant:  # empty claimant fields keep the claimant already known
                reg["claimant"], reg["claimant_event"] = claimant, r.ref
            what = "death corrected"
        else:
            what = "death revoked"
        history.append(
            PersonEvent(
                r.ref,
                what,
                f.get("date_of_death"),
                _details(
                    registration=number,
                    registered_at=f.get("registered_at"),
                    office=f.get("registry_office"),
                    claimant=(
                        f"{claimant['personal_id']} {claimant['name']} ({claimant['channel']})"
                        if claimant
                        else None
                    ),
                    event_id=f.get("event_id"),
                ),
            )
        )
    history.sort(key=lambda h: h.event.notification_id)

    death: DeathInForce | None = None
    if in_force is not None:
        reg = registrations[in_force]
        f, c = reg["facts"], reg["claimant"] or {}
        death = DeathInForce(
            registration_number=in_force,
            date_of_death=f["date_of_death"],
            month_of_death=format_month(month_of_iso(f["date_of_death"])),
            registered_at=f["registered_at"],
            registry_office=f["registry_office"],
            claimant_personal_id=c.get("personal_id"),
            claimant_name=c.get("name"),
            claimant_channel=c.get("channel"),
            event=reg["date_event"],
            claimant_event=reg["claimant_event"],
            first_recorded_at=reg["first"].recorded_at,
        )

    e = enrolment.facts
    terminated = state["terminated"]
    last = entitlement.last_month
    # what ends the entitlement, for an overpayment's cause: the earlier of death and termination
    cause: tuple[EventRef, str] | None = None
    if last is not None:
        if death is not None and entitlement.death_month == last:
            cause = (death.event, f"death on {death.date_of_death}")
        elif terminated:
            cause = (terminated[1], f"entitlement terminated from {terminated[0]}")
    person = Person(
        personal_id=personal_id,
        full_name=e["full_name"],
        province_code=state["province"],
        commune_code=state["commune"],
        category=e["category"],
        coefficient=e["coefficient"],
        effective_month=e["effective_month"],
        channel=e["channel"],
        terminated_from=terminated[0] if terminated else None,
        held=state["held"],
        last_entitled_month=format_month(last) if last is not None else None,
        enrolment=enrolment.ref,
        death=death,
    )
    return person, tuple(history), provinces, cause


# Reference data and credits


class _Levels:
    """Which reference-data event set the value in force from each month (the latest event
    for a month wins, as in the aggregate)."""

    def __init__(self, recorded: list[_Recorded]) -> None:
        self.standard: dict[str, tuple[int, EventRef]] = {}
        self.multiplier: dict[str, tuple[int, EventRef]] = {}
        for r in recorded:
            f, kind = r.facts, r.ref.event_type.rsplit(".", 1)[1]
            if kind == "Loaded":
                for month, value in f["standard_levels"]:
                    self.standard[month] = (int(value), r.ref)
                for month, value in f["funeral_multipliers"]:
                    self.multiplier[month] = (int(value), r.ref)
            elif kind == "StandardLevelSet":
                self.standard[f["from_month"]] = (int(f["amount"]), r.ref)
            elif kind == "FuneralMultiplierSet":
                self.multiplier[f["from_month"]] = (int(f["multiplier"]), r.ref)
        # a schedule whose value is the month it starts from: which change is in force for m
        self._standard_from = Schedule.of((parse_month(m), parse_month(m)) for m in self.standard)
        self._multiplier_from = Schedule.of(
            (parse_month(m), parse_month(m)) for m in self.multiplier
        )

    def reference_data(self) -> ReferenceData:
        return reference_data(
            [("standard_level", m, v) for m, (v, _) in self.standard.items()]
            + [("funeral_multiplier", m, v) for m, (v, _) in self.multiplier.items()]
        )

    def standard_at(self, month: int) -> tuple[str, EventRef]:
        start = format_month(self._standard_from.at(month))
        return start, self.standard[start][1]

    def multiplier_at(self, month: int) -> tuple[str, EventRef]:
        start = format_month(self._multiplier_from.at(month))
        return start, self.multiplier[start][1]


def _months(
    entitlement: Entitlement, through: int, ref: ReferenceData, levels: _Levels
) -> tuple[MonthCredit, ...]:
    last = entitlement.last_month
    last = through if last is None else min(last, through)
    out = []
    for m in range(entitlement.effective_month, last + 1):
        if not entitlement.entitled(m):
            continue
        start, event = levels.standard_at(m)
        out.append(
            MonthCredit(
                month=format_month(m),
                standard_level=ref.standard_level.at(m),
                level_from=start,
                level_event=event,
                coefficient=str(entitlement.coefficient),
                allowance=monthly_allowance(entitlement, m, ref),
            )
        )
    return tuple(out)


def _funeral(
    entitlement: Entitlement,
    through: int,
    ref: ReferenceData,
    levels: _Levels,
    death: DeathInForce | None,
) -> FuneralCredit | None:
    month = entitlement.death_month
    if death is None or month is None or month > through:
        return None
    amount = funeral_credit(entitlement, ref)
    if amount == 0:
        return None
    return FuneralCredit(
        month_of_death=format_month(month),
        standard_level=ref.standard_level.at(month),
        level_event=levels.standard_at(month)[1],
        multiplier=ref.funeral_multiplier.at(month),
        multiplier_event=levels.multiplier_at(month)[1],
        amount=amount,
        death_event=death.event,
    )


# Payment lists


def _lists(
    ledger: Ledger, personal_id: str, provinces: Iterable[str]
) -> dict[str, tuple[str, str]]:
    """list_id -> (period, province) of every list that may hold the person's lines or
    postings: those with a line of theirs, and every approved list of a province they lived in
    (an approval posts the credits of every resident, with or without a line)."""
    codes = sorted(provinces)
    rows = ledger.db.query(
        "SELECT DISTINCT l.list_id, l.period, l.province_code FROM payment_lists l"
        " JOIN payment_lines p ON p.list_id = l.list_id WHERE p.personal_id = ?",
        (personal_id,),
    )
    rows += ledger.db.query(
        "SELECT list_id, period, province_code FROM payment_lists WHERE status = 'APPROVED'"
        f" AND province_code IN ({','.join('?' * len(codes))})",
        codes,
    )
    return {str(r[0]): (str(r[1]), str(r[2])) for r in sorted(rows, key=lambda r: (r[1], r[2]))}


def _payment_ids(
    ledger: Ledger, personal_id: str, lists: dict[str, tuple[str, str]]
) -> dict[str, set[str]]:
    """list_id -> the payment ids the person's lines may have on it: those rule 8 gives them
    on the list's period and province, and those the read models hold (rule 9 may have paid
    them in a unit whose code changed)."""
    found: dict[str, set[str]] = {
        list_id: {
            payment_id(parse_month(period), province, personal_id, k) for k in (REGULAR, FUNERAL)
        }
        for list_id, (period, province) in lists.items()
    }
    for list_id, pid in ledger.db.query(
        "SELECT list_id, payment_id FROM payment_lines WHERE personal_id = ?", (personal_id,)
    ):
        found.setdefault(str(list_id), set()).add(str(pid))
    return found


def _lines(
    ledger: Ledger,
    personal_id: str,
    list_events: dict[UUID, list[_Recorded]],
    checks: list[Check],
    units: UnitsOfPerson,
) -> list[Line]:
    columns = ", ".join(LINE_FIELDS)
    rows = ledger.db.query(
        f"SELECT list_id, {columns}, status, settled_at, reference, reason FROM payment_lines"
        " WHERE personal_id = ? ORDER BY period, payment_id",
        (personal_id,),
    )
    lines: list[Line] = []
    mismatches: list[str] = []
    for row in rows:
        list_id, values, status = (
            str(row[0]),
            row[1 : 1 + len(LINE_FIELDS)],
            row[1 + len(LINE_FIELDS)],
        )
        read = dict(zip(LINE_FIELDS, values, strict=True))
        pid = read["payment_id"]
        approval: EventRef | None = None
        issued: tuple[EventRef, dict[str, Any]] | None = None
        registration: str | None = None
        steps: list[SettlementStep] = []
        for r in list_events.get(UUID(list_id), []):
            kind = r.ref.event_type.rsplit(".", 1)[1]
            if kind == "Approved":
                approval = r.ref
            elif kind == "LinesIssued":
                at = {name: i for i, name in enumerate(r.facts["columns"])}
                for ln in r.facts["lines"]:
                    if ln[at["payment_id"]] == pid:
                        issued = (r.ref, {name: ln[at[name]] for name in LINE_FIELDS})
                        if "registration_number" in at:
                            registration = ln[at["registration_number"]]
            elif kind == "LinesSettled":
                for s in r.facts["settlements"]:
                    if s["payment_id"] == pid:
                        steps.append(
                            SettlementStep(
                                previous_status=s["previous_status"],
                                status=s["status"],
                                settled_at=s["settled_at"],
                                reference=s["reference"],
                                reason=s["reason"],
                                event=dataclasses.replace(
                                    r.ref, source=f"{r.ref.source} row {s.get('row')}"
                                ),
                            )
                        )
        if approval is None or issued is None:
            mismatches.append(f"{pid}: no approval or LinesIssued event holds it")
            continue
        if issued[1] != read:
            mismatches.append(f"{pid}: read model {read} != event {issued[1]}")
        from_events = steps[-1].status if steps else PENDING
        if from_events != status:
            mismatches.append(f"{pid}: status {status} in the read model, {from_events} by events")
        paid_in = units.of_line(read["period"], approval.notification_id)
        lines.append(
            Line(
                period=read["period"],
                payment_id=pid,
                province_code=read["province_code"],
                commune_code=read["commune_code"],
                recorded_unit=paid_in.recorded,
                reorganised_by=paid_in.reorganised_by,
                kind=read["kind"],
                payee_personal_id=read["payee_personal_id"],
                payee_name=read["payee_name"],
                channel=read["channel"],
                regular_amount=int(read["regular_amount"]),
                funeral_amount=int(read["funeral_amount"]),
                arrears_amount=int(read["arrears_amount"]),
                total_amount=int(read["total_amount"]),
                status=status,
                counts=status in COUNTS_AS_ISSUED,
                approval=approval,
                drafted_by=_drafted_by(list_events.get(UUID(list_id), []), approval),
                issued=issued[0],
                settlements=tuple(steps),
                registration_number=registration,
            )
        )
    checks.append(
        Check(
            "payment lines = their events",
            not mismatches,
            "; ".join(mismatches[:20]) or f"{len(lines)} line(s), each from its event",
        )
    )
    return lines


def _drafted_by(recorded: list[_Recorded], approval: EventRef) -> str | None:
    """Who drew up the draft that was approved (the last draft before the approval)."""
    drafts = [
        r.ref.actor
        for r in recorded
        if r.ref.event_type.endswith(".Drafted")
        and r.ref.notification_id < approval.notification_id
    ]
    return drafts[-1] if drafts else None


def _postings(
    personal_id: str,
    lists: dict[str, tuple[str, str]],
    list_events: dict[UUID, list[_Recorded]],
) -> tuple[Posting, ...]:
    out = []
    for list_id, (period, province) in lists.items():
        for r in list_events.get(UUID(list_id), []):
            if not r.ref.event_type.endswith(".CreditsAccrued"):
                continue
            at = {name: i for i, name in enumerate(r.facts["columns"])}
            for row in r.facts["accruals"]:
                if row[at["personal_id"]] == personal_id:
                    out.append(
                        Posting(
                            period=period,
                            province_code=province,
                            allowance_delta=int(row[at["allowance_delta"]]),
                            funeral_delta=int(row[at["funeral_delta"]]),
                            credited_through=str(row[at["credited_through"]]),
                            event=r.ref,
                        )
                    )
    return tuple(sorted(out, key=lambda p: p.event.notification_id))


# Overpayment


def _pair(issued: Issued) -> tuple[int, int]:
    return issued.total, issued.funeral


def _claimant_debts(
    lines: Sequence[Line], through: int, revoked: frozenset[str]
) -> tuple[ClaimantDebt, ...]:
    """The lines paid to a claimant under a revoked registration: what each claimant owes."""
    owed: dict[tuple[str, str, str], list[Line]] = defaultdict(list)
    for ln in lines:
        number = ln.registration_number
        if (
            number in revoked
            and ln.status in COUNTS_AS_ISSUED
            and parse_month(ln.period) <= through
        ):
            owed[(ln.payee_personal_id, ln.payee_name, str(number))].append(ln)
    return tuple(
        ClaimantDebt(
            pid,
            name,
            number,
            sum(ln.total_amount for ln in paid),
            tuple(ln.payment_id for ln in paid),
        )
        for (pid, name, number), paid in sorted(owed.items())
    )


def _overpayment(
    entitlement: Entitlement,
    history: tuple[PersonEvent, ...],
    in_balance: list[Line],
    owed: int,
    credits: Credits,
    ref: ReferenceData,
    cause: tuple[EventRef, str] | None,
    through: int,
) -> Overpayment | None:
    """Why the lines paid more than is due now. A line of period P paid the balance through
    P, so a line approved before the ledger learned that entitlement ended paid every month
    up to P as if it had not; a funeral line paid the funeral allowance of the death then
    in force."""
    months = overpaid_months(entitlement, [ln.issued_line() for ln in in_balance], through, ref)
    funeral_lines = [ln for ln in in_balance if ln.funeral_amount > 0]
    funeral_paid = max(sum(ln.funeral_amount for ln in funeral_lines) - credits.funeral, 0)
    if not months and not funeral_paid and owed >= 0:
        return None

    reasons: list[str] = []
    # what the months would carry had entitlement gone on (same rules, open-ended entitlement)
    open_ended = Entitlement(entitlement.effective_month, entitlement.coefficient)
    months_amount = sum(monthly_allowance(open_ended, m, ref) for m in months)
    months_cause = cause[0] if months and cause is not None else None
    if months_cause is not None and cause is not None:
        reasons.append(
            f"paid for {len(months)} month(s) after the {cause[1]}, which the ledger learned "
            f"at {months_cause.recorded_at} (#{months_cause.notification_id})"
        )
    funeral_cause: EventRef | None = None
    if funeral_paid:
        paid_at = max(ln.approval.notification_id for ln in funeral_lines)
        later = [
            h for h in history if h.what.startswith("death") and h.event.notification_id > paid_at
        ]
        funeral_cause = later[-1].event if later else None
        since = f", then {later[-1].what} (#{later[-1].event.notification_id})" if later else ""
        reasons.append(
            f"a funeral allowance of {funeral_paid:,} was paid "
            f"({', '.join(ln.payment_id for ln in funeral_lines)}) and is no longer due{since}"
        )
    if not reasons:
        reasons.append(
            "the lines paid exceed the credits, though no month was paid after entitlement "
            "ended (a lower standard level back-dated?)"
        )
    return Overpayment(
        outstanding=-owed if owed < 0 else 0,
        months=tuple(format_month(m) for m in months),
        months_amount=months_amount,
        months_cause=months_cause,
        funeral_paid=funeral_paid,
        funeral_cause=funeral_cause,
        explanation="; ".join(reasons),
    )


# Output


def as_json(explanation: Explanation) -> dict[str, Any]:
    """Plain types only: amounts stay int VND, details become objects, tuples lists."""
    out = _plain(explanation)
    assert isinstance(out, dict)
    out["ok"] = explanation.ok
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Struct):  # the rules' values
        return {name: _plain(getattr(value, name)) for name in value.__struct_fields__}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            out[f.name] = {k: x for k, x in v} if f.name == "details" else _plain(v)
        return out
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


def _vnd(amount: int) -> str:
    return f"{amount:,}"


def _ref(ref: EventRef | None) -> str:
    if ref is None:
        return ""
    return f"#{ref.notification_id} {ref.recorded_at}"


def _unit(line: Line) -> str:
    """The unit a line was paid in and, when a reorganisation mapped it there (rule 9), the
    unit recorded and the events that did."""
    paid = f"{line.province_code}/{line.commune_code}"
    if not line.reorganised_by:
        return paid
    events = ", ".join(f"#{n}" for n in line.reorganised_by)
    return f"{paid} (recorded {line.recorded_unit}, reorganised by {events})"


def render(explanation: Explanation) -> list[SafeTable]:
    """Readable tables: the person, their history, credits month by month, the lines, the
    books' postings, the balance and the checks."""
    x = explanation
    p = x.person
    tables: list[SafeTable] = []

    person = SafeTable(title=f"{p.personal_id} {p.full_name}", show_header=False)
    person.add_column("", style="bold")
    person.add_column("")
    person.add_column("event")
    person.add_row(
        "enrolled",
        f"from {p.effective_month}, coefficient {p.coefficient}, {p.category}",
        _ref(p.enrolment),
    )
    person.add_row("lives in", f"province {p.province_code}, commune {p.commune_code}", "")
    person.add_row("channel", p.channel, "")
    person.add_row("payments", "HELD" if p.held else "not held", "")
    if p.terminated_from:
        person.add_row("terminated", f"from {p.terminated_from}", "")
    if p.death:
        d = p.death
        claimant = (
            f"{d.claimant_personal_id} {d.claimant_name} ({d.claimant_channel})"
            if d.claimant_personal_id
            else "none named: the balance waits"
        )
        person.add_row(
            "death",
            f"{d.date_of_death} (registration {d.registration_number}, {d.registry_office}, "
            f"registered {d.registered_at}; ledger first learned {d.first_recorded_at})",
            _ref(d.event),
        )
        person.add_row("funeral claimant", claimant, _ref(d.claimant_event))
    person.add_row("last entitled month", p.last_entitled_month or "open-ended", "")
    person.add_row("as known at", f"notification #{x.known_through}", "")
    tables.append(person)

    history = SafeTable(title="History: the person's events")
    for name in ("#", "recorded at", "event", "effective", "details", "by", "source"):
        history.add_column(name, justify="right" if name == "#" else "left")
    for h in x.history:
        history.add_row(
            str(h.event.notification_id),
            h.event.recorded_at,
            h.what,
            h.effective or "when recorded",
            ", ".join(f"{k} {v}" for k, v in h.details),
            h.event.actor or "",
            h.event.source or "",
        )
    tables.append(history)

    credits = SafeTable(title=f"Credits through {x.period} (rules 1 and 4)")
    for name in ("month", "standard level", "in force from", "set by", "coefficient", "allowance"):
        credits.add_column(
            name, justify="right" if name in ("standard level", "allowance") else "left"
        )
    for m in x.months:
        credits.add_row(
            m.month,
            _vnd(m.standard_level),
            m.level_from,
            _ref(m.level_event),
            m.coefficient,
            _vnd(m.allowance),
        )
    if x.funeral:
        f = x.funeral
        credits.add_row(
            f"funeral ({f.month_of_death})",
            _vnd(f.standard_level),
            f"x {f.multiplier}",
            f"{_ref(f.level_event)}; x by {_ref(f.multiplier_event)}; death {_ref(f.death_event)}",
            "",
            _vnd(f.amount),
        )
    credits.add_row("total", "", "", "", "", _vnd(x.balance.credits), style="bold")
    tables.append(credits)

    lines = SafeTable(title="Payment lines (approved)")
    for name in (
        "period", "payment id", "kind", "unit", "payee", "regular", "funeral", "arrears",
        "total", "status", "approved", "settlements",
    ):  # fmt: skip
        right = name in ("regular", "funeral", "arrears", "total")
        lines.add_column(name, justify="right" if right else "left")
    for ln in x.lines:
        counted = "" if ln.counts else " (not counted)"
        lines.add_row(
            ln.period,
            ln.payment_id,
            ln.kind,
            _unit(ln),
            f"{ln.payee_personal_id} {ln.payee_name} ({ln.channel})",
            _vnd(ln.regular_amount),
            _vnd(ln.funeral_amount),
            _vnd(ln.arrears_amount),
            _vnd(ln.total_amount),
            ln.status + counted,
            f"{_ref(ln.approval)} by {ln.approval.actor} (drafted by {ln.drafted_by})",
            "\n".join(
                f"{s.previous_status}->{s.status} {s.settled_at} {s.reference} {s.reason} "
                f"{_ref(s.event)} {s.event.source}".strip()
                for s in ln.settlements
            ),
        )
    tables.append(lines)

    if x.postings:
        postings = SafeTable(title="Books: credits posted on each approval")
        for name in ("list", "allowance", "funeral", "credited through", "event"):
            postings.add_column(
                name, justify="right" if name in ("allowance", "funeral") else "left"
            )
        for post in x.postings:
            postings.add_row(
                f"{post.period} {post.province_code}",
                _vnd(post.allowance_delta),
                _vnd(post.funeral_delta),
                post.credited_through,
                _ref(post.event),
            )
        tables.append(postings)

    b = x.balance
    balance = SafeTable(title=f"Balance {b.period} (rule 2)", show_header=False)
    balance.add_column("", style="bold")
    balance.add_column("", justify="right")
    balance.add_row("allowances", _vnd(b.allowance_credits))
    balance.add_row("funeral allowance", _vnd(b.funeral_credit))
    balance.add_row("credits", _vnd(b.credits))
    balance.add_row(f"- lines PENDING or PAID through {b.period}", _vnd(b.issued))
    balance.add_row("= owed", _vnd(b.owed))
    state = {"TO_PAY": "to pay on the next list", "NOTHING_DUE": "nothing due"}.get(b.state)
    if b.state == "RECEIVABLE":
        state = f"RECEIVABLE: overpayment of {_vnd(b.receivable)} to recover"
    if b.withheld:
        state = f"{state}; withheld: {b.withheld}"
    balance.add_row("state", state or "")
    if x.overpayment:
        o = x.overpayment
        balance.add_row("overpayment", o.explanation)
        if o.months:
            balance.add_row(
                "months paid after entitlement ended",
                f"{', '.join(o.months)}: {_vnd(o.months_amount)} ({_ref(o.months_cause)})",
            )
        if o.funeral_paid:
            balance.add_row(
                "funeral allowance no longer due",
                f"{_vnd(o.funeral_paid)} ({_ref(o.funeral_cause)})",
            )
        balance.add_row("outstanding (receivable)", _vnd(o.outstanding))
    for debt in x.claimant_debts:
        balance.add_row(
            "owed by a funeral claimant",
            f"{debt.claimant_personal_id} {debt.claimant_name}: {_vnd(debt.amount)} paid under "
            f"registration {debt.registration_number}, since revoked "
            f"({', '.join(debt.payment_ids)}); not the beneficiary's debt (rule 4)",
        )
    balance.add_row(
        "books",
        f"credited through {b.books_credited_through or '-'}: allowances "
        f"{_vnd(b.books_allowance_credited)}, funeral {_vnd(b.books_funeral_credited)}; "
        f"issued {_vnd(b.books_issued_total)}",
    )
    for note in x.notes:
        balance.add_row("note", note)
    tables.append(balance)

    checks = SafeTable(title="Checks")
    checks.add_column("check")
    checks.add_column("ok")
    checks.add_column("detail")
    for c in x.checks:
        checks.add_row(c.name, "yes" if c.ok else "[red]NO[/red]", c.detail)
    tables.append(checks)
    return tables
