"""How fast the console's pages answer on a store of national size (target: every page under
300 ms on this machine), beside the database's own floor (a round trip of `SELECT 1`).

Given a PostgreSQL store made by the benchmarks (e.g. `bench/national.py --keep DIR`), as its
owner's URL: makes a login role in the approver and auditor groups (`ledger users add`), starts
`ledger console` on it, logs in over HTTP, and times each page --runs times: the payroll of a
period, a person's explanation, the receivables, the audit trail (whole, of a person, of an
actor). Prints the median and the slowest of each, and whether the target is met. Tests never
assert timings; this does.

    python bench/console_bench.py --store postgresql://OWNER@HOST:PORT/DB --period 2025-07
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from console_server import console, logged_in  # noqa: E402

TARGET_MS = 300.0


def add_login(owner: str, name: str) -> str:
    """A login role in the approver and auditor groups of the store; its password."""
    password = secrets.token_urlsafe(18)
    with tempfile.NamedTemporaryFile("w", suffix=".password") as file:
        file.write(password + "\n")
        file.flush()
        for role in ("approver", "auditor"):
            subprocess.run(
                [sys.executable, "-m", "ledger.cli", "users", "add", name, "--role", role,
                 "--password-file", file.name, "--store", owner],
                check=True, capture_output=True,
            )  # fmt: skip
    return password


def a_person(owner: str, period: str) -> str:
    with psycopg.connect(owner) as con:
        row = con.execute(
            "SELECT personal_id FROM payment_lines WHERE period = %s ORDER BY payment_id"
            " LIMIT 1 OFFSET 1000",
            (period,),
        ).fetchone()
    if row is None:
        raise SystemExit(f"no payment line of {period} in the store")
    return str(row[0])


def floor_ms(owner: str, runs: int) -> float:
    with psycopg.connect(owner) as con:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            con.execute("SELECT 1").fetchone()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="the store's owner URL")
    parser.add_argument("--period", required=True, metavar="YYYY-MM")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    name = "bench_console"
    password = add_login(args.store, name)
    person = a_person(args.store, args.period)
    pages = {
        "payroll of the period": f"/payroll?period={args.period}",
        "a person explained": f"/person?id={person}",
        "receivables": f"/receivables?period={args.period}",
        "audit trail (newest 50)": "/audit",
        "audit trail of a person": f"/audit?person={person}",
        "audit trail of an actor": f"/audit?actor={name}",
    }
    rows = []
    with console(args.store) as base:
        client: httpx.Client = logged_in(base, name, password)
        for what, path in pages.items():
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                answer = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                if answer.status_code != 200:
                    raise SystemExit(f"{path}: {answer.status_code}")
            rows.append((what, statistics.median(times), max(times)))
    floor = floor_ms(args.store, 50)
    print(f"console pages on {args.store.rsplit('@', 1)[-1]}, {args.runs} runs each")
    print(f"{'page':<28}{'median ms':>10}{'max ms':>9}  target")
    for what, median, slowest in rows:
        verdict = "met" if slowest <= TARGET_MS else "MISSED"
        print(f"{what:<28}{median:>10.0f}{slowest:>9.0f}  ≤ {TARGET_MS:.0f} ms {verdict}")
    print(f"{'floor: SELECT 1':<28}{floor:>10.2f}")


if __name__ == "__main__":
    main()
