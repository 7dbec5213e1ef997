"""What is personal data in the ledger's events: what identifies a person beyond their personal
id. It is kept sealed in the store (adapters/personal_data.py); the facts the ledger decides and
searches on (personal ids, codes, months, amounts) are not."""

from __future__ import annotations

from typing import Any

from ledger.rules import RuleViolation

# an event's fields that are personal data: sealed whole (a funeral claimant's particulars too)
PERSONAL_FIELDS = frozenset({"full_name", "date_of_birth", "account_number", "claimant"})
# the columns of a list's lines (an event with `columns` and `lines`) that are
PERSONAL_COLUMNS = frozenset({"payee_name", "account_number"})
# the entry of a stored event that holds them, sealed
SEALED = "_sealed_"


def sealed_fields(state: dict[str, Any]) -> frozenset[str]:
    """The names of the fields a stored event holds sealed (none when it holds none), read
    without a key: a fence asks whether a correction names a claimant."""
    entry = state.get(SEALED)
    if not isinstance(entry, dict):
        return frozenset()
    return frozenset(f for f in entry.get("fields", ()) if isinstance(f, str))


class RecordAltered(RuleViolation):
    """Personal data sealed in a stored event that its key does not open: the event (its seal,
    or the facts the seal is bound to) was altered after it was written."""
