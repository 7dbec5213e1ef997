"""The aggregates. Their decorated methods are the events; the public methods check the rules
first, so that an event is only ever recorded for a command the rules allow.

Every event carries `actor` (who caused it) and `source` (from what: a file and row, a command,
later a Kafka topic, partition and offset). When it was recorded is the event's timestamp.
Event attributes are plain strings, integers, lists and dicts: they are the wire format.
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger.rules import PENDING, SETTLEMENT_MOVES, RuleViolation

_NS = uuid5(NAMESPACE_URL, "https://ansinh.example/ledger")


def beneficiary_id(personal_id: str) -> UUID:
    return uuid5(_NS, f"beneficiary/{personal_id}")


def death_record_id(personal_id: str) -> UUID:
    return uuid5(_NS, f"death-record/{personal_id}")


def payment_list_id(period: str, province_code: str) -> UUID:
    return uuid5(_NS, f"payment-list/{period}/{province_code}")


REFERENCE_DATA_ID = uuid5(_NS, "reference-data")


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
        self.terminated_from: str | None = None
        self.held = False

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


class DeathRecord(Aggregate):
    """What the civil registries told the ledger about one person's death: every registration,
    correction and revocation, applied once each by `event_id`."""

    @staticmethod
    def create_id(personal_id: str) -> UUID:
        return death_record_id(personal_id)

    @event("Opened")
    def __init__(self, personal_id: str) -> None:
        self.personal_id = personal_id
        self.applied_event_ids: set[str] = set()
        # registration number -> its current facts; at most one is in force at a time
        self.registrations: dict[str, dict[str, Any]] = {}
        self.in_force: str | None = None

    def has_applied(self, event_id: str) -> bool:
        return event_id in self.applied_event_ids

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
            raise RuleViolation(
                f"{self.personal_id}: a death is already registered under "
                f"{self.in_force}; correct or revoke it first"
            )
        if registration_number in self.registrations:
            raise RuleViolation(
                f"registration {registration_number} already exists; send CORRECTED to change it"
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

    @event("Registered")
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
        self.applied_event_ids.add(event_id)
        self.registrations[registration_number] = {
            "date_of_death": date_of_death,
            "claimant": claimant,
            "revoked": False,
        }
        self.in_force = registration_number

    def _known(self, registration_number: str, what: str) -> dict[str, Any]:
        reg = self.registrations.get(registration_number)
        if reg is None:
            raise RuleViolation(f"{what} of unknown registration {registration_number}")
        if reg["revoked"]:
            raise RuleViolation(f"{what} of revoked registration {registration_number}")
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

    def set_standard_level(self, from_month: str, amount: int, actor: str, source: str) -> None:
        if amount <= 0:
            raise RuleViolation("a standard level must be a positive amount of VND")
        if self.standard_levels.get(from_month) == amount:
            raise RuleViolation(f"the standard level from {from_month} is already {amount}")
        self._standard_level_set(from_month=from_month, amount=amount, actor=actor, source=source)

    @event("StandardLevelSet")
    def _standard_level_set(self, from_month: str, amount: int, actor: str, source: str) -> None:
        self.standard_levels[from_month] = amount


class PaymentList(Aggregate):
    """The payment list of one period and province: drafted, approved by someone other than
    who drafted it, then settled line by line. Approved lines are facts: never changed."""

    @staticmethod
    def create_id(period: str, province_code: str) -> UUID:
        return payment_list_id(period, province_code)

    @event("Opened")
    def __init__(self, period: str, province_code: str) -> None:
        self.period = period
        self.province_code = province_code
        self.drafted_by: str | None = None
        self.draft_digest: str | None = None
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
        self.drafted_by = actor
        self.draft_digest = digest

    def approve(
        self,
        digest: str,
        lines: list[list[Any]],
        accruals: list[list[Any]],
        actor: str,
        source: str,
        chunk_size: int = 2000,
    ) -> None:
        """Freeze the list. `lines` are rows in LINE_FIELDS order; `accruals` are
        [personal_id, allowance_delta, funeral_delta, credited_through] postings that bring
        each resident's credits in the books up to date."""
        if self.is_approved:
            raise RuleViolation(f"the list {self.period} {self.province_code} is already approved")
        if self.drafted_by is None:
            raise RuleViolation(f"the list {self.period} {self.province_code} has no draft")
        if actor == self.drafted_by:
            raise RuleViolation(
                f"{actor} drafted the list {self.period} {self.province_code} and cannot approve "
                "it: another operator must approve"
            )
        if digest != self.draft_digest:
            raise RuleViolation(
                f"the list {self.period} {self.province_code} changed since it was drafted "
                "(new events arrived): run the payroll again and have the new draft approved"
            )
        total = sum(int(row[14]) for row in lines)
        bank = sum(int(row[14]) for row in lines if row[8] == "BANK")
        self._approved(
            digest=digest,
            line_count=len(lines),
            total_amount=total,
            bank_amount=bank,
            actor=actor,
            source=source,
        )
        for i in range(0, len(lines), chunk_size):
            self._lines_issued(lines=lines[i : i + chunk_size])
        for i in range(0, len(accruals), chunk_size):
            self._credits_accrued(accruals=accruals[i : i + chunk_size])

    @event("Approved")
    def _approved(
        self,
        digest: str,
        line_count: int,
        total_amount: int,
        bank_amount: int,
        actor: str,
        source: str,
    ) -> None:
        self.approved_by = actor

    @event("LinesIssued")
    def _lines_issued(self, lines: list[list[Any]]) -> None:
        for row in lines:
            # row: LINE_FIELDS order; [0] payment_id, [5] personal_id, [8] channel,
            # [12] funeral_amount, [14] total_amount
            self.lines[row[0]] = [PENDING, row[5], row[8], row[14], row[12]]

    @event("CreditsAccrued")
    def _credits_accrued(self, accruals: list[list[Any]]) -> None:  # noqa: ARG002
        pass  # postings to the books; the list's own state does not change

    def check_settlement(self, payment_id: str, status: str) -> str | None:
        """The line's current status when `status` is a legal next move, None when the line
        already has that status (a repeated file), else RuleViolation."""
        line = self.lines.get(payment_id)
        if line is None:
            raise RuleViolation(f"unknown payment {payment_id}")
        current = line[0]
        if current == status:
            return None
        if status not in SETTLEMENT_MOVES[current]:
            raise RuleViolation(f"payment {payment_id} is {current} and cannot become {status}")
        return str(current)

    def settle(self, settlements: list[dict[str, Any]], actor: str, source: str) -> None:
        """Each settlement: payment_id, status, settled_at, reference, reason (checked first
        with check_settlement). The event carries what the books need to post it."""
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
            self._lines_settled(settlements=records, actor=actor, source=source)

    @event("LinesSettled")
    def _lines_settled(self, settlements: list[dict[str, Any]], actor: str, source: str) -> None:
        for s in settlements:
            self.lines[s["payment_id"]][0] = s["status"]
