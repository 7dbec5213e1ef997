"""Who may do what on a PostgreSQL store: the ledger's group roles, their grants, the login
roles of the people in them, and the identity a connection is authenticated as.

The database is the boundary. A ledger process runs as a login role in one of the groups
(`operator`, `approver`, `auditor`, `projector`, each name with the store's prefix); the
grants `ledger init` makes let no such role change a stored event or a link of the chain,
disable a trigger, or write a read model unless it is the projector's. The owner makes the
store and the roles; no ledger process runs as the owner or as a superuser.

The events table records who connected for every event (`recorded_by`, filled by the
server from `session_user`; a ledger role may not give it), so that the actor an event
names can be held against the role that wrote it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from adapters import verify_runs
from adapters.recorders import CHAIN_TABLE, LOCK_FUNCTION
from ledger.rules import RuleViolation
from projections.readmodels import POSITION_TABLES, READ_MODEL_TABLES

KINDS = ("operator", "approver", "auditor", "projector")
ROLES_TABLE = "ledger_roles"  # kind -> the group role's name, made by `ledger init`
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,15}|")

# What each kind of role may do, besides reading every table of the store.
WRITES_EVENTS = ("operator", "projector")  # deaths consume records deaths as the projector
# The command-side table a payroll run keeps its draft in (not a read model)
OPERATOR_TABLES = ("kept_draft_entries",)
# What `ledger verify` found (adapters/verify_runs.py): added by auditors, never changed
AUDITOR_TABLES = ("verify_runs",)
PROJECTOR_TABLES_EXTRA = ("publisher_position", "ledger_tracking")


class RolesRefused(RuleViolation):
    """The connected role may not do this, or the roles are not as `ledger init` made them."""


def role_name(text: str, what: str = "a role name") -> str:
    """A name PostgreSQL keeps as given and an operator can type: lowercase letters, digits
    and `_`, at most 48 characters, not starting with a digit."""
    if not _NAME.fullmatch(text):
        raise RolesRefused(
            f"{what} {text!r}: use lowercase letters, digits and _ (at most 48, not starting "
            "with a digit)"
        )
    if text.startswith("pg_"):
        raise RolesRefused(f"{what} {text!r}: names starting with pg_ are PostgreSQL's own")
    return text


def role_prefix(text: str) -> str:
    if not _PREFIX.fullmatch(text):
        raise RolesRefused(
            f"--role-prefix {text!r}: lowercase letters, digits and _ (at most 16), or nothing"
        )
    return text


def _quoted(name: str) -> str:
    """An identifier already checked by `role_name` (or made of checked parts)."""
    return '"' + name.replace('"', '""') + '"'


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL keeps for a password (RFC 5802/7677), made
    here, so that the password itself never reaches the server or its logs."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


@dataclass(frozen=True)
class Identity:
    """Who a connection is, as the server authenticated it."""

    name: str
    superuser: bool
    owner: bool  # a member of the role that owns the store's events
    kinds: frozenset[str]  # the ledger groups it belongs to (an approver is an operator too)
    roles_made: bool  # whether `ledger init` made the store's roles

    @property
    def administers(self) -> bool:
        return self.superuser or self.owner


def identity(db: Any, events_table: str) -> Identity:
    (name, superuser, owner), *_ = db.query(
        "SELECT session_user::text, r.rolsuper,"
        " COALESCE(pg_has_role(session_user, c.relowner, 'MEMBER'), false)"
        " FROM pg_roles r LEFT JOIN pg_class c ON c.oid = to_regclass(?)"
        " WHERE r.rolname = session_user",
        (events_table,),
    )
    made = db.query("SELECT to_regclass(?) IS NOT NULL", (ROLES_TABLE,))[0][0] is True
    kinds: frozenset[str] = frozenset()
    if made:
        kinds = frozenset(
            str(k)
            for (k,) in db.query(
                f"SELECT l.kind FROM {ROLES_TABLE} l JOIN pg_roles r ON r.rolname = l.role_name"
                " WHERE pg_has_role(session_user, r.oid, 'MEMBER')"
            )
        )
    return Identity(str(name), bool(superuser), bool(owner), kinds, made)


def group_names(db: Any) -> dict[str, str]:
    """kind -> the store's group role, as `ledger init` recorded them."""
    recorded = recorded_roles(db)
    if not recorded:
        raise RolesRefused(
            "this store has no roles yet: run `ledger init` once as the database owner"
        )
    return recorded


def _existing_roles(cursor: Any, names: Iterable[str]) -> set[str]:
    cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(?)", (list(names),))
    return {str(r[0]) for r in cursor.fetchall()}


def refuse_another_prefix(recorded: dict[str, str], prefix: str) -> dict[str, str]:
    """The group roles `prefix` names, refused when the store's recorded roles are others."""
    prefix = role_prefix(prefix)
    wanted = {kind: role_name(prefix + kind, "role") for kind in KINDS}
    if recorded and recorded != wanted:
        raise RolesRefused(
            f"this store's roles are {', '.join(sorted(recorded.values()))}: run `ledger "
            f"init` with the prefix they were made with"
        )
    return wanted


def recorded_roles(db: Any) -> dict[str, str]:
    """kind -> group role, as `ledger init` recorded them; empty before it ever ran."""
    if db.query("SELECT to_regclass(?) IS NULL", (ROLES_TABLE,))[0][0] is True:
        return {}
    return {str(k): str(n) for k, n in db.query(f"SELECT kind, role_name FROM {ROLES_TABLE}")}


def install(db: Any, prefix: str, events_table: str, schema: str = "public") -> list[str]:
    """Make the store's group roles (those missing) and give them, and nobody else, their
    grants; run by the owner, again after any upgrade (it only adds). What was made."""
    wanted = refuse_another_prefix({}, prefix)
    made: list[str] = []
    with db.transaction() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('ledger_roles'))")
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {ROLES_TABLE} (kind TEXT PRIMARY KEY,"
            " role_name TEXT NOT NULL UNIQUE)"
        )
        cursor.execute(f"SELECT kind, role_name FROM {ROLES_TABLE}")
        recorded = {str(k): str(n) for k, n in cursor.fetchall()}
        refuse_another_prefix(recorded, prefix)
        existing = _existing_roles(cursor, wanted.values())
        for kind, name in wanted.items():
            if name not in existing:
                cursor.execute(
                    f"CREATE ROLE {_quoted(name)} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
                    " NOREPLICATION NOBYPASSRLS INHERIT"
                )
                made.append(name)
            if not recorded:
                cursor.execute(
                    f"INSERT INTO {ROLES_TABLE} (kind, role_name) VALUES (?, ?)", (kind, name)
                )
        for statement in grants(wanted, events_table, schema, _tables(cursor, schema)):
            cursor.execute(statement)
    return made


def _tables(cursor: Any, schema: str) -> list[str]:
    cursor.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = ? AND c.relkind IN ('r', 'p') ORDER BY 1",
        (schema,),
    )
    return [str(r[0]) for r in cursor.fetchall()]


def grants(
    groups: dict[str, str], events_table: str, schema: str, tables: Sequence[str]
) -> list[str]:
    """The statements that give each group what it may do and take everything else away
    from everybody but the owner."""
    q = _quoted
    everyone = ", ".join(q(n) for n in groups.values())
    writers = ", ".join(q(groups[k]) for k in WRITES_EVENTS)
    projector, operator = q(groups["projector"]), q(groups["operator"])
    s = q(schema)
    statements = [
        # an approver may do everything an operator may
        f"GRANT {operator} TO {q(groups['approver'])}",
        "DO $$ BEGIN EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC',"
        " current_database()); EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO "
        + everyone.replace("'", "''")
        + "', current_database()); END $$",
        f"REVOKE ALL ON SCHEMA {s} FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA {s} TO {everyone}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM PUBLIC, {everyone}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM PUBLIC, {everyone}",
        f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {s} FROM PUBLIC, {everyone}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {everyone}",
        # the events: appended, never given a `recorded_by` (the server's session_user)
        f"GRANT INSERT (originator_id, originator_version, topic, state) ON {s}.{q(events_table)}"
        f" TO {writers}",
        f"GRANT INSERT ON {s}.{q(CHAIN_TABLE)} TO {writers}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {s} TO {writers}",
        f"GRANT EXECUTE ON FUNCTION {s}.{LOCK_FUNCTION}() TO {writers}",
    ]
    for table in OPERATOR_TABLES:
        if table in tables:
            statements.append(f"GRANT INSERT, UPDATE, DELETE ON {s}.{q(table)} TO {operator}")
    for table in AUDITOR_TABLES:
        if table in tables:
            statements.append(
                f"GRANT INSERT ({', '.join(verify_runs.COLUMNS_GIVEN)}) ON {s}.{q(table)}"
                f" TO {q(groups['auditor'])}"
            )
    for table in (*READ_MODEL_TABLES, *POSITION_TABLES, *PROJECTOR_TABLES_EXTRA):
        if table in tables:
            statements.append(f"GRANT INSERT, UPDATE, DELETE ON {s}.{q(table)} TO {projector}")
    return statements


@dataclass(frozen=True)
class User:
    name: str
    kinds: tuple[str, ...]
    can_login: bool
    valid_until: str | None


def add_user(db: Any, name: str, kind: str, password: str) -> bool:
    """A login role in the group of `kind`, with this password; an existing login role is
    put in the group and given the password. Whether it was made."""
    name = role_name(name, "user name")
    if kind not in KINDS:
        raise RolesRefused(f"--role {kind!r}: one of {', '.join(KINDS)}")
    if not password or len(password) < 12:
        raise RolesRefused("the password must be at least 12 characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in password):
        raise RolesRefused("the password holds a control character (a newline in the file?)")
    groups = group_names(db)
    if name in groups.values():
        raise RolesRefused(f"{name} is one of the ledger's group roles, not a person's")
    with db.transaction() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('ledger_roles'))")
        cursor.execute(
            "SELECT rolsuper, rolcanlogin, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication"
            " FROM pg_roles WHERE rolname = ?",
            (name,),
        )
        found = cursor.fetchone()
        if found is not None and any(found[i] for i in (0, 2, 3, 4, 5)):
            raise RolesRefused(
                f"{name} is a superuser or may create roles or databases: no ledger process "
                "runs as such a role; choose another name"
            )
        cursor.execute(
            "SELECT 1 FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
            " WHERE r.rolname = ? LIMIT 1",
            (name,),
        )
        if cursor.fetchone() is not None:
            raise RolesRefused(f"{name} owns tables: no ledger process runs as an owner")
        verifier = scram_verifier(password)
        # the verifier is a literal (CREATE ROLE takes no parameters): base64 and `$:`, no quote
        assert "'" not in verifier
        if found is None:
            cursor.execute(
                f"CREATE ROLE {_quoted(name)} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE"
                f" PASSWORD '{verifier}'"
            )
        else:
            cursor.execute(f"ALTER ROLE {_quoted(name)} LOGIN PASSWORD '{verifier}'")
        cursor.execute(f"GRANT {_quoted(groups[kind])} TO {_quoted(name)}")
    return found is None


def users(db: Any) -> list[User]:
    """The roles in the store's groups (directly), each with its kinds."""
    groups = group_names(db)
    by_role = {n: k for k, n in groups.items()}
    rows = db.query(
        "SELECT m.rolname::text, g.rolname::text, m.rolcanlogin, m.rolvaliduntil::text"
        " FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid"
        " JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = ANY(?) ORDER BY 1, 2",
        (list(groups.values()),),
    )
    found: dict[str, tuple[list[str], bool, str | None]] = {}
    for member, group, login, until in rows:
        if member in by_role:  # the approver group is in the operator group
            continue
        kinds, _, _ = found.setdefault(str(member), ([], bool(login), until))
        kinds.append(by_role[str(group)])
    return [
        User(name, tuple(sorted(kinds, key=KINDS.index)), login, until)
        for name, (kinds, login, until) in found.items()
    ]
