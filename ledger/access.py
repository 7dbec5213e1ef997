"""Which of the ledger's roles may do what: one answer for the command line and the console.

On a PostgreSQL store the roles are the database's (`ledger init` makes them); an approver may
do everything an operator may; "reader": any of operator, approver and auditor; "owner": the
database owner's own commands, the only ones run as the owner."""

from __future__ import annotations

from collections.abc import Set as AbstractSet

OPERATOR, APPROVER, AUDITOR, PROJECTOR = "operator", "approver", "auditor", "projector"
READER, OWNER, NO_STORE = "reader", "owner", "none"
# the roles of a person at the console or the command line (the projector is a process's)
PEOPLES_ROLES = frozenset({OPERATOR, APPROVER, AUDITOR})


def allowed(needs: str) -> frozenset[str]:
    """The roles any one of which does what needs `needs`."""
    return PEOPLES_ROLES if needs == READER else frozenset({needs})


def wanted(needs: str) -> str:
    """`needs` as an operator reads it."""
    return "operator, approver or auditor" if needs == READER else needs


def may(kinds: AbstractSet[str], needs: str) -> bool:
    return bool(allowed(needs) & kinds)
