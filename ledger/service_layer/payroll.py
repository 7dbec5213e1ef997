"""The monthly payroll: draft a period's lists (rule 3), approve them (maker is never checker,
periods in order, one approval at a time in a province through its payroll register, the
provinces in parallel), and export what the approvals recorded."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from ledger import views
from ledger.aggregates import (
    PAYROLL_REGISTER_ID,
    REFERENCE_DATA_ID,
    Beneficiary,
    DeathRecord,
    DraftFacts,
    PaymentList,
    PayrollRegister,
    ReferenceDataHistory,
    beneficiary_id,
    death_record_id,
    payment_list_id,
    payroll_register_id,
)
from ledger.inputs import InputRejected
from ledger.kept_drafts import (
    Fingerprinted,
    KeptDraftUnreadable,
    KeptEntry,
    kept_entries,
    read_entries,
)
from ledger.months import format_month, month_of, parse_month
from ledger.personal import RecordAltered, sealed_fields
from ledger.reference import review_months
from ledger.rules import (
    FUNERAL,
    LINE,
    Account,
    DraftList,
    DraftTally,
    RuleViolation,
    TalliedRows,
    assessed,
    draft_list,
)
from ledger.service_layer.common import check_month
from ledger.service_layer.paying_accounts import paying_accounts
from ledger.service_layer.ports import (
    Approval,
    ExportedFile,
    ExportResult,
    Fence,
    FenceCrossed,
    PayingAccount,
    Ports,
    ReadModelDatabase,
)
from ledger.service_layer.reference import ensure_reference_data
from ledger.units import Units, UnitsAt
from ledger.views import ListSummary


def draft(
    ports: Ports, period: str, province_code: str, db: ReadModelDatabase | None = None
) -> DraftList:
    """The list the current history gives (rule 3); nothing is recorded. With `db`, the list
    that read models rebuilt elsewhere give (an auditor's replay)."""
    source = db or ports.db
    month = parse_month(period)
    return draft_list(
        month,
        province_code,
        _people_of(source, ports.units(source).at(month), province_code, month),
        ports.reference_data(source),
        review_months(),
    )


def _related(ports: Ports, period: str, code: str) -> frozenset[UUID]:
    """The payroll registers of every province the people of a province's list of a period
    are paid in, in any month (rule 9), the province's own and the one of old stores among
    them: a later period approved in one of them may pay what this list owes."""
    units = ports.units()
    covered = units.at(parse_month(period)).recorded_in(code, _recorded_provinces(ports.db))
    recorded = {*covered.whole, *(province for province, _ in covered.into), code}
    provinces = {u for c in recorded for u in units.units_ever(c)}
    return frozenset({PAYROLL_REGISTER_ID, *(payroll_register_id(p) for p in provinces)})


def _people_of(
    db: ReadModelDatabase, units: UnitsAt, province_code: str, month: int, streamed: bool = False
) -> Iterator[Account]:
    """The accounts a province's list of a month covers, each in its unit for the month
    (rule 9: the people recorded in the units mapped to it)."""
    people = views.in_unit(units.recorded_in(province_code, _recorded_provinces(db)))
    return views.accounts(
        db,
        people.where,
        people.params,
        through=month,
        streamed=streamed,
        units=units,
        source=people if people.source_params else None,
    )


def provinces(ports: Ports, period: str, province_code: str | None) -> list[str]:
    """The provinces a command for a period covers: one, or every one with people or lists."""
    check_month(period, "--period", ports.clock.now())
    month = parse_month(period)
    units = ports.units().at(month)
    listed = {r[0] for r in ports.db.query(_LISTED, (period,))}
    if province_code is not None:
        check_province(ports.units(), month, province_code, listed)
        return [province_code]
    return sorted(units.unit_provinces(_recorded_provinces(ports.db)) | listed)


def check_province(units: Units, month: int, code: str, listed: AbstractSet[str]) -> None:
    """A province a command for a month names: one in force that month (rule 9), or one with
    a list of that month (approved before a reorganisation was recorded)."""
    if code in listed or code in units.in_force(month):
        return
    at, period = units.at(month), format_month(month)
    if code in units.province_codes:
        raise InputRejected(
            [f"--province: {code} is not a province in {period}: it is part of {at.whole(code)}"]
        )
    raise InputRejected([f"--province: unknown province code {code!r}"])


_LISTED = "SELECT province_code FROM payment_lists WHERE period = ?"

# The provinces people are recorded in, each found by one step along the index of
# beneficiaries by province (a national table is millions of rows and a few dozen codes).
_RECORDED = """
    WITH RECURSIVE peopled(code) AS (
        SELECT MIN(province_code) FROM beneficiaries
        UNION ALL
        SELECT (SELECT MIN(province_code) FROM beneficiaries WHERE province_code > code)
        FROM peopled WHERE code IS NOT NULL
    )
    SELECT code FROM peopled WHERE code IS NOT NULL"""


def _recorded_provinces(db: ReadModelDatabase) -> list[str]:
    return [r[0] for r in db.query(_RECORDED)]


def register(ports: Ports, province_code: str, actor: str) -> PayrollRegister:
    """The province's payroll register, new when nothing was approved there yet."""
    found = ports.events.get(payroll_register_id(province_code))
    if found is None:
        return PayrollRegister(
            actor=actor, source="ledger payroll approve", province_code=province_code
        )
    return found  # type: ignore[no-any-return]


def _check_order(
    payroll_register: PayrollRegister, legacy: PayrollRegister | None, period: str, code: str
) -> None:
    """Periods in order in a province: after its register, the one register every province
    shared before they approved in parallel (a store from before holds its approvals)."""
    payroll_register.check_order(period, code)
    if legacy is not None:
        legacy.check_order(period, code)


def _reread(ports: Ports, list_id: str, digest: str) -> Iterator[KeptEntry]:
    """A list's kept entries read as its approval records them (they are never held),
    refused at the end when they do not give the digest its Drafted event recorded. The
    approval's events are all made before the store's write lock is taken (spooled), so a
    refusal here comes before anything is recorded."""
    read = Fingerprinted(ports.drafts.entries(list_id))
    yield from read_entries(read)
    if read.digest != digest:
        raise KeptDraftUnreadable(
            "its entries are not those its draft recorded: a later run replaced them, or "
            "someone changed them"
        )


def _fenced(
    ports: Ports, list_id: str, digest: str, registers: AbstractSet[UUID]
) -> Callable[[AbstractSet[UUID]], list[UUID]]:
    """The streams an approval's fence watches, among those it is asked about (a fence asks
    when one of its events was recorded since the draft): every person the draft assessed,
    the death record of each person whose funeral line it pays, the reference data, and the
    payroll `registers` of the provinces its people are paid in at other times."""

    def watched(since: AbstractSet[UUID]) -> list[UUID]:
        # a reorganisation in force for the period (_units_reorganised) regroups every list
        found = [REFERENCE_DATA_ID] if REFERENCE_DATA_ID in since else []
        found += [s for s in since if s in registers]
        if not since - {REFERENCE_DATA_ID} - registers:
            return found
        for personal_id, line, _, _ in _reread(ports, list_id, digest):
            streams = [beneficiary_id(personal_id)]
            if line is not None and line[LINE["kind"]] == FUNERAL:
                streams.append(death_record_id(personal_id))
            found += [s for s in streams if s in since]
        return found

    return watched


def _approval_events(
    ports: Ports,
    payment_list: PaymentList,
    payroll_register: PayrollRegister,
    digest: str,
    actor: str,
    chunk: int,
    to_review: list[tuple[Any, int]],
) -> Iterator[tuple[list[Any], dict[UUID, int | None]]]:
    """An approval's events for its one transaction: the approval, the kept lines and the
    postings, `chunk` of each an event, as one reading of the kept entries gives them (a
    province's list is never held), and last the register's. The lines above their review
    limit are added to `to_review` on the way."""
    yield [payment_list], {}
    lines: list[Any] = []
    postings: list[Any] = []
    for _, line, posting, review in _reread(ports, str(payment_list.id), digest):
        if line is not None:
            lines.append(line)
        if posting is not None:
            postings.append(posting)
        if review is not None:
            to_review.append(review)
        if len(lines) >= chunk:
            payment_list.issue(lines, actor, _APPROVE)
            lines = []
            yield [payment_list], {}
        if len(postings) >= chunk:
            payment_list.accrue(postings, actor, _APPROVE)
            postings = []
            yield [payment_list], {}
    if lines:
        payment_list.issue(lines, actor, _APPROVE)
    if postings:
        payment_list.accrue(postings, actor, _APPROVE)
    if lines or postings:
        yield [payment_list], {}
    yield [payroll_register], {}  # last, as the approvals before were recorded


_APPROVE = "ledger payroll approve"


# What makes a draft wrong to pay as drafted: a person on two provinces' lists (a move); a
# payment against an operator's hold or termination; a funeral line paid to a claimant or an
# account that a correction replaced, or under a registration since revoked (the claimant
# paid is not the one owed, and no balance of theirs would recover it). A death registered
# after the draft does not, nor a correction of its date alone: rule 2 settles what the line
# paid on the next list.
_CHANGE_A_DRAFT = tuple(
    get_topic(e)
    for e in (
        Beneficiary.Moved,  # type: ignore[attr-defined]
        Beneficiary.PaymentsHeld,  # type: ignore[attr-defined]
        Beneficiary.EntitlementTerminated,  # type: ignore[attr-defined]
        DeathRecord.Corrected,  # type: ignore[attr-defined]
        DeathRecord.Revoked,  # type: ignore[attr-defined]
        ReferenceDataHistory.UnitsReorganised,  # type: ignore[attr-defined]
        PayrollRegister.ListApproved,  # type: ignore[attr-defined]
    )
)
_REORGANISED = get_topic(ReferenceDataHistory.UnitsReorganised)  # type: ignore[attr-defined]
_LIST_APPROVED = get_topic(PayrollRegister.ListApproved)  # type: ignore[attr-defined]


_CORRECTED = get_topic(DeathRecord.Corrected)  # type: ignore[attr-defined]


def _changes_a_draft(period: str) -> Callable[[str, bytes], bool]:
    """Whether an event recorded since a draft of `period` makes it wrong to pay as drafted.
    A correction changes a funeral line only when it names a claimant (new, or their
    channel or account); one of the date alone is settled by rule 2. A reorganisation does
    when it is in force for the period: the people are grouped anew (rule 9). So does a list
    of a later period approved where some of its people are paid then (its lines pay what
    this one owes them, as arrears). What cannot be
    read as the event's JSON (a compressed or enciphered store) counts as a change."""

    def changes(topic: str, state: bytes) -> bool:
        if topic not in (_CORRECTED, _REORGANISED, _LIST_APPROVED):
            return True
        try:
            facts = json.loads(state)
            if topic == _REORGANISED:
                return bool(facts["effective_month"] <= period)
            if topic == _LIST_APPROVED:
                return bool(facts["period"] > period)
            return facts.get("claimant") is not None or "claimant" in sealed_fields(facts)
        except (ValueError, AttributeError, KeyError, TypeError):
            return True

    return changes


def _approvable(ports: Ports, payment_list: PaymentList, actor: str) -> PayrollRegister:
    """The province's register, when the draft can be approved as drafted: nothing approved
    in the province since (its kept entries are checked as they are read: _reread)."""
    period, code = payment_list.period, payment_list.province_code
    payment_list.check_approver(actor)
    facts = payment_list.kept_draft_facts()
    payroll_register = register(ports, code, actor)
    if payroll_register.recorded_version != facts.register_version:
        raise RuleViolation(
            f"a list of {code} was approved after this draft was made, so the draft does "
            f"not count what that list pays: run `ledger payroll run --period {period} "
            f"--province {code}` again and have the new draft approved"
        )
    return payroll_register


def _payment_list(ports: Ports, period: str, province_code: str) -> PaymentList | None:
    return ports.events.get(payment_list_id(period, province_code))  # type: ignore[no-any-return]


def _check_not_future(ports: Ports, period: str) -> None:
    current = month_of(ports.clock.today())
    if parse_month(period) > current:
        raise RuleViolation(
            f"{period} is in the future: a list is drawn up for {format_month(current)} "
            "or an earlier month"
        )


def _draft_kept(ports: Ports, period: str, code: str, actor: str) -> tuple[DraftFacts, DraftTally]:
    """The province's draft kept for the approval as it is computed, a person at a time (a
    province is never held), what it comes to, and the facts it was computed from."""
    # the register before the read models: every approval it holds is in what the draft reads
    register_version = register(ports, code, actor).recorded_version
    ports.read_models.catch_up()
    known_through = ports.read_models.through()
    month = parse_month(period)
    tally = DraftTally()
    people = _people_of(ports.db, ports.units().at(month), code, month, streamed=True)
    entries = Fingerprinted(
        kept_entries(
            tally.counted(assessed(month, people, ports.reference_data(ports.db), review_months()))
        )
    )
    ports.drafts.keep(str(payment_list_id(period, code)), entries)
    return DraftFacts(known_through, entries.digest, register_version), tally


@dataclass(frozen=True)
class _Drafted:
    """What one province's draft came to, beyond its list's summary."""

    province_code: str
    held: int
    waiting_for_claimant: int
    to_review: tuple[tuple[Any, int], ...]


def _draft_province(ports: Ports, job: tuple[str, str, str, bool]) -> _Drafted | None:
    """Draft one province's list of a period and record it (None: nothing to draw up
    there). `job`: period, province, actor, and whether that province alone was asked for
    (then a later period paid there is an error, not a province passed over)."""
    period, code, actor, alone = job
    if ports.events.has_recorded(payment_list_id(period, code), "PaymentList.Approved"):
        return None  # rule 6: the approved list stands (not loaded: it holds every line)
    payment_list = _payment_list(ports, period, code)
    try:
        _check_order(
            register(ports, code, actor), ports.events.get(PAYROLL_REGISTER_ID), period, code
        )
    except RuleViolation:
        if alone:
            raise
        return None  # a later period is already paid there: nothing to draw up
    facts, lines = _draft_kept(ports, period, code, actor)
    if payment_list is None:
        payment_list = PaymentList(
            period=period, province_code=code, actor=actor, source="ledger payroll run"
        )
    payment_list.draft(
        lines.digest,
        lines.line_count,
        lines.total_amount,
        lines.bank_amount,
        lines.receivable_amount,
        actor,
        "ledger payroll run",
        facts,
        held=lines.held,
        waiting_for_claimant=lines.waiting_for_claimant,
    )
    ports.save(payment_list)
    return _Drafted(code, lines.held, lines.waiting_for_claimant, tuple(lines.to_review))


def run_payroll(
    ports: Ports, period: str, province_code: str | None, actor: str
) -> list[ListSummary]:
    """Draft the lists of a period, each province's recorded as it is drafted, by the
    ledger's workers; an approved list is returned as it was approved."""
    ports.decide_from_read_models()
    # a store made before rule 9 gets the reorganisations that ship with the ledger
    ensure_reference_data(ports)
    ports.read_models.catch_up()
    codes = provinces(ports, period, province_code)
    _check_not_future(ports, period)
    # once per run, not per province: the index holds the entries approvals deleted until
    # they are vacuumed, and the sweep reads them
    ports.drafts.discard_approved()
    jobs = [(period, code, actor, province_code is not None) for code in codes]
    drafted: dict[str, _Drafted] = {}
    ports.progress(f"payroll run {period}", 0, len(codes))
    for done, result in enumerate(ports.each(_draft_province, jobs), start=1):
        if result is not None:
            drafted[result.province_code] = result
        ports.progress(f"payroll run {period}", done, len(codes))
    ports.show_saved()  # what workers of their own recorded
    nothing = _Drafted("", 0, 0, ())
    return [
        ListSummary(
            **{
                **s.__dict__,
                "held": d.held,
                "waiting_for_claimant": d.waiting_for_claimant,
                "to_review": d.to_review,
            }
        )
        for s in views.summaries(ports.db, period, province_code)
        for d in [drafted.get(s.province_code, nothing)]
    ]


def approve_payroll(
    ports: Ports, period: str, province_code: str | None, actor: str, line_chunk: int = 1000
) -> list[ListSummary]:
    """Approve the drafts of a period, list by list. Refused, for all of them, when the
    approver drafted any; a list whose history changed since its draft is refused and the
    others are approved. Every approval goes through its province's payroll register, so two
    approvals in a province can never both pay from the same balances; approvals in other
    provinces run beside it, and one whose people moved while it computed is refused."""
    ports.decide_from_read_models()
    codes = provinces(ports, period, province_code)
    _check_not_future(ports, period)
    legacy = ports.events.get(PAYROLL_REGISTER_ID)
    marks = ",".join("?" * len(codes))
    drafts = (
        [
            r[0]
            for r in ports.db.query(
                "SELECT province_code FROM payment_lists WHERE period = ? AND status = 'DRAFT'"
                f" AND province_code IN ({marks}) ORDER BY province_code",
                (period, *codes),
            )
        ]
        if codes
        else []
    )
    if not drafts:
        approved_before = [
            s for s in views.summaries(ports.db, period, province_code) if s.status == "APPROVED"
        ]
        if approved_before:
            by = sorted({s.approved_by or "" for s in approved_before})
            raise RuleViolation(
                f"the lists of {period} are already approved ({len(approved_before)} "
                f"approved by {', '.join(by)}); nothing to approve: an approved list is never "
                f"changed. Export them with `ledger payroll export --period {period} --out DIR`"
            )
        raise RuleViolation(
            f"no draft list for {period} to approve: run "
            f"`ledger payroll run --period {period}` first"
        )
    lists: list[PaymentList] = []
    problems: list[str] = []
    for code in drafts:
        payment_list = _payment_list(ports, period, code)
        assert payment_list is not None
        try:
            payment_list.check_approver(actor)
            _check_order(register(ports, code, actor), legacy, period, code)
        except RuleViolation as err:
            problems.append(f"payroll {period} {code}: {err}")
        lists.append(payment_list)
    if problems:
        raise InputRejected(problems)
    approved: list[str] = []
    refused: list[str] = []
    to_review: dict[str, tuple[tuple[Any, int], ...]] = {}
    deaths_since: dict[str, int] = {}
    jobs = [(period, pl.province_code, actor, line_chunk) for pl in lists]
    ports.progress(f"payroll approve {period}", 0, len(jobs))
    for done, outcome in enumerate(ports.each(_approve_province, jobs), start=1):
        if isinstance(outcome, str):
            refused.append(outcome)
        else:
            # shown here, while the workers approve the next provinces: a worker that
            # brought the read models up itself waited for the other's turn at them
            ports.show_saved()
            code, list_id = outcome.province_code, outcome.list_id
            approved.append(code)
            to_review[code] = outcome.to_review
            # people of the list whose death was recorded after its draft: paid as drafted
            deaths_since[code] = ports.drafts.deaths_since(list_id, outcome.known_through)
            ports.drafts.discard(list_id)
        ports.progress(f"payroll approve {period}", done, len(jobs))
    approved.sort()
    refused.sort()
    if refused:
        done_text = (
            f"approved {period} for {', '.join(approved)}; "
            if approved
            else "no list was approved; "
        )
        raise RuleViolation(done_text + "; ".join(refused))
    return [
        ListSummary(
            **{
                **s.__dict__,
                "to_review": to_review.get(s.province_code, ()),
                "deaths_since_draft": deaths_since.get(s.province_code, 0),
            }
        )
        for s in views.summaries(ports.db, period, province_code)
    ]


@dataclass(frozen=True)
class _Approved:
    province_code: str
    list_id: str
    known_through: int  # what its draft was computed from
    to_review: tuple[tuple[Any, int], ...]


def _approve_province(ports: Ports, job: tuple[str, str, str, int]) -> _Approved | str:
    """Approve one province's draft of a period, as drafted (the command shows it in the
    read models); or why it was refused (nothing recorded for it). `job`: period, province,
    approver, lines per LinesIssued event. A province's list is never held: its lines are
    read from the kept draft as they are recorded."""
    period, code, actor, line_chunk = job
    payment_list = _payment_list(ports, period, code)
    assert payment_list is not None  # a draft, checked before
    to_review: list[tuple[Any, int]] = []
    try:
        payroll_register = _approvable(ports, payment_list, actor)
        facts = payment_list.kept_draft_facts()
        # what changed a draft since (_CHANGE_A_DRAFT): checked under the store's write
        # lock, set-based
        fence = Fence(
            facts.known_through,
            _CHANGE_A_DRAFT,
            _fenced(ports, str(payment_list.id), facts.kept_digest, _related(ports, period, code)),
            _changes_a_draft(period),
        )
        payroll_register.record_approval(period, code, actor, _APPROVE)
        payment_list.approve(actor, _APPROVE)
        ports.events.save_in_chunks(
            _approval_events(
                ports,
                payment_list,
                payroll_register,
                facts.kept_digest,
                actor,
                line_chunk,
                to_review,
            ),
            fence=fence,
            spool=True,  # the entries read and encoded before the store's lock is taken
        )
    except KeptDraftUnreadable as err:
        return (
            f"payroll {period} {code}: the draft kept for its approval was changed ({err}); "
            f"nothing was recorded for it: run `ledger payroll run --period {period} "
            f"--province {code}` again and have the new draft approved"
        )
    except RuleViolation as err:
        return f"payroll {period} {code}: {err}"
    except FenceCrossed as crossed:
        later = sorted(
            {
                province
                for r in (ports.events.get(i) for i in crossed.crossed if i != REFERENCE_DATA_ID)
                if isinstance(r, PayrollRegister)
                for province in r.latest
            }
        )
        if later:
            return (
                f"payroll {period} {code}: a list of a later period was approved in "
                f"{', '.join(later)} since it was drafted, and it pays some of its people "
                "what this one owes them; nothing was recorded for it: run `ledger payroll "
                f"run --period {period} --province {code}` again"
            )
        if REFERENCE_DATA_ID in crossed.crossed:
            return (
                f"payroll {period} {code}: a reorganisation of the units in force for {period} "
                "was recorded since it was drafted; nothing was recorded for it: run `ledger "
                f"payroll run --period {period}` again and have the new drafts approved"
            )
        return (
            f"payroll {period} {code}: {len(crossed.crossed)} of its people changed "
            "since it was drafted (moved to another province or commune, held, "
            "terminated, or the death behind their funeral line revoked or corrected "
            "with a claimant); nothing was recorded for it: run `ledger payroll run "
            f"--period {period} --province {code}` again and have the new draft approved"
        )
    except IntegrityError:
        return (
            f"payroll {period} {code}: another approval in {code} was recorded at the "
            "same time; run `payroll approve` again for the lists still in draft"
        )
    return _Approved(code, str(payment_list.id), facts.known_through, tuple(to_review))


@dataclass(frozen=True)
class _Exported:
    """One approved list's files, staged for the command to commit with the others (or
    discard)."""

    files: list[ExportedFile]
    staged: Any  # what the province's export hands over (Export.handover)


def _export_province(
    ports: Ports, job: tuple[str, str, str, tuple[str, ...], PayingAccount | None]
) -> tuple[str, _Exported | str | None]:
    """Stage one province's files of a period (job: period, province, folder, formats, the
    province's paying account): its files, why its recorded lines refuse the export, or None
    when nothing of it was approved. The files are written and the lines checked against the
    approval in one reading."""
    period, code, out_dir, formats, debtor = job
    issued = ports.events.issued_list(payment_list_id(period, code))
    if issued is None:
        return code, None
    if issued.unchained:  # read nothing of events the chain says were altered: name them
        return code, f"payroll {period} {code}: {'; '.join(issued.unchained)}"
    approval = Approval(period, code, issued.approved_by, issued.approved_at, issued.digest)
    rows = TalliedRows(issued.rows)
    staged = ports.export(Path(out_dir))
    try:
        written = staged.add_list(approval, rows, formats, debtor)
        found = issued.problems(rows.lines)
    except RecordAltered as err:  # a seal that does not open: altered by a chain key's holder
        staged.discard()
        return code, f"payroll {period} {code}: {err}"
    except BaseException:
        staged.discard()
        raise
    if found:
        staged.discard()
        return code, f"payroll {period} {code}: {'; '.join(found)}"
    return code, _Exported(written, staged.handover())


def _refuse_transfers_without_account(
    ports: Ports, period: str, codes: Sequence[str], accounts: dict[str, PayingAccount]
) -> None:
    """Before anything is written: every province whose list pays by bank has a paying
    account (the lists' read model says which pay by bank; the writer refuses the others'
    lines as it meets them, whatever a table says)."""
    missing = [
        str(code)
        for code, bank_amount in ports.db.query(
            "SELECT province_code, bank_amount FROM payment_lists WHERE period = ?"
            " AND status = 'APPROVED' ORDER BY province_code",
            (period,),
        )
        if bank_amount and code in codes and code not in accounts
    ]
    if missing:
        raise RuleViolation(
            f"no paying account is in force for {', '.join(missing)}, whose lists of {period} "
            "pay by bank: nothing was exported. Propose them with `ledger paying-accounts "
            "import FILE.csv` and have them approved"
        )


def export_payroll(
    ports: Ports,
    period: str,
    province_code: str | None,
    out_dir: Path,
    formats: Sequence[str] = ("csv",),
) -> ExportResult:
    """Write the approved lists from the lines their approval recorded (the LinesIssued
    events, never the read models): in each of `formats`, one file per province and channel
    the format is for (CSV: both; pain.001: BANK, paid from the province's paying account;
    xlsx: POST), ordered by payment_id, each with a manifest, the provinces staged by the
    ledger's workers and committed together. Refused, with nothing written, when a list's
    recorded lines do not reproduce the digest, count and total its approval recorded, or
    when a province with bank transfers has no paying account in force."""
    check_month(period, "--period", ports.clock.now())
    formats = tuple(dict.fromkeys(formats))  # each once, in the order given
    accounts = paying_accounts(ports) if "pain001" in formats else {}
    drafts = {
        r[0]: r[1]
        for r in ports.db.query(
            "SELECT province_code, status FROM payment_lists WHERE period = ?", (period,)
        )
    }
    if province_code is not None and province_code not in drafts:
        ports.guards.check()  # the units in force are read from a read model
        check_province(ports.units(), parse_month(period), province_code, set(drafts))
    # the provinces with a list of the period (rule 9: those in force when it was approved)
    codes = [province_code] if province_code is not None else sorted(drafts)
    staged = ports.export(out_dir)
    files: list[ExportedFile] = []
    not_written: list[str] = []
    problems: list[str] = []
    approved = 0  # lists approved: one with no line writes no file, and is no error
    if "pain001" in formats:
        _refuse_transfers_without_account(ports, period, codes, accounts)
    jobs = [(period, code, str(out_dir), formats, accounts.get(code)) for code in codes]
    try:
        ports.progress(f"payroll export {period}", 0, len(codes))
        for done, (code, outcome) in enumerate(ports.each(_export_province, jobs), start=1):
            ports.progress(f"payroll export {period}", done, len(codes))
            if outcome is None:
                if code in drafts:  # the record has no approval: the draft is not paid
                    not_written.append(
                        f"{period} {code}: the list is a draft, not approved: approve it with "
                        f"`ledger payroll approve --period {period} --province {code} --by USER`"
                    )
                continue
            approved += 1
            if isinstance(outcome, str):
                problems.append(outcome)
                continue
            staged.adopt(outcome.staged)
            files.extend(outcome.files)
        if problems:
            raise RuleViolation(
                "; ".join(sorted(problems)) + ": the stored events were altered. Nothing was "
                "exported: run `ledger verify` and keep the store as it is"
            )
        if not approved:
            where = f" {province_code}" if province_code else ""
            raise RuleViolation(
                f"no approved list for {period}{where} to export"
                + (f" ({len(not_written)} drafts not approved)" if not_written else "")
                + f": approve it with `ledger payroll approve --period {period} --by USER`"
            )
        staged.commit()
    finally:
        staged.discard()
    not_written.sort()
    return ExportResult(sorted(files, key=lambda f: f.path.name), not_written)
