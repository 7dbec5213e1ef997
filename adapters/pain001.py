"""A province's bank transfers as an ISO 20022 credit-transfer initiation (`pain.001.001.09`),
the file a bank (and Vietnam's clearing house) takes: one payment information block per
creditor bank, each transfer's `EndToEndId` the payment id, amounts in whole VND, and the
number of transfers and their sum (`NbOfTxs`, `CtrlSum`) in the group header and in each block.

Written from the lines the approval recorded, in payment-id order within each bank's block. The
bytes depend on nothing but the approval and its lines (the message id and creation time are
the approval's), so that the file written again is the same file.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from typing import IO, Any, BinaryIO
from xml.sax.saxutils import escape

from ledger.rules import LINE, RuleViolation, transfer_message_id
from ledger.service_layer.ports import Approval, PayingAccount
from ledger.values import vietnam_day

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
MAX_TEXT = 140  # Max140Text: a longer name is cut there (the account number is the key)
SPOOLED = 1 << 20  # a bank's transfers kept in memory up to this, on disk beyond

# the characters XML 1.0 cannot hold: every text recorded was refused them, checked again here
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

_FIELDS = {
    name: LINE[name]
    for name in ("payment_id", "period", "kind", "payee_name", "bank_code", "account_number")
}
_TOTAL = LINE["total_amount"]


def _text(value: str, payment_id: str, field: str) -> str:
    if _NOT_XML.search(value):
        raise RuleViolation(
            f"payment {payment_id}: {field} holds a character an XML file cannot: nothing was "
            "written; run `ledger verify`"
        )
    return escape(value[:MAX_TEXT])


def _agent(bank_code: str) -> str:
    return f"<FinInstnId><ClrSysMmbId><MmbId>{escape(bank_code)}</MmbId></ClrSysMmbId></FinInstnId>"


def _account(number: str) -> str:
    return f"<Id><Othr><Id>{escape(number)}</Id></Othr></Id>"


class _Bank:
    """One creditor bank's transfers, spooled until the block's header can be written."""

    def __init__(self) -> None:
        # closed once copied into the file (`CreditTransfers.finish`)
        self.transfers: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOLED)  # noqa: SIM115
        self.count = 0
        self.total = 0


class CreditTransfers:
    """A list's BANK lines (LINE_FIELDS rows, in payment-id order) as a pain.001 file written
    into `out`, a line at a time; `finish` writes it and gives its number of transfers and
    their total."""

    def __init__(self, approval: Approval, debtor: PayingAccount | None, out: BinaryIO) -> None:
        self.approval = approval
        self.debtor = debtor
        self.out = out
        self.banks: dict[str, _Bank] = {}
        self.count = self.total = 0

    def add(self, row: Sequence[Any]) -> None:
        pid = str(row[_FIELDS["payment_id"]])
        if self.debtor is None:
            raise RuleViolation(
                f"payroll {self.approval.period} {self.approval.province_code}: no paying "
                "account is in force for the province, and its bank transfers need one: "
                "propose it with `ledger paying-accounts import FILE.csv` and have it approved"
            )
        amount = row[_TOTAL]
        bank_code = str(row[_FIELDS["bank_code"]])
        bank = self.banks.get(bank_code)
        if bank is None:
            bank = self.banks[bank_code] = _Bank()
        remittance = f"{row[_FIELDS['period']]} {row[_FIELDS['kind']]}"
        bank.transfers.write(
            (
                f"<CdtTrfTxInf><PmtId><EndToEndId>{escape(pid)}</EndToEndId></PmtId>"
                f'<Amt><InstdAmt Ccy="VND">{int(amount)}</InstdAmt></Amt>'
                f"<CdtrAgt>{_agent(bank_code)}</CdtrAgt>"
                f"<Cdtr><Nm>{_text(str(row[_FIELDS['payee_name']]), pid, 'payee_name')}</Nm>"
                f"</Cdtr><CdtrAcct>{_account(str(row[_FIELDS['account_number']]))}</CdtrAcct>"
                f"<RmtInf><Ustrd>{escape(remittance)}</Ustrd></RmtInf></CdtTrfTxInf>\n"
            ).encode()
        )
        bank.count += 1
        bank.total += int(amount)
        self.count += 1
        self.total += int(amount)

    def finish(self) -> tuple[int, int]:
        a, debtor, out = self.approval, self.debtor, self.out
        out.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<Document xmlns="{NAMESPACE}"><CstmrCdtTrfInitn>\n'
            f"<GrpHdr><MsgId>{transfer_message_id(a.period, a.province_code, a.lines_digest)}"
            "</MsgId>"
            f"<CreDtTm>{escape(a.approved_at)}</CreDtTm>"
            f"<NbOfTxs>{self.count}</NbOfTxs><CtrlSum>{self.total}</CtrlSum>"
            f"<InitgPty><Nm>{_debtor_name(debtor)}</Nm></InitgPty></GrpHdr>\n".encode()
        )
        for code, bank in sorted(self.banks.items()):
            assert debtor is not None  # a bank's transfers were added with one
            out.write(
                f"<PmtInf><PmtInfId>{a.period}-{a.province_code}-{escape(code)}</PmtInfId>"
                f"<PmtMtd>TRF</PmtMtd><NbOfTxs>{bank.count}</NbOfTxs>"
                f"<CtrlSum>{bank.total}</CtrlSum>"
                f"<ReqdExctnDt><Dt>{vietnam_day(a.approved_at)}</Dt></ReqdExctnDt>"
                f"<Dbtr><Nm>{_debtor_name(debtor)}</Nm></Dbtr>"
                f"<DbtrAcct>{_account(debtor.account_number)}</DbtrAcct>"
                f"<DbtrAgt>{_agent(debtor.bank_code)}</DbtrAgt>\n".encode()
            )
            bank.transfers.seek(0)
            while block := bank.transfers.read(1 << 20):
                out.write(block)
            bank.transfers.close()
            out.write(b"</PmtInf>\n")
        out.write(b"</CstmrCdtTrfInitn></Document>\n")
        return self.count, self.total


def _debtor_name(debtor: PayingAccount | None) -> str:
    if debtor is None:
        return ""
    return _text(debtor.debtor_name, debtor.province_code, "debtor_name")
