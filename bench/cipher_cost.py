"""What sealing personal data costs (adapters/personal_data.py), for a national volume.

The ledger cannot run without it, so the national benchmark's steps include it; this measures
it apart, in the store's own transcoder, with and without the sealing: N enrolment events
written (as `enrol` writes them) and read back (as a projection, `verify` and `replay` read
them), and N payment lines in events of a thousand (as `payroll approve` writes them and an
export reads them). The difference is the cost; the national steps it adds to are named.

    python bench/cipher_cost.py [--people N]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventsourcing.persistence import DatetimeAsISO  # noqa: E402

from adapters.cipher_keys import KeyRing, cipher_key_id  # noqa: E402
from adapters.personal_data import PersonalData  # noqa: E402
from adapters.transcoder import LedgerTranscoder  # noqa: E402
from ledger.rules import ISSUED_FIELDS  # noqa: E402

LINES_AN_EVENT = 1000


def enrolment_state(i: int) -> dict[str, Any]:
    return {
        "timestamp": datetime(2025, 7, 1, tzinfo=UTC),
        "originator_topic": "ledger.aggregates:Beneficiary",
        "personal_id": f"{i:012d}",
        "full_name": "Nguyễn Thị Ánh Hồng",
        "date_of_birth": "1941-03-07",
        "sex": "F",
        "province_code": "01",
        "commune_code": "00001",
        "category": "elderly_80_plus_no_pension",
        "coefficient": "1.0",
        "effective_month": "2025-07",
        "channel": "BANK",
        "bank_code": "VCB",
        "account_number": f"9704{i:012d}",
        "decision_ref": "6840/QĐ-UBND",
        "actor": "operator.nguyen",
        "source": f"enrolment.csv row {i + 2}",
    }


def lines_state(first: int) -> dict[str, Any]:
    lines = [
        [f"2025-07-01-{i:012d}", "2025-07", "01", "00001", "REGULAR", f"{i:012d}", f"{i:012d}",
         "Nguyễn Thị Ánh Hồng", "BANK", "VCB", f"9704{i:012d}", 500000, 0, 0, 500000, None]
        for i in range(first, first + LINES_AN_EVENT)
    ]  # fmt: skip
    return {
        "timestamp": datetime(2025, 7, 1, tzinfo=UTC),
        "columns": list(ISSUED_FIELDS),
        "lines": lines,
        "actor": "approver.tran",
        "source": "payroll approve",
    }


def transcoders() -> tuple[LedgerTranscoder, LedgerTranscoder]:
    """(plain, sealing) transcoders, with the store's transcodings (the timestamp's)."""
    key = secrets.token_bytes(32)
    ring = KeyRing({cipher_key_id(key): key}, "the bench's key")
    made = LedgerTranscoder(), LedgerTranscoder(PersonalData(lambda: ring))
    for t in made:
        t.register(DatetimeAsISO())
    return made


def timed(work: Callable[[], list[Any]]) -> tuple[float, list[Any]]:
    started = time.perf_counter()
    done = work()
    return time.perf_counter() - started, done


Row = tuple[str, float, float, int, str]  # what, seconds plain, seconds sealed, events, step


def write_and_read(
    make: Callable[[int], dict[str, Any]],
    starts: range,
    chunk: int,
    bulk: bool,
    what: str,
    steps: str,
) -> list[Row]:
    """Each state written by both transcoders, then read back by the one that wrote it, a
    `chunk` at a time, so that memory stays flat at any size (making them is not timed)."""
    plain, sealing = transcoders()
    spent = {"write": [0.0, 0.0], "read": [0.0, 0.0]}
    for first in range(0, len(starts), chunk):
        states = [make(i) for i in starts[first : first + chunk]]
        for n, t in enumerate((plain, sealing)):
            encode = t.encode_text if bulk else t.encode
            s, data = timed(lambda e=encode, xs=states: [e(dict(x)) for x in xs])  # type: ignore[misc]
            spent["write"][n] += s
            s, _ = timed(lambda d=data, t=t: [t.decode(x) for x in d])  # type: ignore[misc]
            spent["read"][n] += s
    write_step, read_step = steps.split("|")
    return [
        (f"write {what}", *spent["write"], len(starts), write_step),  # type: ignore[list-item]
        (f"read {what}", *spent["read"], len(starts), read_step),  # type: ignore[list-item]
    ]


def measure(people: int) -> list[Row]:
    rows = write_and_read(
        enrolment_state, range(people), 50_000, True, "enrolment events",
        "enrol|project, verify, replay",
    )  # fmt: skip
    rows += write_and_read(
        lines_state, range(0, people, LINES_AN_EVENT), 50, False,
        "line events (1,000 lines)", "payroll approve|export, settle, verify",
    )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=3_800_000)
    args = parser.parse_args()
    print(f"sealing personal data, {args.people:,} people (one process, no database)")
    print(f"{'what':<34}{'plain s':>9}{'sealed s':>10}{'cost s':>8}{'µs/event':>10}  adds to")
    for what, plain_s, sealed_s, events, step in measure(args.people):
        per = (sealed_s - plain_s) / events * 1e6
        print(
            f"{what:<34}{plain_s:>9.1f}{sealed_s:>10.1f}{sealed_s - plain_s:>8.1f}{per:>10.1f}"
            f"  {step}"
        )


if __name__ == "__main__":
    main()
