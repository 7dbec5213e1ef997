"""`ledger settle` reads the banks' own answers: a pain.002 status report, a camt.054 debit
notification and an MT940 statement, each built here as a bank would send it, told apart by
their content, matched on the payment id, and applied whole or not at all, with one line per
bad entry (file, entry, field): a payment we never sent, an amount other than the line's, a
status that is not one. Each gives the lines the CSV with the same results gives. On both
stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.application import Ledger
from ledger.inputs import InputRejected
from replay.explain import explain
from tests.bank_messages import camt054, message_id, mt940, pain002
from tests.conftest import Files, enrolment, settlement

pytestmark = pytest.mark.integration

PEOPLE = [f"0060{n:08d}" for n in range(6)]
PAY = [f"2025-07-01-{p}" for p in PEOPLE]
AMOUNT = 3_500_000  # each line: July and the arrears since January, coefficient 1.0


def _approved(ledger: Ledger, files: Files) -> None:
    rows = [
        enrolment(p, channel="BANK", bank_code="VCB", account_number=f"{9000000 + n}")
        for n, p in enumerate(PEOPLE)
    ]
    ledger.enrol(files.enrolments(rows), "maker")
    ledger.run_payroll("2025-07", "01", "maker")
    ledger.approve_payroll("2025-07", "01", "checker")


def _statuses(ledger: Ledger) -> dict[str, tuple[str, str | None]]:
    return {
        str(pid): (str(status), reason)
        for pid, status, reason in ledger.db.query(
            "SELECT payment_id, status, reason FROM payment_lines ORDER BY payment_id"
        )
    }


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_each_bank_format_gives_the_lines_the_csv_gives(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    _approved(ledger, files)
    report = pain002(
        [
            (PAY[0], "ACSC", "", AMOUNT),
            (PAY[1], "RJCT", "AC04", AMOUNT),
            (PAY[2], "ACSP", "", AMOUNT),  # on its way: settles nothing yet
            (PAY[3], "ACCC", "", AMOUNT),
        ],
        message_id(ledger.db.query, "2025-07", "01"),
    )
    applied = ledger.settle(_write(tmp_path, "status.xml", report), "bank")
    assert (applied.applied, applied.unchanged) == (3, 0)
    notice = camt054([([(PAY[2], AMOUNT), (PAY[4], AMOUNT)], False), ([(PAY[0], AMOUNT)], True)])
    assert ledger.settle(_write(tmp_path, "notice.xml", notice), "bank").applied == 3
    statement = mt940([("D", PAY[5], AMOUNT), ("RD", PAY[3], AMOUNT)])
    assert ledger.settle(_write(tmp_path, "statement.sta", statement), "bank").applied == 2
    # the same file again changes nothing
    again = ledger.settle(_write(tmp_path, "again.sta", statement), "bank")
    assert (again.applied, again.unchanged) == (0, 2)

    assert _statuses(ledger) == {
        PAY[0]: ("RETURNED", "AC04"),
        PAY[1]: ("FAILED", "AC04"),
        PAY[2]: ("PAID", ""),
        PAY[3]: ("RETURNED", "reversed"),
        PAY[4]: ("PAID", ""),
        PAY[5]: ("PAID", ""),
    }


def test_the_csv_path_gives_the_same_lines(ledger: Ledger, files: Files) -> None:
    """The CSV a bank could have sent instead, the same results in the same order."""
    _approved(ledger, files)
    paid = {"status": "PAID", "reference": "R"}
    for rows in (
        [
            settlement(PAY[0], **paid),
            settlement(PAY[1], status="FAILED", reason="AC04"),
            settlement(PAY[3], **paid),
        ],
        [
            settlement(PAY[2], **paid),
            settlement(PAY[4], **paid),
            settlement(PAY[0], status="RETURNED", reason="AC04"),
        ],
        [settlement(PAY[5], **paid), settlement(PAY[3], status="RETURNED", reason="reversed")],
    ):
        ledger.settle(files.settlements(rows), "bank")
    assert [s for s, _ in _statuses(ledger).values()] == [
        "RETURNED",
        "FAILED",
        "PAID",
        "RETURNED",
        "PAID",
        "PAID",
    ]


def test_a_bad_entry_refuses_the_whole_file_one_line_each(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    _approved(ledger, files)
    report = pain002(
        [
            (PAY[0], "ACSC", "", AMOUNT),  # fine on its own: not applied with the others
            ("2025-07-01-006099999999", "ACSC", "", AMOUNT),  # never sent
            (PAY[1], "ACSC", "", AMOUNT - 1),  # not the line's amount
            (PAY[2], "XXXX", "", AMOUNT),
            (PAY[3], "RJCT", "", AMOUNT),  # a failure says why
            ("2025-07-01-٠٠٦٠٠٠٠٠٠٠٠٤", "ACSC", "", AMOUNT),  # Arabic-Indic digits
        ],
        message_id(ledger.db.query, "2025-07", "01"),
    )
    with pytest.raises(InputRejected) as refused:
        ledger.settle(_write(tmp_path, "status.xml", report), "bank")
    assert refused.value.problems == [
        "status.xml: entry 2: payment_id: unknown payment 2025-07-01-006099999999",
        f"status.xml: entry 3: amount: 3,499,999 VND moved, but payment {PAY[1]} pays "
        "3,500,000 VND",
        "status.xml: entry 4: TxSts 'XXXX' is not a status of a payment (ACSC, ACCC or RJCT)",
        "status.xml: entry 5: reason: is required for FAILED",
        "status.xml: entry 6: payment_id: must be a payment id such as 2025-07-27-001234567890 "
        "(F appended for a funeral line), got '2025-07-01-٠٠٦٠٠٠٠٠٠٠٠٤'",
    ]
    assert {s for s, _ in _statuses(ledger).values()} == {"PENDING"}  # nothing applied


@pytest.mark.parametrize(
    "data",
    [
        # an entity that expands a thousandfold at each level
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10">&b;</Document>',
        # a file the system would read for the bank
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">&x;</Document>',
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"><Ntfctn>',
    ],
)
def test_hostile_xml_is_refused_in_one_line(
    ledger: Ledger, files: Files, tmp_path: Path, data: bytes
) -> None:
    _approved(ledger, files)
    with pytest.raises(InputRejected) as refused:
        ledger.settle(_write(tmp_path, "hostile.xml", data), "bank")
    (line,) = refused.value.problems
    assert line.startswith("hostile.xml: not readable as XML (")
    assert "root:" not in line


def test_a_payment_and_its_reversal_in_one_file_are_two_steps(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    """A bank's day: a transfer booked, then reversed. Both are recorded, in their order, each
    in an event of its own; the line ends RETURNED, and the person is owed the month again."""
    _approved(ledger, files)
    notice = camt054([([(PAY[0], AMOUNT), (PAY[1], AMOUNT)], False), ([(PAY[0], AMOUNT)], True)])

    applied = ledger.settle(_write(tmp_path, "notice.xml", notice), "bank")

    assert (applied.applied, applied.unchanged) == (3, 0)
    assert _statuses(ledger)[PAY[0]] == ("RETURNED", "AC04")
    steps = [(s.previous_status, s.status) for s in explain(ledger, PEOPLE[0]).lines[0].settlements]
    assert steps == [("PENDING", "PAID"), ("PAID", "RETURNED")]
    assert explain(ledger, PEOPLE[0]).balance.owed == AMOUNT


def _notice(entries: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!-- urn:iso:std:iso:20022:tech:xsd:pain.002.'
        '001.10 -->\n<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">'
        "<BkToCstmrDbtCdtNtfctn><GrpHdr><MsgId>N</MsgId><CreDtTm>2025-08-06T18:00:00+07:00"
        f"</CreDtTm></GrpHdr><Ntfctn><Id>N</Id>{entries}</Ntfctn></BkToCstmrDbtCdtNtfctn>"
        "</Document>\n"
    ).encode()


def _entry(amount: str, details: str, currency: str = "VND") -> str:
    return (
        f'<Ntry><Amt Ccy="{currency}">{amount}</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK'
        f"</Cd></Sts><BookgDt><Dt>2025-08-06</Dt></BookgDt><NtryDtls>{details}</NtryDtls>"
        "</Ntry>"
    )


def _tx(pid: str, amount: str | None) -> str:
    moved = f'<Amt Ccy="VND">{amount}</Amt>' if amount is not None else ""
    return (
        f"<TxDtls><Refs><EndToEndId>{pid}</EndToEndId><AcctSvcrRef>R-{pid[-4:]}</AcctSvcrRef>"
        f"</Refs>{moved}</TxDtls>"
    )


def test_what_a_bank_could_slip_through_is_refused(
    ledger: Ledger, files: Files, tmp_path: Path
) -> None:
    """Each a way a bank's file could settle what it should not: transfers without their
    amounts, amounts that do not add up to their entry's, another currency, a post-office
    line, one payment paid twice, and a report of another message's transfers. (The comment
    naming another format does not fool the detection: the root element does.)"""
    ledger.enrol(files.enrolments([enrolment("006100000001"), enrolment("006100000002")]), "maker")
    _approved(ledger, files)
    post = "2025-07-01-006100000001"
    notice = _notice(
        _entry(str(2 * AMOUNT), _tx(PAY[0], None) + _tx(PAY[1], None))
        + _entry(str(AMOUNT), _tx(PAY[2], str(AMOUNT)) + _tx(PAY[3], str(AMOUNT)))
        + _entry(str(AMOUNT), _tx(PAY[4], str(AMOUNT)), currency="USD")
        + _entry(str(AMOUNT), _tx(post, str(AMOUNT)))
        + _entry(str(AMOUNT), _tx(PAY[5], str(AMOUNT)))
        + _entry(str(AMOUNT), _tx(PAY[5], str(AMOUNT)))
    )
    with pytest.raises(InputRejected) as refused:
        ledger.settle(_write(tmp_path, "notice.xml", notice), "bank")
    found = refused.value.problems
    assert found[:2] == [
        "notice.xml: entry 1: amount: is required: the amount the bank moved, in VND",
        "notice.xml: entry 2: amount: is required: the amount the bank moved, in VND",
    ]
    assert found[2].startswith("notice.xml: entry 3: amount: the entry's transactions add up")
    assert found[3].startswith("notice.xml: entry 4: amount: the entry's transactions add up")
    assert found[4] == "notice.xml: entry 5: Amt: in 'USD', not VND: the ledger pays in VND"
    assert found[5] == (
        f"notice.xml: entry 6: payment_id: {post} is paid by the post office, not a bank: the "
        "post office's results settle it"
    )
    assert found[6] == (
        f"notice.xml: entry 8: status: {PAY[5]} is already PAID by an entry before in this "
        "file: a bank pays (or returns) a payment once"
    )
    assert len(found) == 7
    report = pain002([(PAY[0], "ACSC", "", AMOUNT)], "2025-07-01-0000000000000000")
    with pytest.raises(InputRejected, match=r"entry 1: instruction: it answers the transfers"):
        ledger.settle(_write(tmp_path, "status.xml", report), "bank")
    assert {s for s, _ in _statuses(ledger).values()} == {"PENDING"}


@pytest.mark.parametrize(
    ("name", "data", "said"),
    [
        (
            "digits.sta",  # a payment id inside a longer number is none
            mt940([("D", PAY[0] + "9", AMOUNT)]),
            "digits.sta: entry 1: no payment id in its reference or :86: text",
        ),
        (
            "amount.sta",
            b":20:S\n:25:1\n:28C:1/1\n:60F:C250731VND1,\n:61:2508070807D1,,,NTRFX//Y\n:86:x\n",
            "amount.sta: not readable as an MT940 statement (",
        ),
        (
            "empty.sta",
            b":20:S\n:25:1\n:28C:1/1\n:60F:C250731VND1,\n:62F:C250731VND1,\n",
            "empty.sta: a MT940 file of no payment's entry: nothing to settle in it",
        ),
        (
            "euro.sta",
            mt940([("D", PAY[0], AMOUNT)]).replace(b"VND", b"EUR"),
            "euro.sta: entry 1: in 'EUR', not VND: the ledger pays in VND",
        ),
        (
            "encoding.xml",
            b'<?xml version="1.0" encoding="x-unknown"?><Document/>',
            "encoding.xml: not readable as XML (",
        ),
    ],
)
def test_a_statement_that_cannot_be_read_is_one_line(
    ledger: Ledger, files: Files, tmp_path: Path, name: str, data: bytes, said: str
) -> None:
    _approved(ledger, files)
    with pytest.raises(InputRejected) as refused:
        ledger.settle(_write(tmp_path, name, data), "bank")
    assert refused.value.problems[0].startswith(said), refused.value.problems
