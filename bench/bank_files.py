"""The banks' and the post office's files at national size, on a store the national benchmark
kept (`bench/national.py --keep DIR`): a period's export in each format, and the import of a
camt.054 notification of every line of it.

- the provinces' paying accounts proposed by the operator and approved by the approver (once);
- `payroll export --format csv`, `--format pain001` and `--format xlsx`, each of every
  province, timed with the peak memory the kernel reports for the command (its workers
  included), beside the largest file each wrote: a peak far below it is a file never held;
- a camt.054 of every line of the period (one booked entry per thousand transfers), written
  from the exported CSV files, and `ledger settle` of it. The period's lines were settled by the
  national benchmark, so every entry changes nothing: what is timed is reading, checking and
  matching every entry against its line (amount, channel, status), which is what a bank's file
  of the country costs before anything is recorded.

    LEDGER_CHAIN_KEY_FILE=DIR/chain.key LEDGER_CIPHER_KEY_FILE=DIR/cipher.keys \\
    python bench/bank_files.py --store postgresql://ledger@127.0.0.1:55432/bench_national_… \\
        --period 2025-08

Tests never assert timings; this prints them beside the targets.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from payroll_bench import attach, finish, ledger, start, stop_store  # noqa: E402

from ledger.months import format_month, parse_month  # noqa: E402
from ledger.reference import provinces  # noqa: E402

PER_ENTRY = 1000  # transfers booked together in one camt.054 entry


def paying_accounts(store: str, work: Path) -> str:
    """Every province in force given an account, proposed and approved by two people."""
    path = work / "accounts.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["province_code", "debtor_name", "bank_code", "account_number"])
        for n, code in enumerate(sorted(provinces())):
            writer.writerow([code, f"Sở LĐTBXH {code}", "AGRIBANK", f"150020{n:07d}"])
    done = finish(start(store, "paying-accounts", "import", str(path)))
    if done.status:
        raise SystemExit(done.stderr)
    if "proposed" in done.stdout:
        proposal = done.stdout.split("proposal ", 1)[1].split(" ", 1)[0]
        approved = finish(start(store, "reference", "approve", "--proposal", proposal))
        if approved.status:
            raise SystemExit(approved.stderr)
        return "proposed and approved"
    return "already in force"


def write_camt054(store: str, path: Path, periods: list[str]) -> int:
    """A debit notification of every bank transfer of the periods the bank paid (the lines the
    national benchmark settled PAID; those it FAILED are left out: a bank's notification names
    what it paid), streamed from the store's lines a thousand at a time."""
    import psycopg

    entries = 0
    with psycopg.connect(store) as conn, path.open("w", encoding="utf-8") as out:
        out.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="urn:iso:std:iso:20022:'
            'tech:xsd:camt.054.001.08"><BkToCstmrDbtCdtNtfctn><GrpHdr><MsgId>BENCH</MsgId>'
            f"<CreDtTm>{periods[-1]}-25T10:00:00+07:00</CreDtTm></GrpHdr><Ntfctn><Id>N</Id>\n"
        )
        with conn.cursor(name="lines") as lines:
            lines.itersize = 10_000
            lines.execute(
                "SELECT payment_id, period, total_amount FROM payment_lines WHERE channel = 'BANK'"
                " AND status = 'PAID' AND period = ANY(%s) ORDER BY payment_id",
                (periods,),
            )
            batch: list[str] = []
            booked = 0
            for payment_id, period, amount in lines:
                batch.append(
                    f"<TxDtls><Refs><EndToEndId>{payment_id}</EndToEndId>"
                    f"<AcctSvcrRef>B{entries}</AcctSvcrRef></Refs>"
                    f'<Amt Ccy="VND">{amount}</Amt></TxDtls>'
                )
                booked += amount
                entries += 1
                if len(batch) == PER_ENTRY:
                    out.write(_entry(booked, period, batch))
                    batch, booked = [], 0
            if batch:
                out.write(_entry(booked, periods[-1], batch))
        out.write("</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>\n")
    return entries


def _entry(amount: int, period: str, transactions: list[str]) -> str:
    return (
        f'<Ntry><Amt Ccy="VND">{amount}</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd>'
        f"</Sts><BookgDt><Dt>{period}-25</Dt></BookgDt><NtryDtls>{''.join(transactions)}"
        "</NtryDtls></Ntry>\n"
    )


def largest(folder: Path, pattern: str) -> float:
    sizes = [p.stat().st_size for p in folder.glob(pattern)]
    return max(sizes, default=0) / 2**20


Row = tuple[str, float, float, str, str]  # step, seconds, peak MiB, what, notes


def measure(store: str, period: str, jobs: str, work: Path) -> Iterator[Row]:
    """The steps on a store whose logins this process holds (`attach` or `make_store`), each
    given as it is done."""
    print(f"set-up: paying accounts {paying_accounts(store, work)}", file=sys.stderr)
    for form, pattern in (("csv", "*.csv"), ("pain001", "*.pain001.xml"), ("xlsx", "*.xlsx")):
        out = work / form
        seconds, peak, _ = ledger(
            store,
            *("payroll", "export", "--period", period, "--out", str(out)),
            *("--format", form, "--jobs", jobs),
        )
        files = list(out.glob(pattern))
        size = sum(p.stat().st_size for p in files) / 2**20
        largest_file = f"largest {largest(out, pattern):,.0f} MiB"
        yield f"export {form}", seconds, peak, f"{len(files)} files, {size:,.0f} MiB", largest_file
        shutil.rmtree(out, ignore_errors=True)
    notice = work / "notice.xml"
    months = [format_month(parse_month(period) - 1), period]
    entries = write_camt054(store, notice, months)
    seconds, peak, said = ledger(store, "settle", str(notice), "--jobs", jobs)
    read = f"{notice.stat().st_size / 2**20:,.0f} MiB"
    yield f"settle camt.054 ({entries:,} entries)", seconds, peak, read, said.strip()[-70:]
    notice.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="the kept store's owner URL")
    parser.add_argument("--period", required=True, metavar="YYYY-MM")
    parser.add_argument("--jobs", default="2")
    args = parser.parse_args()
    period = format_month(parse_month(args.period))
    work = Path(tempfile.mkdtemp(prefix="bench-bank-files-"))
    attach(args.store)
    print(f"bank files of {period} on {args.store.rsplit('@', 1)[-1]}")
    print(f"{'step':<42}{'seconds':>9}{'peak MiB':>10}  {'written / read':<20}notes", flush=True)
    try:
        for name, seconds, peak, what, note in measure(args.store, period, args.jobs, work):
            print(f"{name:<42}{seconds:>9.1f}{peak:>10.0f}  {what:<20}{note}", flush=True)
    finally:
        stop_store(args.store)
        shutil.rmtree(work, ignore_errors=True)
    print(
        "targets: memory flat in the number of lines (the peak below the largest file);"
        " no time target is set for these steps"
    )


if __name__ == "__main__":
    main()
