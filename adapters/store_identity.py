"""A store's identity: a random id made once, with the store's tables, and never changed.

Every message the publisher puts on `ledger.events` carries it (the `ledger.store_id`
header), so that a topic shared by two stores by mistake is named as such by `publish` and
`project`, instead of one store's read models being written from another's events."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

import psycopg

from adapters.store import StoreUrlError

TABLE = "store_identity"
HEADER = "ledger.store_id"
SCHEMA = f"CREATE TABLE IF NOT EXISTS {TABLE} (store_id TEXT PRIMARY KEY)"


def create_schema(cursor: Any) -> None:
    """The table and the store's id, made once (a second call keeps the first id)."""
    cursor.execute(SCHEMA)
    cursor.execute(
        f"INSERT INTO {TABLE} (store_id) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM {TABLE})",
        (str(uuid.uuid4()),),
    )


def store_id(db: Any) -> str:
    """This store's id; a store made by an earlier version is given one by `ledger init`."""
    try:
        rows = db.query(f"SELECT store_id FROM {TABLE}")
    except (sqlite3.Error, psycopg.Error):  # no table: a store of an earlier version
        rows = []
    if len(rows) != 1:
        raise StoreUrlError(
            "the store has no identity yet (it was made by an earlier version): run `ledger "
            "init` once as the database owner"
        )
    return str(rows[0][0])
