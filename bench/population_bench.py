"""The population register at scale, on PostgreSQL: an extract of R people loaded, and what its
check adds to an enrolment of E of them.

Set-up (not measured): two fresh stores made as an operator would (`ledger init`, the roles'
logins, `ledger project` following); an extract of R people and an enrolment file of the first
E of them, from the same seeded generator as the national benchmark (so that every enrolled
person is in the register, as they are in a country).
Measured: `ledger population import` of the extract (time and peak memory, beside the
database's floor: a COPY of the same rows into a table of the same shape); then `ledger enrol`
of the same file on the store with the register and on the one without: the difference is
what the identity check costs, scaled to a national enrolment of 3.8 M.

    python bench/population_bench.py [--register R] [--enrol E] [--jobs N]

Tests never assert timings; this prints them beside the targets.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from national import drop, people, services_url, write_enrolment  # noqa: E402
from payroll_bench import chain_key, ledger, make_store, stop_store  # noqa: E402

from ledger.inputs import POPULATION_COLUMNS  # noqa: E402

NATIONAL = 3_800_000


def write_extract(path: Path, count: int, seed: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(POPULATION_COLUMNS)
        for row in people(count, seed):
            writer.writerow([row[0], row[1], row[2], row[3], ""])


def copy_floor(url: str, path: Path) -> float:
    """PostgreSQL's own: the extract's bytes copied into a table of the register's shape."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        con.execute(
            "CREATE TEMP TABLE floor_register (personal_id TEXT PRIMARY KEY, full_name TEXT,"
            " date_of_birth TEXT, sex TEXT, date_of_death TEXT)"
        )
        started = time.perf_counter()
        with (
            con.cursor() as cur,
            cur.copy("COPY floor_register FROM STDIN (FORMAT CSV, HEADER true)") as copy,
            path.open("rb") as f,
        ):
            while block := f.read(1 << 20):
                copy.write(block)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--register", type=int, default=3_000_000)
    parser.add_argument("--enrol", type=int, default=380_000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=20250701)
    args = parser.parse_args()
    if args.enrol > args.register:
        raise SystemExit("--enrol must be at most --register: the enrolled are in the register")
    os.environ.setdefault("LEDGER_READ_TIMEOUT", "3600")
    os.environ.setdefault("LEDGER_LOCK_TIMEOUT", "900")
    work = Path(tempfile.mkdtemp(prefix="bench-population-"))
    chain_key(work, keep=False)
    checked, unchecked = services_url(), services_url()
    try:
        for url in (checked, unchecked):
            make_store(url)
        extract, enrolment = work / "register.csv", work / "enrolment.csv"
        write_extract(extract, args.register, args.seed)
        write_enrolment(enrolment, args.enrol, args.seed)
        print(f"set-up: {args.register:,} people in {extract}", file=sys.stderr)
        floor = copy_floor(checked, extract)
        jobs = ("--jobs", str(args.jobs))
        load_s, load_mib, said = ledger(
            checked, "population", "import", str(extract), "--date", "2025-06-30", *jobs
        )
        print(said.strip(), file=sys.stderr)
        with_s, with_mib, _ = ledger(checked, "enrol", str(enrolment), *jobs)
        without_s, without_mib, _ = ledger(unchecked, "enrol", str(enrolment), *jobs)
    finally:
        for url in (checked, unchecked):
            stop_store(url)
            drop(url)
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\npopulation register: {args.register:,} people, enrolment of {args.enrol:,}, "
        f"PostgreSQL, {args.jobs} workers, {os.cpu_count()} cores"
    )
    print(f"{'step':<44}{'seconds':>9}{'rows/s':>11}{'peak MiB':>10}")
    rows = [
        ("floor: COPY of the extract (PostgreSQL)", floor, args.register, 0.0),
        ("population import", load_s, args.register, load_mib),
        ("enrol, identities checked", with_s, args.enrol, with_mib),
        ("enrol, no register", without_s, args.enrol, without_mib),
    ]
    for name, seconds, count, peak in rows:
        print(f"{name:<44}{seconds:>9.1f}{count / seconds:>11,.0f}{peak:>10.0f}")
    added = with_s - without_s
    share = added / without_s if without_s else 0.0
    national = with_s * NATIONAL / args.enrol
    print(
        f"the check adds {added:.1f} s to this enrolment ({share:+.0%}); a national enrolment "
        f"checked, scaled: about {national:,.0f} s (target ≤ 300 s: "
        f"{'met' if national <= 300 else 'MISSED'}); the import's peak memory: {load_mib:.0f} MiB "
        f"for {args.register:,} people"
    )


if __name__ == "__main__":
    main()
