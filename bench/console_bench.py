"""How fast the console's pages answer on a store of national size (target: every page under
300 ms on this machine), beside the database's own floor (a round trip of `SELECT 1`).

Given a PostgreSQL store made by the benchmarks (e.g. `bench/national.py --keep DIR`), as its
owner's URL: makes a login role in the approver and auditor groups (`ledger users add`), starts
`ledger console` on it, logs in over HTTP, and times each page: the payroll of a period, the
largest province's list beside the month before, the totals' charts, a person's explanation
and a search by name, the receivables, the audit trail (whole, of a person, of an actor, since
a day). Each page once apart (the console process's first answer of a page compiles its
template and imports its code: shown, not judged), then --runs times. The receivables and a
national province's list beside the month before are worked out in the background once: the
time that takes is shown apart, then their page is timed like the others. Prints the median
and the slowest of each, and whether the target is met. Tests never assert timings; this does.

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
from urllib.parse import quote

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


def facts(owner: str, period: str) -> tuple[str, str, str, str]:
    """The largest province of the period, the beginning of a person's name, the latest
    actor and the day of the latest event: what the pages are asked for."""
    with psycopg.connect(owner) as con:
        (province,) = con.execute(
            "SELECT province_code FROM payment_lists WHERE period = %s"
            " ORDER BY line_count DESC LIMIT 1",
            (period,),
        ).fetchone() or ("01",)
        (name,) = con.execute(
            "SELECT full_name FROM beneficiaries ORDER BY personal_id LIMIT 1 OFFSET 5000"
        ).fetchone() or ("Nguyễn",)
        actor, day = con.execute(
            "SELECT actor, substr(recorded_at, 1, 10) FROM audit_trail"
            " ORDER BY notification_id DESC LIMIT 1"
        ).fetchone() or ("nobody", "2025-01-01")
    return str(province), " ".join(str(name).split()[:2]), str(actor), str(day)


def worked_out(client: httpx.Client, path: str) -> float:
    """Seconds until the receivables are worked out (the page stops refreshing)."""
    started = time.perf_counter()
    while 'http-equiv="refresh"' in client.get(path).text:
        time.sleep(0.5)
    return time.perf_counter() - started


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
    province, named, actor, day = facts(args.store, args.period)
    pages = {
        "payroll of the period": f"/payroll?period={args.period}",
        f"list of {province} vs month before": (
            f"/payroll/list?period={args.period}&province={province}"
        ),
        "totals and charts": f"/totals?period={args.period}",
        "a person explained": f"/person?id={person}",
        "people found by name": f"/person?id={quote(named)}",
        "receivables (worked out)": f"/receivables?period={args.period}",
        "audit trail (newest 50)": "/audit",
        "audit trail of a person": f"/audit?person={person}",
        "audit trail of an actor": f"/audit?actor={quote(actor)}",
        "audit trail since a day": f"/audit?since={day}",
    }
    rows = []
    with console(args.store) as base:
        client: httpx.Client = logged_in(base, name, password)
        background = worked_out(client, f"/receivables?period={args.period}")
        review = worked_out(client, pages[f"list of {province} vs month before"])
        for what, path in pages.items():
            times = []
            for _ in range(args.runs + 1):  # the first, apart: the process's first of a page
                started = time.perf_counter()
                answer = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                if answer.status_code != 200:
                    raise SystemExit(f"{path}: {answer.status_code}")
            rows.append((what, times[0], statistics.median(times[1:]), max(times[1:])))
    floor = floor_ms(args.store, 50)
    print(f"console pages on {args.store.rsplit('@', 1)[-1]}, {args.runs} runs each")
    print(f"{'page':<34}{'first ms':>9}{'median ms':>10}{'max ms':>9}  target (on the max)")
    for what, first, median, slowest in rows:
        verdict = "met" if slowest <= TARGET_MS else "MISSED"
        print(
            f"{what:<34}{first:>9.0f}{median:>10.0f}{slowest:>9.0f}  ≤ {TARGET_MS:.0f} ms {verdict}"
        )
    print(f"{'floor: SELECT 1':<34}{floor:>10.2f}")
    print("worked out in the background (no target: a page shows how far it is meanwhile):")
    print(f"  the receivables in {background:.1f} s, the list of {province} in {review:.1f} s")


if __name__ == "__main__":
    main()
