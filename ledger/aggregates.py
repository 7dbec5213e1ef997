"""The aggregates. Their decorated methods are the events; the public methods check the rules
first, so that an event is only ever recorded for a command the rules allow.

Every event carries `actor` (who caused it) and `source` (from what: a file and row, a command,
later a Kafka topic, partition and offset). When it was recorded is the event's timestamp.
Event attributes are plain strings, integers, lists and dicts: they are the wire format.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger.months import month_of_iso, parse_month
from ledger.rules import (
    ACCRUAL_FIELDS,
    ISSUED_FIELDS,
    LINE,
    PENDING,
    SETTLEMENT_MOVES,
    Entitlement,
    RuleViolation,
)

_NS = uuid5(NAMESPACE_URL, "https://ansinh.example/ledger")


def beneficiary_id(personal_id: str) -> UUID:
    return uuid5(_NS, f"beneficiary/{personal_id}")


def death_record_id(personal_id: str) -> UUID:
    return uuid5(_NS, f"death-record/{personal_id}")


def payment_list_id(period: str, province_code: str) -> UUID:
    return uuid5(_NS, f"payment-list/{period}/{province_code}")


REFERENCE_DATA_ID = uuid5(_NS, "reference-data")
PAYROLL_REGISTER_ID = uuid5(_NS, "payroll-register")


class Beneficiary(Aggregate):
    """A person enrolled for monthly social assistance."""

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
    ) -> None:
        """The first registration of a person's death opens the record (one event, not two:
        a day of registrations is mostly first ones)."""
        self.personal_id = personal_id
        self.applied_event_ids: set[str] = set()
        # registration number -> its current facts; at most one is in force at a time
        self.registrations: dict[str, dict[str, Any]] = {}
        self.in_force: str | None = None
        self._put_in_force(event_id, registration_number, date_of_death, claimant)

    def _put_in_force(
        self,
        event_id: str,
        registration_number: str,
        date_of_death: str,
        claimant: dict[str, str] | None,
    ) -> None:
        self.applied_event_ids.add(event_id)
        self.registrations[registration_number] = {
            "date_of_death": date_of_death,
            "claimant": claimant,
            "revoked": False,
        }
        self.in_force = registration_number

    def has_applied(self, event_id: str) -> bool:
        return event_id in self.applied_event_ids

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
    ) -> None:
        self._put_in_force(event_id, registration_number, date_of_death, claimant)

    def _known(self, registration_number: str, what: str) -> dict[str, Any]:
        reg = self.registrations.get(registration_number)
        if reg is None:
            raise RegistrationRefused(
                "unknown-registration", f"{what} of unknown registration {registration_number}"
            )
        if reg["revoked"]:
            raise RegistrationRefused(
                "revoked-registration", f"{what} of revoked registration {registration_number}"
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
    ) -> None:
        self._known(registration_number, "correction")
        self._corrected(
            event_id=event_id,
            registration_number=registration_number,
            date_of_death=date_of_death,
            registered_at=registered_at,
            registry_office=registry_office,
            claimant=claimant,
            actor=actor,
            source=source,
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
    ) -> None:
        self.applied_event_ids.add(event_id)
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
    ) -> None:
        self._known(registration_number, "revocation")
        self._revoked(
            event_id=event_id,
            registration_number=registration_number,
            registered_at=registered_at,
            registry_office=registry_office,
            actor=actor,
            source=source,
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
    ) -> None:
        self.applied_event_ids.add(event_id)
        self.registrations[registration_number]["revoked"] = True
        if self.in_force == registration_number:
            self.in_force = None


class ReferenceDataHistory(Aggregate):
    """The standard level and funeral multiplier by month, as loaded and as changed since."""

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

    def change(
        self,
        from_month: str,
        actor: str,
        source: str,
        amount: int | None = None,
        multiplier: int | None = None,
    ) -> None:
        """A new standard level and/or funeral multiplier from a month on (may be back-dated).
        Every month with a standard level must have a funeral multiplier, or a death in that
        month could not be paid: the change is refused when it would leave such a month."""
        if amount is not None and not 0 < amount <= self.MAX_STANDARD_LEVEL:
            raise RuleViolation(
                "a standard level must be a positive amount of VND, "
                f"at most {self.MAX_STANDARD_LEVEL:,}"
            )
        if multiplier is not None and not 0 < multiplier <= self.MAX_FUNERAL_MULTIPLIER:
            raise RuleViolation(
                "a funeral multiplier must be a positive whole number, "
                f"at most {self.MAX_FUNERAL_MULTIPLIER}"
            )
        levels = {**self.standard_levels, **({from_month: amount} if amount else {})}
        multipliers = {
            **self.funeral_multipliers,
            **({from_month: multiplier} if multiplier else {}),
        }
        if (levels, multipliers) == (self.standard_levels, self.funeral_multipliers):
            raise RuleViolation(f"the reference data from {from_month} is already so")
        if min(multipliers) > min(levels):
            raise RuleViolation(
                f"no funeral multiplier would be in force from {min(levels)} to "
                f"{min(multipliers)}: give --funeral-multiplier from {min(levels)} too"
            )
        if amount is not None and self.standard_levels.get(from_month) != amount:
            self._standard_level_set(
                from_month=from_month, amount=amount, actor=actor, source=source
            )
        if multiplier is not None and self.funeral_multipliers.get(from_month) != multiplier:
            self._funeral_multiplier_set(
                from_month=from_month, multiplier=multiplier, actor=actor, source=source
            )

    @event("StandardLevelSet")
    def _standard_level_set(self, from_month: str, amount: int, actor: str, source: str) -> None:
        self.standard_levels[from_month] = amount

    @event("FuneralMultiplierSet")
    def _funeral_multiplier_set(
        self, from_month: str, multiplier: int, actor: str, source: str
    ) -> None:
        self.funeral_multipliers[from_month] = multiplier


class PayrollRegister(Aggregate):
    """Every approval of a payment list, one after the other. Each approval records itself
    here in the same transaction as the list, so two approvals can never both compute from
    the same balances (which would pay the same months twice: the second would fail on this
    aggregate's version), and a province's periods are approved in order."""

    @staticmethod
    def create_id(**_: Any) -> UUID:
        return PAYROLL_REGISTER_ID

    @event("Opened")
    def __init__(self, actor: str, source: str) -> None:
        self.latest: dict[str, str] = {}  # province -> latest approved period

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
        self.drafted_by: set[str] = set()  # everyone who drew up the current draft
        self.approved_by: str | None = None
        # payment_id -> [status, personal_id, channel, total_amount, funeral_amount]
        self.lines: dict[str, list[Any]] = {}

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
    ) -> None:
        if digest != self.draft_digest:
            self.drafted_by = set()
        self.drafted_by.add(actor)
        self.draft_digest = digest

    def check_approver(self, actor: str) -> None:
        """Maker is never checker: whoever drew up these very lines may not approve them."""
        if actor in self.drafted_by:
            raise RuleViolation(
                f"{actor} drafted the list {self.period} {self.province_code} and cannot "
                "approve it: another operator must approve"
            )

    def approve(
        self,
        digest: str,
        lines: list[list[Any]],
        accruals: list[list[Any]],
        actor: str,
        source: str,
        chunk_size: int,
        known_through: int,
    ) -> None:
        """Freeze the list. `lines` are rows in LINE_FIELDS order; `accruals` are
        [personal_id, allowance_delta, funeral_delta, credited_through] postings that bring
        each resident's credits in the books up to date. `known_through`: the last event the
        read models showed when the lines were computed (an auditor recomputes from there)."""
        if self.is_approved:
            raise RuleViolation(f"the list {self.period} {self.province_code} is already approved")
        if self.draft_digest is None:
            raise RuleViolation(f"the list {self.period} {self.province_code} has no draft")
        self.check_approver(actor)
        if digest != self.draft_digest:
            raise RuleViolation(
                f"the list {self.period} {self.province_code} changed since it was drafted "
                "(new events arrived): run the payroll again and have the new draft approved"
            )
        total = sum(int(row[LINE["total_amount"]]) for row in lines)
        bank = sum(
            int(row[LINE["total_amount"]]) for row in lines if row[LINE["channel"]] == "BANK"
        )
        self._approved(
            digest=digest,
            line_count=len(lines),
            total_amount=total,
            bank_amount=bank,
            known_through=known_through,
            actor=actor,
            source=source,
        )
        for i in range(0, len(lines), chunk_size):
            self._lines_issued(
                columns=list(ISSUED_FIELDS),
                lines=lines[i : i + chunk_size],
                actor=actor,
                source=source,
            )
        for i in range(0, len(accruals), chunk_size):
            self._credits_accrued(
                columns=list(ACCRUAL_FIELDS),
                accruals=accruals[i : i + chunk_size],
                actor=actor,
                source=source,
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

    @event("LinesIssued")
    def _lines_issued(
        self, columns: list[str], lines: list[list[Any]], actor: str, source: str
    ) -> None:
        at = {name: i for i, name in enumerate(columns)}
        pid, person, channel = at["payment_id"], at["personal_id"], at["channel"]
        total, funeral = at["total_amount"], at["funeral_amount"]
        for row in lines:
            self.lines[row[pid]] = [PENDING, row[person], row[channel], row[total], row[funeral]]

    @event("CreditsAccrued")
    def _credits_accrued(
        self, columns: list[str], accruals: list[list[Any]], actor: str, source: str
    ) -> None:
        pass  # postings to the books; the list's own state does not change

    def check_settlement(self, payment_id: str, status: str) -> str | None:
        """The line's current status when `status` is a legal next move, None when the line
        already has that status (a repeated file), else RuleViolation."""
        line = self.lines.get(payment_id)
        if line is None:
            raise UnknownPayment(f"unknown payment {payment_id}")
        current = line[0]
        if current == status:
            return None
        if status not in SETTLEMENT_MOVES[current]:
            raise RuleViolation(f"payment {payment_id} is {current} and cannot become {status}")
        return str(current)

    def settle(
        self, settlements: list[dict[str, Any]], file_sha256: str, actor: str, source: str
    ) -> None:
        """Each settlement: payment_id, status, settled_at, reference, reason, row (checked
        first with check_settlement). The event carries what the books need to post it."""
        records = []
        for s in settlements:
            previous = self.check_settlement(s["payment_id"], s["status"])
            if previous is None:
                continue
            _, personal_id, channel, total, funeral = self.lines[s["payment_id"]]
            records.append(
                {
                    **s,
                    "previous_status": previous,
                    "personal_id": personal_id,
                    "channel": channel,
                    "total_amount": total,
                    "funeral_amount": funeral,
                }
            )
        if records:
            self._lines_settled(
                settlements=records, file_sha256=file_sha256, actor=actor, source=source
            )

    @event("LinesSettled")
    def _lines_settled(
        self, settlements: list[dict[str, Any]], file_sha256: str, actor: str, source: str
    ) -> None:
        for s in settlements:
            self.lines[s["payment_id"]][0] = s["status"]


class UnknownPayment(RuleViolation):
    """A settlement names a payment that no approved list holds."""
