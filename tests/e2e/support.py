"""Drives the real `ledger` command in a subprocess, as an operator would, and reads what it
leaves behind: its output, the exported files and the embedded store's tables."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from projections.readmodels import READ_MODEL_TABLES
from tests.conftest import events_table, query_store
from tests.roles import as_role

_SCRIPT = Path(sys.executable).with_name("ledger")
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "ledger.cli"]

EXPORT_HEADER = (
    "payment_id,period,province_code,commune_code,kind,personal_id,payee_personal_id,"
    "payee_name,channel,bank_code,account_number,regular_amount,funeral_amount,"
    "arrears_amount,total_amount"
)
NOTHING_CHANGED = "nothing was changed"

# Every table the ledger writes: a refused command must leave all of them as they were.
TABLES = (*READ_MODEL_TABLES, "projection_position")


@dataclass(frozen=True, repr=False)
class Run:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def problems(self) -> list[str]:
        """stderr lines that report a problem (the closing 'nothing was changed' is not one)."""
        return [
            line
            for line in self.stderr.splitlines()
            if line.strip() and not line.startswith(NOTHING_CHANGED)
        ]

    def __repr__(self) -> str:  # shown by pytest when an assertion fails
        return (
            f"ledger {' '.join(self.args)} -> exit {self.code}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


class Cli:
    """The `ledger` command on one store (embedded by default), run from `root`."""

    def __init__(self, root: Path, store: str | None = None, init: bool = True) -> None:
        """`init`: run `ledger init` on the store before the first command that needs one,
        as an operator does once (False: the store is left missing)."""
        self.root = root
        self.store = store or f"sqlite:///{root / 'store' / 'ledger.sqlite'}"
        self.initialised = not init
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("LEDGER_STORE", "LEDGER_KAFKA", "LEDGER_USER", "FORCE_COLOR")
        }
        env.update(NO_COLOR="1", PYTHONIOENCODING="utf-8")
        self.env = env

    def __call__(self, *args: str | Path, store: bool = True) -> Run:
        argv = [str(a) for a in args]
        if store and not self.initialised and argv[:1] not in (["init"], ["demo"]):
            self.initialised = True
            made = self("init")
            assert made.code == 0, made
        if store:
            argv += ["--store", self.store]
        shown = list(argv)
        argv, env = as_role(argv, self.env)  # on PostgreSQL: as the role the command needs
        done = subprocess.run(
            [*COMMAND, *argv],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=120,
        )
        return Run(tuple(shown), done.returncode, done.stdout, done.stderr)

    # What the store holds

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return query_store(self.store, sql, params)

    def snapshot(self) -> dict[str, Any]:
        """Everything stored: the event count and every read-model table, row by row."""
        state: dict[str, Any] = {
            "stored_events": self.query(f"SELECT COUNT(*) FROM {events_table(self.store)}")[0][0]
        }
        for table in TABLES:
            state[table] = sorted(self.query(f"SELECT * FROM {table}"), key=repr)
        return state

    def count(self, table: str) -> int:
        return int(self.query(f"SELECT COUNT(*) FROM {table}")[0][0])

    def statuses(self, period: str | None = None) -> dict[str, str]:
        rows = self.query(
            "SELECT payment_id, status FROM payment_lines"
            " WHERE CAST(? AS TEXT) IS NULL OR period = ?",
            (period, period),
        )
        return dict(rows)


# Reading outputs


def table_rows(stdout: str) -> list[list[str]]:
    """The body rows of the rich tables the command prints, as stripped cells."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in stdout.splitlines()
        if line.strip().startswith("│")
    ]


def payroll_summary(stdout: str) -> dict[str, dict[str, Any]]:
    """`payroll run/approve` output: province code (or 'all') -> its columns."""
    summary = {}
    for cells in table_rows(stdout):
        if len(cells) != 8:
            continue
        code = cells[0].split(" ", 1)[0]
        summary[code] = {
            "status": cells[1],
            "lines": int(cells[2].replace(",", "")),
            "total": int(cells[3].replace(",", "")),
            "receivables": int(cells[5].replace(",", "")),
            "drafted_by": cells[6],
            "approved_by": cells[7],
        }
    return summary


def vnd(text: str) -> int:
    return int(text.replace(",", ""))


@dataclass(frozen=True)
class Export:
    path: Path
    data: bytes
    rows: list[dict[str, str]]
    manifest: dict[str, Any]

    @property
    def header(self) -> str:
        return self.data.decode("utf-8").splitlines()[0]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def read_export(out_dir: Path, stem: str) -> Export:
    path = out_dir / f"{stem}.csv"
    data = path.read_bytes()
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    manifest = json.loads((out_dir / f"{stem}.manifest.json").read_text(encoding="utf-8"))
    return Export(path, data, rows, manifest)


def amounts(row: dict[str, str]) -> tuple[int, int, int, int]:
    return (
        int(row["regular_amount"]),
        int(row["funeral_amount"]),
        int(row["arrears_amount"]),
        int(row["total_amount"]),
    )


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
