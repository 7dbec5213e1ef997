"""The national population register as the ledger holds it: the people of every extract
loaded (`ledger population import`), each as the latest extract that named them gives them,
and the extracts themselves (their date, their SHA-256, who loaded them). Not a read model: it
comes from outside, not from the events. On PostgreSQL only the owner writes it; every ledger
role reads it (`ledger init`'s grants)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.service_layer.ports import Extract
from ledger.views import in_chunks, marks

EXTRACTS = "population_extracts"
REGISTER = "population_register"

SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {EXTRACTS} (extract_no INTEGER PRIMARY KEY,"
    " extract_date TEXT NOT NULL, file_sha256 TEXT NOT NULL UNIQUE, file_name TEXT NOT NULL,"
    " rows_read BIGINT NOT NULL, added BIGINT NOT NULL, changed BIGINT NOT NULL,"
    " loaded_at TEXT NOT NULL, loaded_by TEXT NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {REGISTER} (personal_id TEXT PRIMARY KEY,"
    " full_name TEXT NOT NULL, name_key TEXT NOT NULL, date_of_birth TEXT NOT NULL,"
    " sex TEXT NOT NULL, date_of_death TEXT, extract_no INTEGER NOT NULL)",
)


_EXTRACT = ", ".join(Extract._fields)


def create_schema(cursor: Any) -> None:
    for statement in SCHEMA:
        cursor.execute(statement)


class RegisterTables:
    """The register in the store's database (the `PopulationRegister` port)."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def latest(self) -> Extract | None:
        found = self.db.query(f"SELECT {_EXTRACT} FROM {EXTRACTS} ORDER BY extract_no DESC LIMIT 1")
        return Extract(*found[0]) if found else None

    def extract_of(self, digest: str) -> Extract | None:
        found = self.db.query(f"SELECT {_EXTRACT} FROM {EXTRACTS} WHERE file_sha256 = ?", (digest,))
        return Extract(*found[0]) if found else None

    def load(self, staged: Any, loaded: Extract) -> Extract:
        """The staged people (the valid rows of an extract, `personal_id, full_name, name_key,
        date_of_birth, sex, date_of_death`) put in the register, set-based and in one
        transaction with the extract's own row: the people it names are as it gives them,
        everyone else as before. The extract, numbered and counted."""
        s = staged.table
        differs = (
            "(r.full_name <> s.full_name OR r.date_of_birth <> s.date_of_birth OR r.sex <> s.sex"
            " OR COALESCE(r.date_of_death, '') <> COALESCE(s.date_of_death, ''))"
        )
        with self.db.transaction(lock=REGISTER) as cursor:
            cursor.execute(f"SELECT COALESCE(MAX(extract_no), 0) + 1 FROM {EXTRACTS}")
            number = int(cursor.fetchone()[0])
            cursor.execute(
                f"SELECT COUNT(*) FROM {s} s JOIN {REGISTER} r ON r.personal_id = s.personal_id"
                f" WHERE s.applicable = 1 AND {differs}"
            )
            changed = int(cursor.fetchone()[0])
            cursor.execute(
                f"SELECT COUNT(*) FROM {s} s WHERE s.applicable = 1 AND NOT EXISTS"
                f" (SELECT 1 FROM {REGISTER} r WHERE r.personal_id = s.personal_id)"
            )
            added = int(cursor.fetchone()[0])
            cursor.execute(
                f"UPDATE {REGISTER} AS r SET full_name = s.full_name, name_key = s.name_key,"
                " date_of_birth = s.date_of_birth, sex = s.sex,"
                " date_of_death = NULLIF(s.date_of_death, ''), extract_no = ?"
                f" FROM {s} s WHERE r.personal_id = s.personal_id AND s.applicable = 1"
                f" AND {differs}",
                (number,),
            )
            cursor.execute(
                f"INSERT INTO {REGISTER} (personal_id, full_name, name_key, date_of_birth, sex,"
                " date_of_death, extract_no) SELECT s.personal_id, s.full_name, s.name_key,"
                " s.date_of_birth, s.sex, NULLIF(s.date_of_death, ''), ?"
                f" FROM {s} s WHERE s.applicable = 1 AND NOT EXISTS"
                f" (SELECT 1 FROM {REGISTER} r WHERE r.personal_id = s.personal_id)",
                (number,),
            )
            done = loaded._replace(extract_no=number, added=added, changed=changed)
            cursor.execute(
                f"INSERT INTO {EXTRACTS} ({_EXTRACT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                tuple(done),
            )
        return done

    def mismatches(self, staged: Any) -> Any:
        """Each staged enrolment row (`row_number, personal_id, full_name, name_key,
        date_of_birth`) the register contradicts: (row, personal id, its name, its date of
        birth, held (0/1), the register's name, name key, date of birth, date of death)."""
        return staged.stream(
            "SELECT s.row_number, s.personal_id, s.full_name, s.name_key, s.date_of_birth,"
            " CASE WHEN r.personal_id IS NULL THEN 0 ELSE 1 END, r.full_name, r.name_key,"
            f" r.date_of_birth, r.date_of_death FROM {{staged}} s LEFT JOIN {REGISTER} r"
            " ON r.personal_id = s.personal_id WHERE s.applicable = 1 AND (r.personal_id IS NULL"
            " OR r.name_key <> s.name_key OR r.date_of_birth <> s.date_of_birth"
            " OR r.date_of_death IS NOT NULL) ORDER BY s.row_number"
        )

    def held(self, personal_ids: Sequence[str]) -> set[str]:
        """Which of these people the register holds."""
        return {
            str(r[0])
            for chunk in in_chunks(personal_ids)
            for r in self.db.query(
                f"SELECT personal_id FROM {REGISTER} WHERE personal_id IN ({marks(chunk)})", chunk
            )
        }
