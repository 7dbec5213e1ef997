"""The banks' answers as a bank would send them, built for the tests: a pain.002 status
report, a camt.054 debit notification and an MT940 statement."""

from __future__ import annotations

from typing import Any

from ledger.rules import transfer_message_id


def pain002(transactions: list[tuple[str, str, str, int]], original: str) -> bytes:
    """A status report of the transfers of message `original`: (payment id, TxSts, reason
    code, amount) each."""
    body = "".join(
        f"<TxInfAndSts><StsId>S{n}</StsId><OrgnlEndToEndId>{pid}</OrgnlEndToEndId>"
        f"<TxSts>{status}</TxSts>"
        + (f"<StsRsnInf><Rsn><Cd>{reason}</Cd></Rsn></StsRsnInf>" if reason else "")
        + "<AccptncDtTm>2025-08-05T09:30:00+07:00</AccptncDtTm>"
        + f'<OrgnlTxRef><Amt><InstdAmt Ccy="VND">{amount}</InstdAmt></Amt></OrgnlTxRef>'
        "</TxInfAndSts>"
        for n, (pid, status, reason, amount) in enumerate(transactions)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"><CstmrPmtStsRpt>'
        "<GrpHdr><MsgId>RPT-1</MsgId><CreDtTm>2025-08-05T10:00:00+07:00</CreDtTm></GrpHdr>"
        f"<OrgnlGrpInfAndSts><OrgnlMsgId>{original}</OrgnlMsgId>"
        "<OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId></OrgnlGrpInfAndSts>"
        f"<OrgnlPmtInfAndSts><OrgnlPmtInfId>2025-07-01-VCB</OrgnlPmtInfId>{body}"
        "</OrgnlPmtInfAndSts></CstmrPmtStsRpt></Document>\n"
    ).encode()


def camt054(entries: list[tuple[list[tuple[str, int]], bool]]) -> bytes:
    """A debit notification: entries of (transactions (payment id, amount), reversal)."""
    body = ""
    for n, (transactions, reversal) in enumerate(entries):
        details = "".join(
            f"<TxDtls><Refs><EndToEndId>{pid}</EndToEndId><AcctSvcrRef>B{n}-{pid[-4:]}"
            f'</AcctSvcrRef></Refs><Amt Ccy="VND">{amount}</Amt>'
            + ("<RtrInf><Rsn><Cd>AC04</Cd></Rsn></RtrInf>" if reversal else "")
            + "</TxDtls>"
            for pid, amount in transactions
        )
        body += (
            f'<Ntry><Amt Ccy="VND">{sum(a for _, a in transactions)}</Amt>'
            f"<CdtDbtInd>{'CRDT' if reversal else 'DBIT'}</CdtDbtInd>"
            + ("<RvslInd>true</RvslInd>" if reversal else "")
            + "<Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2025-08-06</Dt></BookgDt>"
            f"<NtryDtls>{details}</NtryDtls></Ntry>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">'
        "<BkToCstmrDbtCdtNtfctn><GrpHdr><MsgId>N-1</MsgId>"
        "<CreDtTm>2025-08-06T18:00:00+07:00</CreDtTm></GrpHdr>"
        f"<Ntfctn><Id>N-1</Id>{body}</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>\n"
    ).encode()


def mt940(lines: list[tuple[str, str, int]]) -> bytes:
    """A statement: (mark D or RD, payment id, amount) each."""
    body = "".join(
        f":61:2508070807{mark}{amount},NTRFNONREF//BR{n}\n:86:{pid} tro cap\n"
        for n, (mark, pid, amount) in enumerate(lines)
    )
    return (
        f":20:STMT-1\n:25:1500201012345\n:28C:1/1\n:60F:C250731VND900000000,\n{body}"
        ":62F:C250807VND879000000,\n"
    ).encode()


def message_id(store: Any, period: str, province: str) -> str:
    """The id of a list's transfers (pain.001's MsgId), from its approved digest."""
    ((digest,),) = store(
        "SELECT digest FROM payment_lists WHERE period = ? AND province_code = ?",
        (period, province),
    )
    return transfer_message_id(period, province, str(digest))
