"""The files the banks and the post office take: a province's bank transfers as ISO 20022
pain.001.001.09, valid against the official schema, with sums the test recomputes; its post
office lines as a spreadsheet of strings and numbers, never a formula; both covered by their
manifests, written again byte for byte, and refused whole without the province's paying
account, which only a second person puts in force. On both stores."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import defaultdict
from pathlib import Path
from xml.etree import ElementTree

import openpyxl
import pytest
import sepaxml
import xmlschema

from ledger.application import Ledger
from ledger.inputs import InputRejected
from ledger.rules import RuleViolation
from tests.conftest import Files, enrolment, write_csv

pytestmark = pytest.mark.integration

XSD = Path(sepaxml.__file__).parent / "schemas" / "pain.001.001.09.xsd"
NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}
ACCOUNT_COLUMNS = ("province_code", "debtor_name", "bank_code", "account_number")
HANOI = ["01", "Sở Lao động - Thương binh và Xã hội Hà Nội", "AGRIBANK", "1500201012345"]
BANKS = ("VCB", "BIDV", "ACB")


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def _people(ledger: Ledger, files: Files) -> None:
    """Twelve people of province 01: nine paid by bank in three banks (one whose name a
    spreadsheet would run, one with a name longer than a transfer holds), three by post."""
    rows = []
    for n in range(12):
        pid = f"0050{n:08d}"
        extra = {}
        if n < 9:
            extra = {
                "channel": "BANK",
                "bank_code": BANKS[n % 3],
                "account_number": f"{1000000 + n}",
            }
        if n == 1:
            extra["full_name"] = '=HYPERLINK("http://x","y") & <b>'
        if n == 2:
            extra["full_name"] = "Nguyễn " + "Văn " * 40 + "An"
        if n == 10:
            extra["full_name"] = "+84 Bà Tư"
        rows.append(enrolment(pid, coefficient=str(1.0 + (n % 3) * 0.5), **extra))
    ledger.enrol(files.enrolments(rows), "maker")
    ledger.run_payroll("2025-07", "01", "maker")
    ledger.approve_payroll("2025-07", "01", "checker")


def _account_row(values: list[str]) -> dict[str, str]:
    return dict(zip(ACCOUNT_COLUMNS, values, strict=True))


def _accounts(ledger: Ledger, tmp_path: Path, rows: list[list[str]]) -> None:
    path = write_csv(tmp_path / "accounts.csv", ACCOUNT_COLUMNS, [_account_row(r) for r in rows])
    proposed = ledger.import_paying_accounts(path, "olga").proposal
    assert proposed is not None
    ledger.approve_reference_changes("anh", [proposed.proposal_id])


def _csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_the_banks_file_is_valid_and_its_sums_hold(
    ledger: Ledger, files: Files, tmp_path: Path, schema: xmlschema.XMLSchema
) -> None:
    _people(ledger, files)
    _accounts(ledger, tmp_path, [HANOI])
    out = tmp_path / "out"

    ledger.export_payroll("2025-07", "01", out, ["csv", "pain001", "xlsx"])

    xml = out / "2025-07_01_BANK.pain001.xml"
    schema.validate(str(xml))  # the official schema of pain.001.001.09
    bank_lines = _csv_rows(out / "2025-07_01_BANK.csv")
    root = ElementTree.parse(xml).getroot()
    header = root.find("p:CstmrCdtTrfInitn/p:GrpHdr", NS)
    assert header is not None
    blocks = root.findall("p:CstmrCdtTrfInitn/p:PmtInf", NS)
    transfers: dict[str, list[tuple[str, int, str, str, str]]] = defaultdict(list)
    for block in blocks:
        bank = block.findtext("p:DbtrAgt/p:FinInstnId/p:ClrSysMmbId/p:MmbId", namespaces=NS)
        assert bank == "AGRIBANK"  # paid from the province's account
        assert block.findtext("p:DbtrAcct/p:Id/p:Othr/p:Id", namespaces=NS) == HANOI[3]
        assert block.findtext("p:Dbtr/p:Nm", namespaces=NS) == HANOI[1]
        mine = []
        for tx in block.findall("p:CdtTrfTxInf", NS):
            amount = tx.find("p:Amt/p:InstdAmt", NS)
            assert amount is not None and amount.get("Ccy") == "VND"
            mine.append(
                (
                    tx.findtext("p:PmtId/p:EndToEndId", namespaces=NS) or "",
                    int(amount.text or ""),
                    tx.findtext("p:CdtrAgt/p:FinInstnId/p:ClrSysMmbId/p:MmbId", namespaces=NS)
                    or "",
                    tx.findtext("p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=NS) or "",
                    tx.findtext("p:Cdtr/p:Nm", namespaces=NS) or "",
                )
            )
        # each block's count and sum are its transfers', all of one creditor bank
        assert block.findtext("p:NbOfTxs", namespaces=NS) == str(len(mine))
        assert block.findtext("p:CtrlSum", namespaces=NS) == str(sum(t[1] for t in mine))
        assert len({t[2] for t in mine}) == 1
        transfers[mine[0][2]] = mine
    assert sorted(transfers) == sorted(BANKS)  # one block per creditor bank
    every = sorted(t for mine in transfers.values() for t in mine)
    assert header.findtext("p:NbOfTxs", namespaces=NS) == str(len(every)) == "9"
    assert header.findtext("p:CtrlSum", namespaces=NS) == str(sum(t[1] for t in every))
    # the same transfers as the bank CSV: payment id, amount, bank, account, the name (cut
    # at 140 characters, its markup text)
    assert every == sorted(
        (
            r["payment_id"],
            int(r["total_amount"]),
            r["bank_code"],
            r["account_number"],
            r["payee_name"].removeprefix("'")[:140],
        )
        for r in bank_lines
    )

    manifest = json.loads((out / "2025-07_01_BANK.pain001.manifest.json").read_text())
    assert manifest["format"] == "pain001" and manifest["file"] == xml.name
    assert manifest["rows"] == 9 and manifest["total_amount"] == sum(t[1] for t in every)
    assert manifest["sha256"] == hashlib.sha256(xml.read_bytes()).hexdigest()


def test_the_post_offices_sheet_holds_the_csv_as_strings_and_numbers(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    _people(ledger, files)
    out = tmp_path / "out"

    ledger.export_payroll("2025-07", "01", out, ["csv", "xlsx"])

    assert not (out / "2025-07_01_BANK.xlsx").exists()  # the sheet is the post office's
    sheet = openpyxl.load_workbook(out / "2025-07_01_POST.xlsx").active
    assert sheet is not None
    cells = [list(row) for row in sheet.iter_rows()]
    assert all(c.data_type in ("s", "n") for row in cells for c in row if c.value is not None)
    values = [[c.value for c in row] for row in cells]
    lines = _csv_rows(out / "2025-07_01_POST.csv")
    header, body, total = values[0], values[1:-1], values[-1]
    assert header == list(lines[0])
    amounts = {"regular_amount", "funeral_amount", "arrears_amount", "total_amount"}
    assert body == [
        [int(v) if k in amounts else (v or None) for k, v in line.items()] for line in lines
    ]
    assert any(str(v).startswith("'+84") for row in body for v in row)  # never run
    assert total[0] == "total of 3 lines"
    for i, name in enumerate(header):
        if name in amounts:
            assert total[i] == sum(int(line[name]) for line in lines)
    manifest = json.loads((out / "2025-07_01_POST.xlsx.manifest.json").read_text())
    data = (out / "2025-07_01_POST.xlsx").read_bytes()
    assert (manifest["format"], manifest["rows"]) == ("xlsx", 3)
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()


def test_every_format_is_written_again_byte_for_byte(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    _people(ledger, files)
    _accounts(ledger, tmp_path, [HANOI])
    formats = ["csv", "pain001", "xlsx"]

    ledger.export_payroll("2025-07", "01", tmp_path / "a", formats)
    ledger.export_payroll("2025-07", "01", tmp_path / "b", formats)

    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(names) == 8  # 2 CSV, a pain.001 and a sheet, each with its manifest
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_bank_transfers_without_a_paying_account_are_refused_whole(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    _people(ledger, files)
    path = write_csv(tmp_path / "accounts.csv", ACCOUNT_COLUMNS, [_account_row(HANOI)])
    ledger.import_paying_accounts(path, "olga")  # proposed, not in force

    with pytest.raises(RuleViolation, match="no paying account is in force for 01"):
        ledger.export_payroll("2025-07", "01", tmp_path / "out", ["csv", "pain001"])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

    with pytest.raises(InputRejected, match="olga proposed it and cannot approve it"):
        ledger.approve_reference_changes("olga", ["1"])
    # never in a sweep of every pending change: by its id, once read
    with pytest.raises(InputRejected, match="approved by the proposal's id, once read"):
        ledger.approve_reference_changes("anh")
    assert ledger.paying_accounts() == {}
    ledger.approve_reference_changes("anh", ["1"])
    assert [a.account_number for a in ledger.paying_accounts().values()] == [HANOI[3]]
    ledger.export_payroll("2025-07", "01", tmp_path / "out", ["pain001"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "2025-07_01_BANK.pain001.manifest.json",
        "2025-07_01_BANK.pain001.xml",
    ]


def test_a_paying_accounts_file_is_reported_whole_and_imported_once(
    ledger: Ledger, tmp_path: Path
) -> None:
    bad = write_csv(
        tmp_path / "bad.csv",
        ACCOUNT_COLUMNS,
        [
            _account_row(["01", "A", "NOPE", "12"]),
            _account_row(["02", "B", "VCB", "1234567"]),  # merged in 2025
            _account_row(["01", "", "VCB", "1234567"]),
            _account_row(["79", "C\u202e", "VCB", "1234567"]),
            _account_row(["48", "D" * 141, "VCB", "1234567"]),
        ],
    )
    with pytest.raises(InputRejected) as refused:
        ledger.import_paying_accounts(bad, "olga")
    assert [line.split(": ")[1:3] for line in refused.value.problems] == [
        ["row 2", "account_number"],
        ["row 2", "bank_code"],
        ["row 3", "province_code"],
        ["row 4", "debtor_name"],
        ["row 4", "province_code"],
        ["row 5", "debtor_name"],
        ["row 6", "debtor_name"],
    ]
    assert ledger.paying_accounts() == {}

    good = write_csv(tmp_path / "good.csv", ACCOUNT_COLUMNS, [_account_row(HANOI)])
    first = ledger.import_paying_accounts(good, "olga")
    assert first.proposal is not None and first.unchanged is None
    again = ledger.import_paying_accounts(good, "oanh")
    assert again.unchanged == "already proposed, waiting for approval"
    ledger.approve_reference_changes("anh", [first.proposal.proposal_id])
    assert ledger.import_paying_accounts(good, "olga").unchanged == "already in force"


def test_exports_check_holds_every_format_to_the_record(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    """Before anything is sent: each file of each format and its manifest equal the record;
    a changed byte of the banks' file, a sheet without its manifest, and a pain.001 whose
    province's paying account changed since are each named."""
    from replay.exports_check import check_exports

    _people(ledger, files)
    _accounts(ledger, tmp_path, [HANOI])
    out = tmp_path / "out"
    ledger.export_payroll("2025-07", "01", out, ["csv", "pain001", "xlsx"])

    checked = check_exports(ledger, out)
    assert checked.ok, checked.lines()
    assert (checked.checked, checked.equal) == (8, 8)

    xml = out / "2025-07_01_BANK.pain001.xml"
    xml.write_bytes(xml.read_bytes().replace(b"<NbOfTxs>9</NbOfTxs>", b"<NbOfTxs>8</NbOfTxs>", 1))
    (out / "2025-07_01_POST.xlsx.manifest.json").unlink()
    found = check_exports(ledger, out).lines()
    assert any(line.startswith("2025-07_01_BANK.pain001.xml: its bytes differ") for line in found)
    assert (
        "2025-07_01_POST.xlsx: no manifest beside it: a payment file is never sent without one"
        in found
    )

    ledger.export_payroll("2025-07", "01", out, ["pain001"])  # written again: equal
    assert check_exports(ledger, out).lines() == [
        "2025-07_01_POST.xlsx: no manifest beside it: a payment file is never sent without one"
    ]
    _accounts(ledger, tmp_path, [[*HANOI[:3], "1500201099999"]])
    found = check_exports(ledger, out).lines()
    assert (
        "2025-07_01_BANK.pain001.xml: its bytes differ from the file the recorded lines give "
        "(a file of another format is compared whole): do not send it" in found
    )
