"""`exports check`, on both stores: before anything is sent, every payment file and manifest in
a folder is proved equal to what the store recorded, and each difference is one finding: a
changed byte, a changed manifest field, a file without its manifest (or the reverse), a file
of a list never approved, a chain head the store does not have. A payee name a spreadsheet
would evaluate is written with a leading `'`, the same way by the export, `replay
--check-issued` and the check."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from adapters.export_files import StagedExport
from ledger.application import ExportedFile, Ledger
from replay.as_of import Cut, check_issued
from replay.exports_check import check_exports
from tests.conftest import Files, enrolment

pytestmark = pytest.mark.integration

PERIOD = "2025-07"
POST = [f"00100000010{i}" for i in range(3)]
BANK = [f"00100000020{i}" for i in range(2)]
# what a spreadsheet would evaluate: each written with a leading '
FORMULAS = {POST[0]: '=HYPERLINK("http://x.example","Nhận")', BANK[0]: "@SUM(A1:A9)"}


def export_with_head(ledger: Ledger, period: str, out: Path) -> list[ExportedFile]:
    """`payroll export`, with the chain head in every manifest (as the export is wired to
    give it: `EventStore.chain_head`, read when the files are put in place)."""

    def staged(out_dir: Path, **options: Any) -> StagedExport:
        options.setdefault("chain_head", ledger.events.chain_head)
        return StagedExport(out_dir, **options)

    ledger.ports.export = staged
    return ledger.export_payroll(period, None, out)


def approve(ledger: Ledger, files: Files) -> None:
    rows = [enrolment(p, full_name=FORMULAS.get(p, f"Người {p[-4:]}")) for p in POST]
    rows += [
        enrolment(
            p,
            full_name=FORMULAS.get(p, f"Người {p[-4:]}"),
            channel="BANK",
            bank_code="VCB",
            account_number=f"0071{p[-4:]}",
        )
        for p in BANK
    ]
    ledger.enrol(files.enrolments(rows), "maker")
    ledger.run_payroll(PERIOD, "01", "maker")
    ledger.approve_payroll(PERIOD, "01", "checker")


@pytest.fixture
def out(ledger: Ledger, files: Files, tmp_path: Path) -> Path:
    approve(ledger, files)
    folder = tmp_path / "exports" / PERIOD  # checked from the folder above: searched below
    assert len(export_with_head(ledger, PERIOD, folder)) == 2
    return folder


def findings(ledger: Ledger, folder: Path) -> list[str]:
    return check_exports(ledger, folder.parent).lines()


def manifest(folder: Path, channel: str) -> tuple[Path, dict[str, Any]]:
    path = folder / f"{PERIOD}_01_{channel}.manifest.json"
    return path, json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def test_exported_files_equal_the_record(ledger: Ledger, out: Path) -> None:
    result = check_exports(ledger, out.parent)
    assert result.lines() == []
    assert (result.checked, result.equal) == (4, 4)
    _, post = manifest(out, "POST")
    assert post["chain_head"] == ledger.events.chain_head().as_json()
    # the formulas are written so that no spreadsheet evaluates them...
    names = {
        row["personal_id"]: row["payee_name"]
        for channel in ("POST", "BANK")
        for row in csv.DictReader(
            io.StringIO((out / f"{PERIOD}_01_{channel}.csv").read_text(encoding="utf-8"))
        )
    }
    assert {p: names[p] for p in FORMULAS} == {p: "'" + name for p, name in FORMULAS.items()}
    assert names[POST[1]] == f"Người {POST[1][-4:]}"
    # ...and `replay --check-issued` gives the same bytes from the read models
    verdicts = [c.verdict for c in check_issued(ledger, Cut.of(ledger.today()), out.parent)]
    assert verdicts == ["equal", "equal"]


def test_a_changed_byte_in_a_payment_file_is_found(ledger: Ledger, out: Path) -> None:
    path = out / f"{PERIOD}_01_BANK.csv"
    data = bytearray(path.read_bytes())
    data[data.index(b"0071")] = ord("9")  # one digit of an account number
    path.write_bytes(bytes(data))
    found = findings(ledger, out)
    assert found == [
        f"{PERIOD}/{path.name}: its bytes differ from the file the recorded lines give (from "
        "line 2): do not send it"
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("total_amount", 1),
        ("rows", 99),
        ("approved_by", "maker"),
        ("approved_at", "2025-07-01T00:00:00+00:00"),
        ("lines_digest", "0" * 64),
        ("sha256", "0" * 64),
        ("channel", "BANK"),
    ],
)
def test_a_changed_manifest_field_is_found(ledger: Ledger, out: Path, key: str, value: Any) -> None:
    path, data = manifest(out, "POST")
    data[key] = value
    write_json(path, data)
    found = findings(ledger, out)
    assert len(found) == 1, found
    assert found[0].startswith(f"{PERIOD}/{path.name}: {key} is {value!r}; the record gives ")


def test_a_payment_file_without_its_manifest_is_found(ledger: Ledger, out: Path) -> None:
    path, _ = manifest(out, "BANK")
    path.unlink()
    result = check_exports(ledger, out.parent)
    assert result.lines() == [
        f"{PERIOD}/{PERIOD}_01_BANK.csv: no manifest beside it: a payment file is never sent "
        "without one"
    ]
    assert (result.checked, result.equal) == (3, 2)


def test_a_manifest_without_its_payment_file_is_found(ledger: Ledger, out: Path) -> None:
    (out / f"{PERIOD}_01_POST.csv").unlink()
    assert findings(ledger, out) == [
        f"{PERIOD}/{PERIOD}_01_POST.manifest.json: its payment file {PERIOD}_01_POST.csv is "
        "not beside it"
    ]


def test_a_missing_channel_of_a_list_is_found(ledger: Ledger, out: Path) -> None:
    for name in (f"{PERIOD}_01_BANK.csv", f"{PERIOD}_01_BANK.manifest.json"):
        (out / name).unlink()
    assert findings(ledger, out) == [
        f"{PERIOD}/{PERIOD}_01_BANK.csv: missing: list {PERIOD} 01 has 2 BANK lines, and this "
        "folder has its other files"
    ]


def test_the_files_of_a_list_never_approved_are_found(ledger: Ledger, out: Path) -> None:
    """Province 01's files copied as province 02's, which was never approved."""
    shutil.copy(out / f"{PERIOD}_01_POST.csv", out / f"{PERIOD}_02_POST.csv")
    _, data = manifest(out, "POST")
    data.update(file=f"{PERIOD}_02_POST.csv", province_code="02")
    write_json(out / f"{PERIOD}_02_POST.manifest.json", data)
    never = f"list {PERIOD} 02 was never approved: this file must not be sent"
    assert findings(ledger, out) == [
        f"{PERIOD}/{PERIOD}_02_POST.manifest.json: {never}",
        f"{PERIOD}/{PERIOD}_02_POST.csv: {never}",
    ]


def test_a_chain_head_the_store_does_not_have_is_found(ledger: Ledger, out: Path) -> None:
    path, data = manifest(out, "POST")
    n = data["chain_head"]["notification_id"]
    data["chain_head"]["chain_hash"] = "0" * 64
    write_json(path, data)
    bank_path, bank = manifest(out, "BANK")
    bank["chain_head"]["notification_id"] = n + 1000
    write_json(bank_path, bank)
    assert findings(ledger, out) == [
        f"{PERIOD}/{bank_path.name}: chain_head: notification {n + 1000} named by "
        f"{bank_path.name} is missing: the history after {n} was removed",
        f"{PERIOD}/{path.name}: chain_head: notification {n} named by {path.name} has another "
        "link in the store than the one recorded: the history up to it was rewritten",
    ]


def test_a_manifest_without_a_chain_head_is_found(ledger: Ledger, out: Path) -> None:
    path, data = manifest(out, "POST")
    del data["chain_head"]
    write_json(path, data)
    assert findings(ledger, out) == [
        f"{PERIOD}/{path.name}: it names no chain head: it was not written by this ledger's export"
    ]
