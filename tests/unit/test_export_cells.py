"""Safe export cells (OWASP's advice on CSV injection): a text cell that a spreadsheet would
evaluate (it begins with =, +, -, @, a tab or a carriage return) is written with a leading `'`;
amounts are never touched, and a line never pays a negative amount. A file with no such cell
keeps the bytes it always had. The export, `replay --check-issued` and `exports check` write
through the same function."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

import replay.as_of
import replay.exports_check
from adapters import export_files
from adapters.chain import ChainHead
from adapters.export_files import StagedExport, export_bytes, list_files
from adapters.payment_cells import safe_cell
from ledger.rules import LINE, LINE_FIELDS, RuleViolation
from ledger.service_layer.ports import Approval

APPROVAL = Approval("2025-07", "01", "checker", "2025-08-01T02:00:00+00:00", "d" * 64)
HEADER = ",".join(LINE_FIELDS) + "\n"


def line(payment: str = "2025-07-01-001000000001", **fields: object) -> tuple[object, ...]:
    row: dict[str, object] = {
        "payment_id": payment,
        "period": "2025-07",
        "province_code": "01",
        "commune_code": "00001",
        "kind": "REGULAR",
        "personal_id": payment[-12:],
        "payee_personal_id": payment[-12:],
        "payee_name": "Nguyễn Thị Lan",
        "channel": "POST",
        "bank_code": "",
        "account_number": "",
        "regular_amount": 500000,
        "funeral_amount": 0,
        "arrears_amount": 0,
        "total_amount": 500000,
    }
    row.update(fields)
    return tuple(row[name] for name in LINE_FIELDS)


def read(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_cell_a_spreadsheet_would_evaluate_gets_a_quote(start: str) -> None:
    assert safe_cell(f"{start}1+1") == f"'{start}1+1"


@pytest.mark.parametrize("text", ["", "Lan", " =1+1", "a=b", "'=already", "０=", "84-123"])
def test_other_cells_are_unchanged(text: str) -> None:
    assert safe_cell(text) == text


def test_a_file_without_such_a_cell_keeps_its_bytes() -> None:
    rows = [
        line(),
        line(
            "2025-07-01-001000000002",
            payee_name='Trần "Út", Hà',
            channel="BANK",
            bank_code="VCB",
            account_number="0071000002",
        ),
    ]
    data, count, total = export_bytes(rows)
    assert data == (
        HEADER + "2025-07-01-001000000001,2025-07,01,00001,REGULAR,001000000001,001000000001,"
        "Nguyễn Thị Lan,POST,,,500000,0,0,500000\n"
        + "2025-07-01-001000000002,2025-07,01,00001,REGULAR,001000000002,001000000002,"
        '"Trần ""Út"", Hà",BANK,VCB,0071000002,500000,0,0,500000\n'
    ).encode("utf-8")
    assert (count, total) == (2, 1_000_000)


def test_every_text_column_is_made_safe_and_no_amount_is() -> None:
    texts = {name: f"=x{i}" for i, name in enumerate(LINE_FIELDS) if "amount" not in name}
    data, _, _ = export_bytes([line(**texts)])
    (_, cells) = read(data)
    for name, text in texts.items():
        assert cells[LINE[name]] == "'" + text
    assert cells[LINE["total_amount"]] == "500000"


@pytest.mark.parametrize("amount", [-1, "500000", "=1+1", 1.5, True, None])
def test_an_amount_that_is_not_a_whole_positive_number_is_refused(amount: object) -> None:
    with pytest.raises(RuleViolation, match="arrears_amount"):
        export_bytes([line(arrears_amount=amount)])


def test_a_carriage_return_inside_a_cell_does_not_end_the_row() -> None:
    """Python's writer leaves a bare \\r unquoted when the line ends with \\n: the rest of the
    cell would be read as a new row, beginning with whatever follows (here a formula)."""
    data, _, _ = export_bytes([line(payee_name="Lan\r=cmd|' /C calc'!A0")])
    rows = read(data)
    assert len(rows) == 2
    assert rows[1][LINE["payee_name"]] == "Lan\r=cmd|' /C calc'!A0"
    assert data.endswith(b",500000\n") and b"\r\n" not in data


def test_a_list_is_split_by_channel_each_file_ordered_by_payment_id() -> None:
    rows = [
        line("2025-07-01-001000000003"),
        line("2025-07-01-001000000002", channel="BANK", bank_code="VCB", account_number="1"),
        line("2025-07-01-001000000001"),
    ]
    files = list_files(APPROVAL, rows)
    assert [(f.channel, f.name, f.rows) for f in files] == [
        ("BANK", "2025-07_01_BANK.csv", 1),
        ("POST", "2025-07_01_POST.csv", 2),
    ]
    post = read(files[1].data)
    assert [r[0] for r in post[1:]] == ["2025-07-01-001000000001", "2025-07-01-001000000003"]


def test_manifests_carry_the_chain_head_read_when_the_files_are_put_in_place(
    tmp_path: Path,
) -> None:
    reads: list[int] = []

    def head() -> ChainHead:
        reads.append(1)
        return ChainHead(42, "ab" * 32, "0123456789abcdef")

    staged = StagedExport(tmp_path, chain_head=head)
    staged.add_list(APPROVAL, [line()])
    assert reads == []  # not before every list was read
    staged.commit()
    manifest = json.loads((tmp_path / "2025-07_01_POST.manifest.json").read_text("utf-8"))
    assert manifest["chain_head"] == {
        "notification_id": 42,
        "chain_hash": "ab" * 32,
        "key_id": "0123456789abcdef",
    }
    assert list(manifest)[: len(export_files.MANIFEST_KEYS)] == list(export_files.MANIFEST_KEYS)
    # without a head (the former call), the manifest is as it was
    plain = StagedExport(tmp_path / "plain")
    plain.add_list_file(APPROVAL, "POST", [line()])
    plain.commit()
    assert "chain_head" not in json.loads(
        (tmp_path / "plain" / "2025-07_01_POST.manifest.json").read_text("utf-8")
    )


def test_a_discarded_export_leaves_nothing(tmp_path: Path) -> None:
    staged = StagedExport(tmp_path, chain_head=ChainHead(1, "00" * 32, "k"))
    staged.add_list(APPROVAL, [line()])
    staged.discard()
    staged.commit()
    assert list(tmp_path.iterdir()) == []


def test_the_checks_write_through_the_export_s_own_functions() -> None:
    assert replay.as_of.export_bytes is export_files.export_bytes
    assert replay.exports_check.list_files is export_files.list_files
