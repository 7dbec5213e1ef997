"""Death registrations, corrections and revocations from the civil registries: decided on the
death records (each registration applied once, by its event_id), saved all or none for a
file, or with the Kafka position they came from for a stream."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from uuid import UUID

from ledger.aggregates import DeathRecord, RegistrationRefused, death_record_id
from ledger.inputs import DeathRow, InputFile, InputRejected, Problems
from ledger.service_layer.common import ImportResult, sorted_problems
from ledger.service_layer.ports import Ports

APPLIED, UNCHANGED, REFUSED = "applied", "unchanged", "refused"


@dataclass(frozen=True)
class RegistrationOutcome:
    """What became of one death registration: applied (it caused events), unchanged (its
    event_id was applied before) or refused, with a reason code and a sentence."""

    where: str
    outcome: str
    reason: str = ""
    detail: str = ""
    field: str = "registration_number"  # the field a refusal names


@dataclass(frozen=True)
class DeathDecision:
    records: list[DeathRecord]  # with their new events pending
    outcomes: list[RegistrationOutcome]  # one per registration, in order

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)


class Registration(NamedTuple):
    """A registration to decide: its source for the audit trail, where an error points, the
    registration, and the registry system that sent it when known (a v2 message, the HTTP
    endpoint): a registration is corrected or revoked only by the system that registered it."""

    source: str
    where: str
    row: DeathRow
    system: str | None = None


def import_deaths(ports: Ports, file: InputFile, actor: str) -> ImportResult:
    """Apply a file of death registrations (CSV, or an Avro container file), in order, all or
    none. A registration whose event_id was applied before changes nothing. The registrations
    without a format error are decided too, so that every problem of the file is reported at
    once; a registration that follows a malformed one of the same person is decided without
    it."""
    problems: list[str] = Problems()
    unit, records = ports.read_registrations(file, problems, ports.clock.now())
    ports.read_models.catch_up()  # the guards are checked where the decision is made, below
    registrations = [
        Registration(f"{file.name} {unit} {n}", f"{file.name}: {unit} {n}", row)
        for n, row in records
    ]
    if not problems:
        return apply_death_registrations(ports, registrations, actor)
    decision = decide_death_registrations(ports, registrations, actor)  # nothing is saved
    problems += _refusals(decision)
    raise InputRejected(sorted_problems(problems))


class RegistrationsRefused(InputRejected):
    """Registrations the record refuses: a line each, and every registration's outcome, in
    their order (a caller that must not show the record's facts reads their reason codes)."""

    def __init__(self, problems: Sequence[str], outcomes: Sequence[RegistrationOutcome]) -> None:
        super().__init__(problems)
        self.outcomes = list(outcomes)


def apply_death_registrations(
    ports: Ports, registrations: Sequence[Registration], actor: str
) -> ImportResult:
    """A file's registrations, all or none."""
    decision = decide_death_registrations(ports, registrations, actor)
    refused = _refusals(decision)
    if refused:
        raise RegistrationsRefused(refused, decision.outcomes)
    ports.save(*decision.records)
    return ImportResult(decision.count(APPLIED), decision.count(UNCHANGED))


def _refusals(decision: DeathDecision) -> list[str]:
    return [f"{o.where}: {o.field}: {o.detail}" for o in decision.outcomes if o.outcome == REFUSED]


def decide_death_registrations(
    ports: Ports, registrations: Sequence[Registration], actor: str
) -> DeathDecision:
    """What each registration, in order, does to the death records; nothing is saved. The
    records are read in bulk and are the truth for what a person's registrations are; the
    `death_registration_events` read model adds event ids applied to another person's record
    (a registry that reused an id), so its guards are checked first: a consumer of the
    registry's topic refuses, rather than take a death for one already applied."""
    ports.guards.check()
    registrations = [Registration(*r) for r in registrations]  # a plain (source, where, row) too
    owners = _record_of_event_ids(ports, [r.row.event_id for r in registrations])
    pids = list(dict.fromkeys(r.row.personal_id for r in registrations))
    births = _births(ports, pids)
    ids = {p: death_record_id(p) for p in pids}  # a name-based UUID: a hash, made once
    loaded = ports.events.load_many(list(ids.values()))
    records: dict[str, DeathRecord | None] = {p: loaded.get(ids[p]) for p in pids}
    changed: dict[str, DeathRecord] = {}
    outcomes: list[RegistrationOutcome] = []
    # with a register extract loaded, a death of someone it does not hold is refused
    register = ports.population.latest()
    unknown = None if register is None else set(pids) - ports.population.held(pids)
    for source, where, row, system in registrations:
        record = records[row.personal_id]
        owner = owners.get(row.event_id)
        applied = record.applied_content(row.event_id) if record is not None else None
        if owner is not None and owner != ids[row.personal_id]:
            outcomes.append(_reused(where, row, "for another person's death record"))
            continue
        if applied is not None:
            if applied == registration_content(row):
                outcomes.append(RegistrationOutcome(where, UNCHANGED))
            else:
                outcomes.append(_reused(where, row, "with other content"))
            continue
        if register is not None and unknown and row.personal_id in unknown:
            outcomes.append(
                RegistrationOutcome(
                    where,
                    REFUSED,
                    "unknown-person",
                    f"{row.personal_id} is not in the population register (extract "
                    f"{register.extract_no} of {register.extract_date}): check the id with the "
                    "registry",
                    field="personal_id",
                )
            )
            continue
        born = births.get(row.personal_id)
        if row.event_type != "REVOKED" and born is not None and row.date_of_death < born:
            outcomes.append(
                RegistrationOutcome(
                    where,
                    REFUSED,
                    "death-before-birth",
                    f"{row.date_of_death} is before the person's date of birth ({born}) "
                    "as enrolled: check the date with the registry",
                    field="date_of_death",
                )
            )
            continue
        try:
            record = _apply(record, row, actor, source, system)
        except RegistrationRefused as refused:
            outcomes.append(RegistrationOutcome(where, REFUSED, refused.reason, str(refused)))
            continue
        # a refused registration triggers no event, so the record holds only applied ones
        records[row.personal_id] = changed[row.personal_id] = record
        owners[row.event_id] = ids[row.personal_id]
        outcomes.append(RegistrationOutcome(where, APPLIED))
    return DeathDecision(list(changed.values()), outcomes)


def registration_content(row: DeathRow) -> dict[str, Any]:
    """What a registration says that the ledger records, as its death record keeps it for
    its event_id (`DeathRecord.applied_content`): the same event_id saying anything else is
    a reuse. A correction records no name, and a revocation neither name, date nor claimant
    (an Avro revocation carries a date all the same)."""
    kind = row.event_type
    return {
        "event_type": kind,
        "registration_number": row.registration_number,
        "full_name": row.full_name if kind == "REGISTERED" else None,
        "date_of_death": None if kind == "REVOKED" else row.date_of_death,
        "registered_at": row.registered_at,
        "registry_office": row.registry_office,
        "claimant": None if kind == "REVOKED" else row.claimant,
    }


def _reused(where: str, row: DeathRow, how: str) -> RegistrationOutcome:
    return RegistrationOutcome(
        where,
        REFUSED,
        "event-id-reused",
        f"{row.event_id} was applied before {how}: a registry gives each registration its "
        "own event_id; send this one with a new event_id",
        field="event_id",
    )


def _births(ports: Ports, personal_ids: Sequence[str]) -> dict[str, str]:
    """The enrolled date of birth of each of these people who is a beneficiary."""
    found: dict[str, str] = {}
    for i in range(0, len(personal_ids), 500):
        chunk = personal_ids[i : i + 500]
        marks = ",".join("?" * len(chunk))
        found.update(
            ports.db.query(
                "SELECT personal_id, date_of_birth FROM beneficiaries "
                f"WHERE personal_id IN ({marks})",
                chunk,
            )
        )
    return found


def _record_of_event_ids(ports: Ports, event_ids: Sequence[str]) -> dict[str, Any]:
    """The death record each of these event ids was applied to, for those applied before
    (the `death_registration_events` read model, whose guards are checked above)."""
    found: dict[str, Any] = {}
    unique = list(dict.fromkeys(event_ids))
    for i in range(0, len(unique), 500):
        chunk = unique[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for event_id, aggregate_id in ports.db.query(
            "SELECT event_id, aggregate_id FROM death_registration_events "
            f"WHERE event_id IN ({marks})",
            chunk,
        ):
            found[event_id] = UUID(str(aggregate_id))
    return found


def _apply(
    record: DeathRecord | None, row: DeathRow, actor: str, source: str, system: str | None
) -> DeathRecord:
    """One registration on a person's death record (a new record for a first one)."""
    facts: dict[str, Any] = {
        "system": system,
        "event_id": row.event_id,
        "registration_number": row.registration_number,
        "registered_at": row.registered_at,
        "registry_office": row.registry_office,
        "actor": actor,
        "source": source,
    }
    if row.event_type == "REGISTERED":
        registration = {
            **facts,
            "full_name": row.full_name,
            "date_of_death": row.date_of_death,
            "claimant": row.claimant,
        }
        if record is None:
            return DeathRecord(personal_id=row.personal_id, **registration)
        record.register(**registration)
        return record
    if record is None:
        raise RegistrationRefused(
            "unknown-registration",
            f"{row.event_type.lower()} of unknown registration {row.registration_number}",
        )
    if row.event_type == "CORRECTED":
        record.correct(**facts, date_of_death=row.date_of_death, claimant=row.claimant)
    else:
        record.revoke(**facts)
    return record


def record_death_registrations(ports: Ports, decision: DeathDecision, tracking: Any) -> None:
    """Save a decision's events together with the position of the messages it came from, in
    one transaction. The store refuses a position it already holds (IntegrityError): those
    messages were applied before, by this consumer or another. Does not wait for read models
    kept by Kafka: the decisions read the records themselves."""
    ports.events.save_tracked(decision.records, tracking)
    if ports.read_models.kind == "in-process":
        ports.read_models.catch_up()
