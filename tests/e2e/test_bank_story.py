"""Two months through the command line, three times, the banks answering July in a different
form each time: the contract's CSV; a pain.002 status report with a camt.054 notification;
a pain.002 with an MT940 statement. The post office answers in its CSV each time. Whatever the
form, July's lines end in the same states, and August's lists (which pay July's failures
again as arrears) are the same files, byte for byte. July is exported for the banks as
pain.001, from the province's paying account, and for the post office as xlsx."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.bank_messages import camt054, message_id, mt940, pain002
from tests.conftest import Files, enrolment, settlement
from tests.e2e.support import Cli

pytestmark = pytest.mark.e2e

BANK = [f"0070{n:08d}" for n in range(4)]
POST = [f"0071{n:08d}" for n in range(2)]
PAY = {p: f"2025-07-01-{p}" for p in BANK + POST}
NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}
ACCOUNTS = (
    "province_code,debtor_name,bank_code,account_number\n01,Sở LĐTBXH Hà Nội,VCB,1234567890\n"
)


def _bank_answers(form: str, root: Path, files: Files) -> list[Path]:
    """July's bank results: BANK[0] and BANK[3] paid, BANK[1] rejected, BANK[2] paid and then
    returned; in the form asked for."""
    b0, b1, b2, b3 = (PAY[p] for p in BANK)
    if form == "csv":
        return [
            files.settlements(
                [
                    settlement(b0, "PAID", settled_at="2025-08-05T09:30:00+07:00"),
                    settlement(b1, "FAILED", reason="AC04", settled_at="2025-08-05T09:30:00+07:00"),
                    settlement(b2, "PAID", settled_at="2025-08-05T09:30:00+07:00"),
                    settlement(b3, "PAID", settled_at="2025-08-05T09:30:00+07:00"),
                ]
            ),
            files.settlements([settlement(b2, "RETURNED", reason="AC04")]),
        ]
    # the bank answers the transfers it was sent: the message, each transfer and its amount,
    # read from the pain.001 the export wrote
    sent = ElementTree.parse(root / "july" / "2025-07_01_BANK.pain001.xml").getroot()
    message = sent.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:MsgId", namespaces=NS) or ""
    amount = {
        tx.findtext("p:PmtId/p:EndToEndId", namespaces=NS): int(
            tx.findtext("p:Amt/p:InstdAmt", namespaces=NS) or ""
        )
        for tx in sent.iterfind("p:CstmrCdtTrfInitn/p:PmtInf/p:CdtTrfTxInf", NS)
    }
    assert sorted(amount) == [b0, b1, b2, b3] and message == message_id(
        Cli(root).query, "2025-07", "01"
    )
    report = pain002([(b1, "RJCT", "AC04", amount[b1]), (b0, "ACSP", "", amount[b0])], message)
    if form == "camt054":
        rest = camt054(
            [
                ([(b0, amount[b0]), (b2, amount[b2])], False),
                ([(b3, amount[b3])], False),
                ([(b2, amount[b2])], True),
            ]
        )
        name = "notice.xml"
    else:
        rest = mt940([("D", b0, amount[b0]), ("D", b2, amount[b2]), ("D", b3, amount[b3])])
        rest += mt940([("RD", b2, amount[b2])])  # the next day's statement
        name = "statement.sta"
    (root / "status.xml").write_bytes(report)
    (root / name).write_bytes(rest)
    return [root / "status.xml", root / name]


def _two_months(root: Path, form: str) -> tuple[dict[str, str], dict[str, bytes]]:
    cli = Cli(root)
    files = Files(root)
    people = [
        enrolment(p, channel="BANK", bank_code=("VCB", "BIDV")[n % 2], account_number=f"9{n}00000")
        for n, p in enumerate(BANK)
    ] + [enrolment(p) for p in POST]
    for step in (
        ("enrol", files.enrolments(people)),
        ("paying-accounts", "import", write_csv_text(root / "accounts.csv", ACCOUNTS)),
        ("reference", "approve", "--proposal", "1", "--by", "checker"),
        ("payroll", "run", "--period", "2025-07", "--by", "maker"),
        ("payroll", "approve", "--period", "2025-07", "--by", "checker"),
        (
            "payroll",
            "export",
            "--period",
            "2025-07",
            "--out",
            "july",
            "--format",
            "csv",
            "--format",
            "pain001",
            "--format",
            "xlsx",
        ),
        ("exports", "check", "july"),
    ):
        done = cli(*step, *(("--by", "maker") if step[0] in ("enrol", "paying-accounts") else ()))
        assert done.code == 0, done
        if step[0] == "paying-accounts":  # the operator is told the approval that is taken
            assert "`ledger reference approve --proposal 1 --by USER`" in done.stdout + done.stderr
    post = files.settlements(
        [settlement(PAY[POST[0]], "PAID"), settlement(PAY[POST[1]], "RETURNED", reason="absent")]
    )
    for answer in [post, *_bank_answers(form, root, files)]:
        done = cli("settle", answer, "--by", "bank")
        assert done.code == 0, done
    for step in (
        ("payroll", "run", "--period", "2025-08", "--by", "maker"),
        ("payroll", "approve", "--period", "2025-08", "--by", "checker"),
        ("payroll", "export", "--period", "2025-08", "--out", "august"),
    ):
        done = cli(*step)
        assert done.code == 0, done
    statuses = dict(
        cli.query("SELECT payment_id, status FROM payment_lines WHERE period = '2025-07'")
    )
    # the files (a manifest names its store's chain head, which is each store's own)
    august = {p.name: p.read_bytes() for p in sorted((root / "august").glob("*.csv"))}
    return statuses, august


def write_csv_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_lists_are_the_same_whichever_form_the_banks_answer_in(tmp_path: Path) -> None:
    found = {}
    for form in ("csv", "camt054", "mt940"):
        (tmp_path / form).mkdir()
        found[form] = _two_months(tmp_path / form, form)

    statuses, august = found["csv"]
    assert statuses == {
        PAY[BANK[0]]: "PAID",
        PAY[BANK[1]]: "FAILED",
        PAY[BANK[2]]: "RETURNED",
        PAY[BANK[3]]: "PAID",
        PAY[POST[0]]: "PAID",
        PAY[POST[1]]: "RETURNED",
    }
    # August pays July again to the three whose July did not arrive
    assert list(august) == ["2025-08_01_BANK.csv", "2025-08_01_POST.csv"]
    assert b",3500000,4000000\n" in august["2025-08_01_BANK.csv"]  # July's failure, again
    for form in ("camt054", "mt940"):
        assert found[form] == (statuses, august), form
