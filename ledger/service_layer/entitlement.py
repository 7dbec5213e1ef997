"""Corrections of entitlement: `ledger reinstate ID --reason TEXT` undoes a wrong termination.
The person is entitled again from the enrolment on, so the months not paid since the
termination come back as arrears by the balance rule (rule 2): nothing is computed here."""

from __future__ import annotations

from ledger.aggregates import death_record_id
from ledger.inputs import InputRejected
from ledger.rules import RuleViolation
from ledger.service_layer.enrolment import beneficiary
from ledger.service_layer.ports import Ports


def reinstate(ports: Ports, personal_id: str, reason: str, actor: str) -> None:
    """Refused for a person not enrolled, not terminated, or whose death is recorded and in
    force (a death is ended by the civil registry's revocation, not here)."""
    if not reason.strip():
        raise InputRejected(["--reason: a reason is required"])
    b = beneficiary(ports, personal_id)
    record_id = death_record_id(personal_id)
    record = ports.events.get(record_id)
    death = record.death_in_force if record is not None else None
    if death is not None:
        raise RuleViolation(
            f"{personal_id}: a death on {death.date_of_death} is recorded and in force "
            f"(registration {death.registration_number}): the dead are not reinstated; only "
            "the civil registry's revocation ends a death"
        )
    b.reinstate(reason.strip(), actor, "ledger reinstate")
    # the death record as read, checked under the store's write lock: a death recorded
    # meanwhile refuses the reinstatement
    ports.save(b, expected_versions={record_id: record.version if record is not None else None})
