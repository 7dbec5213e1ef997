"""The aggregates. Their decorated methods are the events; the public methods check the rules
first, so that an event is only ever recorded for a command the rules allow.

Every event carries `actor` (who caused it) and `source` (from what: a file and row, a command,
later a Kafka topic, partition and offset). When it was recorded is the event's timestamp.
Event attributes are plain strings, integers, lists and dicts: they are the wire format.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger import values
from ledger.months import month_of_iso, parse_month
from ledger.reference import built_in_province_codes
from ledger.rules import (
    ACCRUAL_FIELDS,
    ISSUED_FIELDS,
    Entitlement,
    RuleViolation,
)
from ledger.units import Units, reorganisation
from ledger.values import same_actor

_NS = uuid5(NAMESPACE_URL, "https://ansinh.example/ledger")


def beneficiary_id(personal_id: str) -> UUID:
    return uuid5(_NS, f"beneficiary/{personal_id}")


def death_record_id(personal_id: str) -> UUID:
    return uuid5(_NS, f"death-record/{personal_id}")


def payment_list_id(period: str, province_code: str) -> UUID:
    return uuid5(_NS, f"payment-list/{period}/{province_code}")


REFERENCE_DATA_ID = uuid5(_NS, "reference-data")
# before provinces approved in parallel, one register held every province's approvals: still
# read for the order of periods in stores that have it, never written again
PAYROLL_REGISTER_ID = uuid5(_NS, "payroll-register")


def payroll_register_id(province_code: str) -> UUID:
    return uuid5(_NS, f"payroll-register/{province_code}")


class Beneficiary(Aggregate):
    """A person enrolled for monthly social assistance.

    An enrolment file makes its `Enrolled` events in bulk, without calling `__init__`
    (`EventStore.created_events`): it must only set attributes. The checks of an enrolment
    are the input's (`inputs.EnrolmentRow`), and replaying the event calls it anyway."""

    @staticmethod
    def create_id(personal_id: str, **_: Any) -> UUID:
        return beneficiary_id(personal_id)

    @event("Enrolled")
    def __init__(
        self,
        personal_id: str,
        full_name: str,
        date_of_birth: str,
        sex: str,
        province_code: str,
        commune_code: str,
        category: str,
        coefficient: str,
        effective_month: str,
        channel: str,
        bank_code: str,
        account_number: str,
        decision_ref: str,
        actor: str,
        source: str,
    ) -> None:
        self.personal_id = personal_id
        self.full_name = full_name
        self.province_code = province_code
        self.commune_code = commune_code
        self.effective_month = effective_month
        self.coefficient = coefficient
        self.terminated_from: str | None = None
        self.held = False

    def entitlement(self, death: DeathInForce | None) -> Entitlement:
        """Rule 1's inputs: the enrolment, the latest termination and the death in force."""
        return Entitlement(
            effective_month=parse_month(self.effective_month),
            coefficient=Decimal(self.coefficient),
            terminated_from=parse_month(self.terminated_from) if self.terminated_from else None,
            death_month=month_of_iso(death.date_of_death) if death else None,
        )

    def hold(self, reason: str, actor: str, source: str) -> None:
        if self.held:
            raise RuleViolation(f"{self.personal_id}: payments are already held")
        self._hold(reason=reason, actor=actor, source=source)

    @event("PaymentsHeld")
    def _hold(self, reason: str, actor: str, source: str) -> None:
        self.held = True

    def release(self, actor: str, source: str) -> None:
        if not self.held:
            raise RuleViolation(f"{self.personal_id}: payments are not held")
        self._release(actor=actor, source=source)

    @event("PaymentsReleased")
    def _release(self, actor: str, source: str) -> None:
        self.held = False

    def terminate(self, from_month: str, reason: str, actor: str, source: str) -> None:
        if from_month < self.effective_month:
            raise RuleViolation(
                f"{self.personal_id}: termination from {from_month} is before the enrolment's "
                f"effective month {self.effective_month}"
            )
        if self.terminated_from is not None and self.terminated_from <= from_month:
            raise RuleViolation(
                f"{self.personal_id}: entitlement already ends from {self.terminated_from}"
            )
        self._terminate(from_month=from_month, reason=reason, actor=actor, source=source)

    @event("EntitlementTerminated")
    def _terminate(self, from_month: str, reason: str, actor: str, source: str) -> None:
        self.terminated_from = from_month

    def reinstate(self, reason: str, actor: str, source: str) -> None:
        """Undo a wrong termination: the person is entitled again as if it had never been
        recorded, so the months not paid since become arrears by the balance rule (rule 2).
        Whether a death is in force is the death record's to say: the handler checks it."""
        if self.terminated_from is None:
            raise RuleViolation(
                f"{self.personal_id}: entitlement is not terminated: nothing to reinstate"
            )
        self._reinstated(
            terminated_from=self.terminated_from, reason=reason, actor=actor, source=source
        )

    @event("Reinstated")
    def _reinstated(self, terminated_from: str, reason: str, actor: str, source: str) -> None:
        self.terminated_from = None

    def move(self, province_code: str, commune_code: str, actor: str, source: str) -> None:
        if (province_code, commune_code) == (self.province_code, self.commune_code):
            raise RuleViolation(f"{self.personal_id}: already lives in {commune_code}")
        self._move(
            province_code=province_code, commune_code=commune_code, actor=actor, source=source
        )

    @event("Moved")
    def _move(self, province_code: str, commune_code: str, actor: str, source: str) -> None:
        self.province_code = province_code
        self.commune_code = commune_code


class RegistrationRefused(RuleViolation):
    """A death registration the record cannot take, with a short code for machines (the
    reason header of a rejected Kafka message) beside the sentence for people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DeathInForce:
    registration_number: str
    date_of_death: str
    claimant: dict[str, str] | None


class DeathRecord(Aggregate):
    """What the civil registries told the ledger about one person's death: every registration,
    correction and revocation, applied once each by `event_id`."""

    @staticmethod
    def create_id(personal_id: str, **_: Any) -> UUID:
        return death_record_id(personal_id)

    @event("Registered")
    def __init__(
        self,
        personal_id: str,
        event_id: str,
        registration_number: str,
        full_name: str,
        date_of_death: str,
        registered_at: str,
        registry_office: str,
        claimant: dict[str, str] | None,
        actor: str,
        source: str,
        system: str | None = None,
    ) -> None:
        """The first registration of a person's death opens the record (one event, not two:
        a day of registrations is mostly first ones)."""
        self.personal_id = personal_id
        self.applied_event_ids: set[str] = set()
        # event_id -> the content it was applied with (rebuilt from the events themselves)
        self.applied: dict[str, dict[str, Any]] = {}
        # registration number -> its current facts; at most one is in force at a time
        self.registrations: dict[str, dict[str, Any]] = {}
        self.in_force: str | None = None
        self._put_in_force(
            event_id,
            registration_number,
            full_name,
            date_of_death,
            registered_at,
            registry_office,
            claimant,
            system,
        )

    def _put_in_force(
        self,
        event_id: str,
        registration_number: str,
        full_name: str,
        date_of_death: str,
        registered_at: str,
        registry_office: str,
        claimant: dict[str, str] | None,
        system: str | None,
    ) -> None:
        self._remember(
            event_id,
            "REGISTERED",
            registration_number,
            full_name=full_name,
            date_of_death=date_of_death,
            registered_at=registered_at,
            registry_office=registry_office,
            claimant=claimant,
        )
        self.registrations[registration_number] = {
            "date_of_death": date_of_death,
            "claimant": claimant,
            "revoked": False,
            "system": system,  # None: registered from a file or a message naming no system
        }
        self.in_force = registration_number

    def _remember(
        self,
        event_id: str,
        event_type: str,
        registration_number: str,
        *,
        registered_at: str,
        registry_office: str,
        full_name: str | None = None,
        date_of_death: str | None = None,
        claimant: dict[str, str] | None = None,
    ) -> None:
        """Keep what an event_id was applied with, so that the same id sent again with other
        content can be told apart from a plain resend."""
        self.applied_event_ids.add(event_id)
        self.applied[event_id] = {
            "event_type": event_type,
            "registration_number": registration_number,
            "date_of_death": date_of_death,
            "registered_at": registered_at,
            "registry_office": registry_office,
            "full_name": full_name,
            "claimant": dict(claimant) if claimant is not None else None,
        }

    def has_applied(self, event_id: str) -> bool:
        return event_id in self.applied_event_ids

    def applied_content(self, event_id: str) -> dict[str, Any] | None:
        """The content the event_id was applied with: `event_type` (REGISTERED, CORRECTED or
        REVOKED), `registration_number`, `date_of_death`, `registered_at`,
        `registry_office`, `full_name` and `claimant` (None where the event carried none: a
        correction names no full name, a revocation no date of death nor claimant); None
        when the id was never applied to this record."""
        content = self.applied.get(event_id)
        return dict(content) if content is not None else None

    @property
    def death_in_force(self) -> DeathInForce | None:
        """The death the ledger acts on: the registration in force with its current facts
        (the one place this is folded; the read model `deaths` mirrors it)."""
        if self.in_force is None:
            return None
        reg = self.registrations[self.in_force]
        return DeathInForce(self.in_force, reg["date_of_death"], reg["claimant"])

    @property
    def revoked_registrations(self) -> frozenset[str]:
        """Registrations revoked: lines paid under them leave the beneficiary's balance."""
        return frozenset(n for n, reg in self.registrations.items() if reg["revoked"])

    def register(
        self,
        *,
        event_id: str,
        registration_number: str,
        full_name: str,
        date_of_death: str,
        registered_at: str,
        registry_office: str,
        claimant: dict[str, str] | None,
        actor: str,
        source: str,
        system: str | None = None,
    ) -> None:
        if self.in_force is not None and self.in_force != registration_number:
            raise RegistrationRefused(
                "already-registered",
                f"{self.personal_id}: a death is already registered under "
                f"{self.in_force}; correct or revoke it first",
            )
        if registration_number in self.registrations:
            raise RegistrationRefused(
                "registration-number-taken",
                f"registration {registration_number} already exists; send CORRECTED to change it",
            )
        self._registered(
            event_id=event_id,
            registration_number=registration_number,
            full_name=full_name,
            date_of_death=date_of_death,
            registered_at=registered_at,
            registry_office=registry_office,
            claimant=claimant,
            actor=actor,
            source=source,
            system=system,
        )

    @event("RegisteredAgain")  # after the registration in force was revoked
    def _registered(
        self,
        event_id: str,
        registration_number: str,
        full_name: str,
        date_of_death: str,
        registered_at: str,
        registry_office: str,
        claimant: dict[str, str] | None,
        actor: str,
        source: str,
        system: str | None = None,
    ) -> None:
        self._put_in_force(
            event_id,
            registration_number,
            full_name,
            date_of_death,
            registered_at,
            registry_office,
            claimant,
            system,
        )

    def _known(self, registration_number: str, what: str, system: str | None) -> dict[str, Any]:
        reg = self.registrations.get(registration_number)
        if reg is None:
            raise RegistrationRefused(
                "unknown-registration", f"{what} of unknown registration {registration_number}"
            )
        if reg["revoked"]:
            raise RegistrationRefused(
                "revoked-registration", f"{what} of revoked registration {registration_number}"
            )
        registered_by = reg.get("system")
        if registered_by and system and system != registered_by:
            # one registry's notification may not change what another registered (its
            # claimant's account included)
            raise RegistrationRefused(
                "other-registry",
                f"{what} of registration {registration_number} by {system}: only the registry "
                f"system that registered it ({registered_by}) may change it",
            )
        return reg

    def correct(
        self,
        *,
        event_id: str,
        registration_number: str,
        date_of_death: str,
        registered_at: str,
        registry_office: str,
        claimant: dict[str, str] | None,
        actor: str,
        source: str,
        system: str | None = None,
    ) -> None:
        self._known(registration_number, "correction", system)
        self._corrected(
            event_id=event_id,
            registration_number=registration_number,
            date_of_death=date_of_death,
            registered_at=registered_at,
            registry_office=registry_office,
            claimant=claimant,
            actor=actor,
            source=source,
            system=system,
        )

    @event("Corrected")
    def _corrected(
        self,
        event_id: str,
        registration_number: str,
        date_of_death: str,
        registered_at: str,
        registry_office: str,
        claimant: dict[str, str] | None,
        actor: str,
        source: str,
        system: str | None = None,
    ) -> None:
        self._remember(
            event_id,
            "CORRECTED",
            registration_number,
            date_of_death=date_of_death,
            registered_at=registered_at,
            registry_office=registry_office,
            claimant=claimant,
        )
        reg = self.registrations[registration_number]
        reg["date_of_death"] = date_of_death
        if claimant is not None:  # empty claimant fields keep the claimant already known
            reg["claimant"] = claimant

    def revoke(
        self,
        *,
        event_id: str,
        registration_number: str,
        registered_at: str,
        registry_office: str,
        actor: str,
        source: str,
        system: str | None = None,
    ) -> None:
        self._known(registration_number, "revocation", system)
        self._revoked(
            event_id=event_id,
            registration_number=registration_number,
            registered_at=registered_at,
            registry_office=registry_office,
            actor=actor,
            source=source,
            system=system,
        )

    @event("Revoked")
    def _revoked(
        self,
        event_id: str,
        registration_number: str,
        registered_at: str,
        registry_office: str,
        actor: str,
        source: str,
        system: str | None = None,
    ) -> None:
        self._remember(
            event_id,
            "REVOKED",
            registration_number,
            registered_at=registered_at,
            registry_office=registry_office,
        )
        self.registrations[registration_number]["revoked"] = True
        if self.in_force == registration_number:
            self.in_force = None


# The kinds of reference-data change a proposal may carry. A standard level and a funeral
# multiplier take effect through the events that always recorded them; a kind to come (a unit
# reorganisation, a province's paying account) adds its check of the value and the event its
# approval records, and its name here.
STANDARD_LEVEL = "standard_level"
FUNERAL_MULTIPLIER = "funeral_multiplier"
UNIT_REORGANISATION = "unit_reorganisation"  # value: rows (old province, old commune, new ...)
PAYING_ACCOUNT = "paying_account"  # value: rows (province, debtor name, bank, account number)
REFERENCE_KINDS = (STANDARD_LEVEL, FUNERAL_MULTIPLIER, UNIT_REORGANISATION, PAYING_ACCOUNT)
PLANNED_REFERENCE_KINDS: tuple[str, ...] = ()
# a reorganisation of more rows than the country has communes is not one
MAX_REORGANISATION_ROWS = 20_000
# every province code ever in force fits (63 before the 2025 merger, 34 after)
MAX_PAYING_ACCOUNT_ROWS = 100

_APPROVAL_ORDER = {FUNERAL_MULTIPLIER: 0, STANDARD_LEVEL: 1}

PENDING_PROPOSAL = "PENDING"
APPROVED_PROPOSAL = "APPROVED"
WITHDRAWN_PROPOSAL = "WITHDRAWN"


@dataclass(frozen=True)
class Proposal:
    """A change of reference data proposed by one person; it takes effect only when someone
    else approves it. `value`: the kind's payload (VND for a standard level, a whole number
    for a funeral multiplier)."""

    proposal_id: str
    kind: str
    from_month: str
    value: Any
    proposed_by: str
    proposed_at: str
    source: str
    status: str = PENDING_PROPOSAL
    decided_by: str | None = None  # who approved or withdrew it
    reason: str | None = None  # why it was withdrawn

    @property
    def is_pending(self) -> bool:
        return self.status == PENDING_PROPOSAL


Schedules = tuple[dict[str, int], dict[str, int]]  # (standard levels, funeral multipliers)


class ReferenceDataHistory(Aggregate):
    """The standard level and funeral multiplier by month, as loaded and as changed since.
    A change is proposed by one person and takes effect when a second person approves it:
    until then nothing that reads reference data (the rules, the read model
    `reference_levels`) sees it."""

    # Far above any real level (the 2024 level is 500,000 VND), low enough that no sum of
    # allowances over a lifetime can overflow a 64-bit integer in any store.
    MAX_STANDARD_LEVEL = 100_000_000
    MAX_FUNERAL_MULTIPLIER = 1_000

    @staticmethod
    def create_id(**_: Any) -> UUID:
        return REFERENCE_DATA_ID

    @event("Loaded")
    def __init__(
        self,
        standard_levels: list[list[Any]],
        funeral_multipliers: list[list[Any]],
        actor: str,
        source: str,
    ) -> None:
        self.standard_levels = {m: a for m, a in standard_levels}
        self.funeral_multipliers = {m: x for m, x in funeral_multipliers}
        self.proposals: dict[str, Proposal] = {}
        # rule 9: (effective month, rows) in the order recorded
        self.reorganisations: list[tuple[str, list[list[str]]]] = []
        # province -> (debtor name, bank code, account number) its bank transfers are paid from
        self.paying_accounts: dict[str, tuple[str, str, str]] = {}

    # What is in force, and what would be

    @property
    def schedules(self) -> Schedules:
        """The approved schedules (copies)."""
        return dict(self.standard_levels), dict(self.funeral_multipliers)

    def pending(self) -> list[Proposal]:
        """The pending proposals in the order an approval applies them: funeral multipliers
        first, then standard levels, each in the order proposed (a multiplier can only widen
        the months a level may cover, so checking each step is checking the end state)."""
        waiting = [p for p in self.proposals.values() if p.is_pending]
        return sorted(waiting, key=lambda p: (_APPROVAL_ORDER.get(p.kind, 2), int(p.proposal_id)))

    @staticmethod
    def with_change(schedules: Schedules, kind: str, from_month: str, value: Any) -> Schedules:
        levels, multipliers = dict(schedules[0]), dict(schedules[1])
        if kind == STANDARD_LEVEL:
            levels[from_month] = value
        elif kind == FUNERAL_MULTIPLIER:
            multipliers[from_month] = value
        return levels, multipliers

    def prospective(self) -> Schedules:
        """The schedules once every pending proposal is approved."""
        schedules = self.schedules
        for p in self.pending():
            schedules = self.with_change(schedules, p.kind, p.from_month, p.value)
        return schedules

    def units(self) -> Units:
        """The reorganisations in force, with the province codes ever known."""
        return Units.of(
            (reorganisation(parse_month(m), rows) for m, rows in self.reorganisations),
            built_in_province_codes(),
        )

    def has_reorganisation(self, effective_month: str, rows: list[list[str]]) -> bool:
        """Whether the same reorganisation is already recorded (an import made twice)."""
        wanted = sorted(map(tuple, rows))
        return any(
            m == effective_month and sorted(map(tuple, r)) == wanted
            for m, r in self.reorganisations
        )

    def _check_reorganisation(self, from_month: str, value: Any) -> None:
        problems = self.units().check(reorganisation(parse_month(from_month), value))
        if problems:
            raise RuleViolation(
                "; ".join(f"row {i + 1}: {field}: {text}" for i, field, text in problems)
            )

    def _check_value(self, kind: str, value: Any) -> None:
        if kind in PLANNED_REFERENCE_KINDS:
            raise RuleViolation(f"changes of kind {kind} are not implemented yet")
        if kind not in REFERENCE_KINDS:
            raise RuleViolation(
                f"unknown kind of reference data {kind!r}: one of {', '.join(REFERENCE_KINDS)}"
            )
        if kind == PAYING_ACCOUNT:
            if not (
                isinstance(value, list)
                and 0 < len(value) <= MAX_PAYING_ACCOUNT_ROWS
                and all(is_paying_account_row(row) for row in value)
                and len({row[0] for row in value}) == len(value)
            ):
                raise RuleViolation(
                    f"paying accounts are 1 to {MAX_PAYING_ACCOUNT_ROWS} rows of province code, "
                    "debtor name, bank code and account number, one a province"
                )
            return
        if kind == UNIT_REORGANISATION:
            if not (
                isinstance(value, list)
                and 0 < len(value) <= MAX_REORGANISATION_ROWS
                and all(is_unit_row(row) for row in value)
            ):
                raise RuleViolation(
                    "a reorganisation is 1 to "
                    f"{MAX_REORGANISATION_ROWS:,} rows of province (2 digits) and commune "
                    "(5 digits, or empty for a whole province) codes, old then new"
                )
            return
        whole = isinstance(value, int) and not isinstance(value, bool)
        if kind == STANDARD_LEVEL and not (whole and 0 < value <= self.MAX_STANDARD_LEVEL):
            raise RuleViolation(
                "a standard level must be a positive amount of VND, "
                f"at most {self.MAX_STANDARD_LEVEL:,}"
            )
        if kind == FUNERAL_MULTIPLIER and not (whole and 0 < value <= self.MAX_FUNERAL_MULTIPLIER):
            raise RuleViolation(
                "a funeral multiplier must be a positive whole number, "
                f"at most {self.MAX_FUNERAL_MULTIPLIER}"
            )

    @staticmethod
    def _check_cover(schedules: Schedules) -> None:
        """Every month with a standard level must have a funeral multiplier, or a death in
        that month could not be paid."""
        levels, multipliers = schedules
        if min(multipliers) > min(levels):
            raise RuleViolation(
                f"no funeral multiplier would be in force from {min(levels)} to "
                f"{min(multipliers)}: give --funeral-multiplier from {min(levels)} too"
            )

    # Commands

    def propose(
        self,
        kind: str,
        from_month: str,
        value: Any,
        actor: str,
        source: str,
        proposed_at: str,
    ) -> Proposal:
        """Record a proposed change (may be back-dated); it changes nothing until approved.
        Checked against what would be in force once every pending proposal is approved."""
        self._check_value(kind, value)
        for p in self.pending():
            if (p.kind, p.from_month) == (kind, from_month):
                raise RuleViolation(
                    f"a change of the {_kind_text(kind)} from {from_month} is already pending "
                    f"(proposal {p.proposal_id} by {p.proposed_by}): have it approved or "
                    "withdrawn first"
                )
        if kind == UNIT_REORGANISATION:
            if self.has_reorganisation(from_month, value):
                raise AlreadyRecorded(f"this reorganisation from {from_month} is already recorded")
            self._check_reorganisation(from_month, value)
        elif kind == PAYING_ACCOUNT:
            if all(self.paying_accounts.get(r[0]) == tuple(r[1:]) for r in value):
                raise AlreadyRecorded("these paying accounts are already in force")
        else:
            before = self.prospective()
            after = self.with_change(before, kind, from_month, value)
            if after == before:
                raise RuleViolation(f"the reference data from {from_month} is already so")
            self._check_cover(after)
        proposal_id = str(len(self.proposals) + 1)
        self._change_proposed(
            proposal_id=proposal_id,
            kind=kind,
            from_month=from_month,
            value=value,
            proposed_at=proposed_at,
            actor=actor,
            source=source,
        )
        return self.proposals[proposal_id]

    @event("ChangeProposed")
    def _change_proposed(
        self,
        proposal_id: str,
        kind: str,
        from_month: str,
        value: Any,
        proposed_at: str,
        actor: str,
        source: str,
    ) -> None:
        self.proposals[proposal_id] = Proposal(
            proposal_id, kind, from_month, value, actor, proposed_at, source
        )

    def _pending_proposal(self, proposal_id: str) -> Proposal:
        proposal = self.proposals.get(proposal_id)
        if proposal is None:
            raise RuleViolation(f"no reference-data proposal {proposal_id}")
        if not proposal.is_pending:
            raise RuleViolation(
                f"proposal {proposal_id} is {proposal.status.lower()} "
                f"(by {proposal.decided_by}), no longer pending"
            )
        return proposal

    def check_approver(self, proposal_id: str, actor: str) -> None:
        """Four eyes: whoever proposed a change may not approve it."""
        proposal = self._pending_proposal(proposal_id)
        if same_actor(actor, proposal.proposed_by):
            raise RuleViolation(
                f"{actor.strip()} proposed it and cannot approve it: another person must approve"
            )

    def approve(self, proposal_id: str, actor: str, source: str) -> None:
        """Put a pending proposal in force, through the events that always recorded the
        standard level and the funeral multiplier (what reads reference data sees them)."""
        self.check_approver(proposal_id, actor)
        p = self.proposals[proposal_id]
        self._check_value(p.kind, p.value)
        if p.kind == UNIT_REORGANISATION:
            self._check_reorganisation(p.from_month, p.value)  # as recorded since
        self._check_cover(self.with_change(self.schedules, p.kind, p.from_month, p.value))
        self._change_approved(proposal_id=proposal_id, actor=actor, source=source)
        if p.kind == UNIT_REORGANISATION:
            self._units_reorganised(
                effective_month=p.from_month, mappings=p.value, actor=actor, source=source
            )
        if p.kind == PAYING_ACCOUNT:
            self._paying_accounts_set(accounts=p.value, actor=actor, source=source)
        if p.kind == STANDARD_LEVEL and self.standard_levels.get(p.from_month) != p.value:
            self._standard_level_set(
                from_month=p.from_month, amount=p.value, actor=actor, source=source
            )
        if p.kind == FUNERAL_MULTIPLIER and self.funeral_multipliers.get(p.from_month) != p.value:
            self._funeral_multiplier_set(
                from_month=p.from_month, multiplier=p.value, actor=actor, source=source
            )

    @event("ChangeApproved")
    def _change_approved(self, proposal_id: str, actor: str, source: str) -> None:
        self.proposals[proposal_id] = replace(
            self.proposals[proposal_id], status=APPROVED_PROPOSAL, decided_by=actor
        )

    def withdraw(self, proposal_id: str, reason: str, actor: str, source: str) -> None:
        """Drop a pending proposal (its proposer changing their mind, or a reviewer turning
        it down); nothing of it ever takes effect."""
        self._pending_proposal(proposal_id)
        self._change_withdrawn(proposal_id=proposal_id, reason=reason, actor=actor, source=source)

    @event("ChangeWithdrawn")
    def _change_withdrawn(self, proposal_id: str, reason: str, actor: str, source: str) -> None:
        self.proposals[proposal_id] = replace(
            self.proposals[proposal_id], status=WITHDRAWN_PROPOSAL, decided_by=actor, reason=reason
        )

    # The events that change what is in force (stored since the first version: keep them)

    @event("StandardLevelSet")
    def _standard_level_set(self, from_month: str, amount: int, actor: str, source: str) -> None:
        self.standard_levels[from_month] = amount

    @event("FuneralMultiplierSet")
    def _funeral_multiplier_set(
        self, from_month: str, multiplier: int, actor: str, source: str
    ) -> None:
        self.funeral_multipliers[from_month] = multiplier

    def load_reorganisation(
        self, effective_month: str, mappings: list[list[str]], source: str
    ) -> None:
        """Record a reorganisation that ships with the ledger (the 2025 merger), once."""
        if not self.has_reorganisation(effective_month, mappings):
            self._units_reorganised(
                effective_month=effective_month, mappings=mappings, actor="ledger", source=source
            )

    @event("UnitsReorganised")
    def _units_reorganised(
        self, effective_month: str, mappings: list[list[str]], actor: str, source: str
    ) -> None:
        self.reorganisations.append((effective_month, [list(r) for r in mappings]))

    @event("PayingAccountsSet")
    def _paying_accounts_set(self, accounts: list[list[str]], actor: str, source: str) -> None:
        for province, debtor, bank, account in accounts:
            self.paying_accounts[province] = (debtor, bank, account)


class AlreadyRecorded(RuleViolation):
    """What was asked for is already recorded: nothing to do, and not an error."""


def is_unit_row(row: Any) -> bool:
    """Old province, old commune, new province, new commune: provinces 2 digits, communes 5
    digits or both empty (a whole province)."""
    if not (isinstance(row, list) and len(row) == 4 and all(isinstance(v, str) for v in row)):
        return False
    old_p, old_c, new_p, new_c = row
    provinces = all(p.isascii() and p.isdigit() and len(p) == 2 for p in (old_p, new_p))
    communes = (old_c, new_c) == ("", "") or all(
        c.isascii() and c.isdigit() and len(c) == 5 for c in (old_c, new_c)
    )
    return provinces and communes


def is_paying_account_row(row: Any) -> bool:
    """Province code, debtor name, bank code, account number, each as `ledger.values` has
    it."""
    if not (isinstance(row, list) and len(row) == 4 and all(isinstance(v, str) for v in row)):
        return False
    try:
        values.province_code_form(row[0])
        values.debtor_name(row[1])
        values.bank_code(row[2])
        values.account_number(row[3])
    except values.InvalidValue:
        return False
    return True


def _kind_text(kind: str) -> str:
    return kind.replace("_", " ")


class PayrollRegister(Aggregate):
    """A province's approvals, one after the other. Each approval records itself here in the
    same transaction as its list, so two approvals in one province can never both compute
    from the same balances (the second would pay the first's months again: it fails on this
    aggregate's version), and a province's periods are approved in order. Provinces approve
    in parallel; a person on two provinces' lists at once (a move between the two
    computations) is refused by the approval's fence on moves, not here."""

    @staticmethod
    def create_id(province_code: str = "", **_: Any) -> UUID:
        return payroll_register_id(province_code) if province_code else PAYROLL_REGISTER_ID

    @event("Opened")
    def __init__(self, actor: str, source: str, province_code: str = "") -> None:
        self.latest: dict[str, str] = {}  # province -> latest approved period

    @property
    def recorded_version(self) -> int | None:
        """Its version, None while nothing is approved in it (it is recorded with its first
        approval): what a draft notes, so that its approval knows whether one came between."""
        return self.version if self.latest else None

    def check_order(self, period: str, province_code: str) -> None:
        latest = self.latest.get(province_code)
        if latest is not None and period < latest:
            raise RuleViolation(
                f"{latest} is already approved in province {province_code}: periods are "
                f"paid in order, so {period} can no longer be drawn up there"
            )

    def record_approval(self, period: str, province_code: str, actor: str, source: str) -> None:
        self.check_order(period, province_code)
        self._list_approved(period=period, province_code=province_code, actor=actor, source=source)

    @event("ListApproved")
    def _list_approved(self, period: str, province_code: str, actor: str, source: str) -> None:
        self.latest[province_code] = max(period, self.latest.get(province_code, period))


@dataclass(frozen=True)
class DraftFacts:
    """What a draft was computed from, recorded with it so that its approval can check that
    nothing it depends on changed since: the last event the read models showed, the digest
    of the entries kept for the approval (`ledger.kept_drafts`), and the version of the
    province's payroll register then (None: nothing approved there yet)."""

    known_through: int
    kept_digest: str
    register_version: int | None


class PaymentList(Aggregate):
    """The payment list of one period and province: drafted, approved by someone who did not
    draft it, then settled line by line. Approved lines are facts: never changed."""

    @staticmethod
    def create_id(period: str, province_code: str, **_: Any) -> UUID:
        return payment_list_id(period, province_code)

    @event("Opened")
    def __init__(self, period: str, province_code: str, actor: str, source: str) -> None:
        self.period = period
        self.province_code = province_code
        self.draft_digest: str | None = None
        self.draft_totals = (0, 0, 0)  # the draft's line count, total and amount by bank
        self.drafted_by: set[str] = set()  # everyone who drew up the current draft
        self.draft_facts: DraftFacts | None = None  # what the latest draft was computed from
        self.approved_by: str | None = None
        self.approved_digest: str | None = None
        # Its lines are not kept here: a national list is hundreds of thousands of them, and
        # the one command that needs their state (settle) reads it from the LinesIssued and
        # LinesSettled events themselves, set-based (EventStore.line_states).

    @property
    def is_approved(self) -> bool:
        return self.approved_by is not None

    def draft(
        self,
        digest: str,
        line_count: int,
        total_amount: int,
        bank_amount: int,
        receivable_amount: int,
        actor: str,
        source: str,
        facts: DraftFacts,
        held: int = 0,
        waiting_for_claimant: int = 0,
    ) -> None:
        if self.is_approved:
            raise RuleViolation(f"the list {self.period} {self.province_code} is approved")
        self._drafted(
            digest=digest,
            line_count=line_count,
            total_amount=total_amount,
            bank_amount=bank_amount,
            receivable_amount=receivable_amount,
            actor=actor,
            source=source,
            known_through=facts.known_through,
            kept_digest=facts.kept_digest,
            register_version=facts.register_version,
            held=held,
            waiting_for_claimant=waiting_for_claimant,
        )

    @event("Drafted")
    def _drafted(
        self,
        digest: str,
        line_count: int,
        total_amount: int,
        bank_amount: int,
        receivable_amount: int,
        actor: str,
        source: str,
        # absent from drafts recorded before drafts were kept: such a draft is run again
        known_through: int = 0,
        kept_digest: str = "",
        register_version: int | None = None,
        # who the draft gave no line: held accounts, deaths awaiting a funeral claimant (shown
        # to the approver; absent from drafts recorded before they were counted)
        held: int = 0,
        waiting_for_claimant: int = 0,
    ) -> None:
        if digest != self.draft_digest:
            self.drafted_by = set()
        self.drafted_by.add(actor)
        self.draft_digest = digest
        self.draft_totals = (line_count, total_amount, bank_amount)
        self.draft_facts = (
            DraftFacts(known_through, kept_digest, register_version) if kept_digest else None
        )

    def check_approver(self, actor: str) -> None:
        """Maker is never checker: whoever drew up these very lines may not approve them."""
        # one person however spelt: `Nguyen`, `nguyen `, a fullwidth `Ｎguyen`
        if any(same_actor(actor, maker) for maker in self.drafted_by):
            raise RuleViolation(
                f"{actor} drafted the list {self.period} {self.province_code} and cannot "
                "approve it: another operator must approve"
            )

    def kept_draft_facts(self) -> DraftFacts:
        """What the draft was computed from; refused for a draft recorded before drafts were
        kept for their approval."""
        if self.draft_facts is None:
            raise RuleViolation(
                f"the draft of {self.period} {self.province_code} was made before drafts were "
                "kept for their approval: run the payroll again and have the new draft approved"
            )
        return self.draft_facts

    def approve(self, actor: str, source: str) -> None:
        """Freeze the list as drafted: the digest, count and totals its draft recorded, of
        the lines the draft kept, which `issue` then records, a chunk at a time, with the
        postings (`accrue`) that bring each resident's credits in the books up to date (the
        approval's caller checks the kept entries against the draft's record as it reads
        them). The approval records the draft's `known_through`: the last event the read
        models showed when the lines were computed (an auditor recomputes from there)."""
        if self.is_approved:
            raise RuleViolation(f"the list {self.period} {self.province_code} is already approved")
        if self.draft_digest is None:
            raise RuleViolation(f"the list {self.period} {self.province_code} has no draft")
        self.check_approver(actor)
        facts = self.kept_draft_facts()
        line_count, total_amount, bank_amount = self.draft_totals
        self._approved(
            digest=self.draft_digest,
            line_count=line_count,
            total_amount=total_amount,
            bank_amount=bank_amount,
            known_through=facts.known_through,
            actor=actor,
            source=source,
        )

    def issue(self, lines: list[list[Any]], actor: str, source: str) -> None:
        """Record approved lines (rows in ISSUED_FIELDS order), after `approve`."""
        self._require_approved("issued")
        self._lines_issued(columns=list(ISSUED_FIELDS), lines=lines, actor=actor, source=source)

    def accrue(self, accruals: list[list[Any]], actor: str, source: str) -> None:
        """Record the approval's postings ([personal_id, allowance_delta, funeral_delta,
        credited_through] rows), after `approve`."""
        self._require_approved("posted")
        self._credits_accrued(
            columns=list(ACCRUAL_FIELDS), accruals=accruals, actor=actor, source=source
        )

    def _require_approved(self, doing: str) -> None:
        if not self.is_approved:
            raise RuleViolation(
                f"the list {self.period} {self.province_code} is not approved: nothing of it "
                f"can be {doing}"
            )

    @event("Approved")
    def _approved(
        self,
        digest: str,
        line_count: int,
        total_amount: int,
        bank_amount: int,
        known_through: int,
        actor: str,
        source: str,
    ) -> None:
        self.approved_by = actor
        self.approved_digest = digest  # its bank transfers' message id is made from it

    @event("LinesIssued")
    def _lines_issued(
        self, columns: list[str], lines: list[list[Any]], actor: str, source: str
    ) -> None:
        pass  # facts in the record; the list's state does not hold them (see __init__)

    @event("CreditsAccrued")
    def _credits_accrued(
        self, columns: list[str], accruals: list[list[Any]], actor: str, source: str
    ) -> None:
        pass  # postings to the books; the list's own state does not change

    def settle(
        self,
        settlements: list[dict[str, Any]],
        file_sha256: str,
        actor: str,
        source: str,
        chunk_size: int = 1000,
    ) -> None:
        """Record settlements of this list's lines, each already checked against the line's
        state in the record (rules.settlement_move): payment_id, status, settled_at,
        reference, reason, row, previous_status, and what the books need to post it
        (personal_id, channel, total_amount, funeral_amount); at most `chunk_size` an event."""
        self._require_approved("settled")
        for i in range(0, len(settlements), chunk_size):
            self._lines_settled(
                settlements=settlements[i : i + chunk_size],
                file_sha256=file_sha256,
                actor=actor,
                source=source,
            )

    @event("LinesSettled")
    def _lines_settled(
        self, settlements: list[dict[str, Any]], file_sha256: str, actor: str, source: str
    ) -> None:
        pass  # facts in the record, read by the next settlement (see __init__)
