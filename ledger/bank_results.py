"""Settlement results as the banks send them, read into the settlement file's fields: an ISO
20022 `pain.002` payment status report, a `camt.054` debit notification, or an MT940 statement.
Which one a file is, is read from its content (`detect`); a CSV is the contract's own file.

Each entry (a transaction of a status report, a transaction of a notification's entry, a line
of a statement) becomes the CSV's fields (payment_id, status, settled_at, reference, reason)
and the amount the bank moved, numbered as the file gives them, so that the same checks apply
and a problem names the file, the entry and the field. Only what settles a payment is read:

- pain.002: `TxSts` `ACSC` or `ACCC` is PAID, `RJCT` is FAILED with its reason code; a status
  on the way (`ACTC`, `ACCP`, `ACSP`, `ACWC`, `ACWP`, `PDNG`, `RCVD`, `PART`) settles nothing
  and is counted; `OrgnlEndToEndId` is the payment id.
- camt.054: each transaction of a booked debit entry is PAID, of a reversal (`RvslInd`) is
  RETURNED with its return reason; `Refs/EndToEndId` is the payment id.
- MT940: a debit line (`D`) is PAID, a reversal of a debit (`RD`) is RETURNED; the payment
  id is the one the line's customer reference or its `:86:` text holds.

XML is read as a stream, element by element, with no document type (no entity, no external
reference) allowed. A statement in MT940 is read whole (a day's statement of one account).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from xml.etree.ElementTree import Element, XMLPullParser

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from ledger.inputs import Entry, InputFile, InputRejected

CSV, PAIN002, CAMT054, MT940 = "csv", "pain.002", "camt.054", "MT940"
# the fields each entry gives: the settlement file's, and the amount moved
FIELDS = ("payment_id", "status", "settled_at", "reference", "reason", "amount")
NOT_FINAL = frozenset({"ACTC", "ACCP", "ACSP", "ACWC", "ACWP", "PDNG", "RCVD", "PART"})
_PAYMENT_ID = re.compile(r"\d{4}-\d{2}-\d{2}-\d{12}F?", re.ASCII)
_MT940_START = re.compile(rb"\s*(\{1:|:20:)")


def detect(file: InputFile) -> str:
    """The file's format, from its first bytes."""
    head = file.head(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        for namespace, form in ((b":xsd:pain.002.", PAIN002), (b":xsd:camt.054.", CAMT054)):
            if namespace in head:
                return form
        raise InputRejected(
            [
                f"{file.name}: an XML file that is neither a pain.002 status report nor a "
                "camt.054 notification (ISO 20022): nothing was read"
            ]
        )
    if _MT940_START.match(head):
        return MT940
    return CSV


class Counted:
    """What a bank file held besides settlements: entries that settle nothing yet."""

    def __init__(self) -> None:
        self.not_final = 0


def entries(file: InputFile, form: str, counted: Counted) -> Iterator[Entry]:
    """The file's settlements as numbered entries of FIELDS (text, as a CSV row gives them), or
    an entry's problem as a whole."""
    if form == MT940:
        yield from _mt940(file)
        return
    reader = _pain002 if form == PAIN002 else _camt054
    yield from reader(_elements(file, "TxInfAndSts" if form == PAIN002 else "Ntry"), counted)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _elements(file: InputFile, wanted: str) -> Iterator[tuple[Element, dict[str, str]]]:
    """Each `wanted` element of an XML file, complete, with the group header's fields read
    before it (MsgId, CreDtTm); each is dropped once given."""
    parser = XMLPullParser(
        events=("end",), _parser=DefusedXMLParser(forbid_dtd=True, forbid_entities=True)
    )
    header: dict[str, str] = {}
    try:
        for block in file.blocks():
            parser.feed(block)
            events: Iterator[Any] = parser.read_events()
            for _, element in events:  # each an Element: only "end" events are asked for
                name = _local(element.tag)
                if name == "GrpHdr":
                    header = {_local(c.tag): (c.text or "").strip() for c in element}
                elif name == wanted:
                    yield element, header
                    element.clear()
        parser.close()
    except (SyntaxError, DefusedXmlException) as err:  # ParseError is a SyntaxError
        raise InputRejected([f"{file.name}: not readable as XML ({err})"]) from None


def _find(element: Element, path: str) -> str:
    """The text at a path of local names (`a/b/c`), whatever the namespace; empty if none."""
    found: Element | None = element
    for step in path.split("/"):
        if found is not None:
            found = next((c for c in found if _local(c.tag) == step), None)
    return (found.text or "").strip() if found is not None else ""


def _pain002(
    elements: Iterator[tuple[Element, dict[str, str]]], counted: Counted
) -> Iterator[Entry]:
    number = 0
    for tx, header in elements:
        number += 1
        status = _find(tx, "TxSts")
        if status in NOT_FINAL:
            counted.not_final += 1
            continue
        settled = {"ACSC": "PAID", "ACCC": "PAID", "RJCT": "FAILED"}.get(status)
        if settled is None:
            yield number, f"TxSts {status!r} is not a status of a payment (ACSC, ACCC or RJCT)"
            continue
        reason = " ".join(
            t for t in (_find(tx, "StsRsnInf/Rsn/Cd"), _find(tx, "StsRsnInf/AddtlInf")) if t
        )
        yield (
            number,
            {
                "payment_id": _find(tx, "OrgnlEndToEndId"),
                "status": settled,
                "settled_at": _moment(_find(tx, "AccptncDtTm") or header.get("CreDtTm", "")),
                "reference": (
                    _find(tx, "AcctSvcrRef") or _find(tx, "StsId") or header.get("MsgId", "")
                )
                if settled == "PAID"
                else "",
                "reason": reason if settled == "FAILED" else "",
                "amount": _find(tx, "OrgnlTxRef/Amt/InstdAmt"),
            },
        )


def _camt054(
    elements: Iterator[tuple[Element, dict[str, str]]], counted: Counted
) -> Iterator[Entry]:
    number = 0
    for entry, _ in elements:
        booked = _find(entry, "Sts/Cd") or _find(entry, "Sts")
        reversal = _find(entry, "RvslInd").lower() == "true"
        debit = _find(entry, "CdtDbtInd")
        day = _find(entry, "BookgDt/DtTm") or _find(entry, "BookgDt/Dt")
        details = [d for d in entry.iter() if _local(d.tag) == "TxDtls"]
        for tx in details or [entry]:
            number += 1
            if booked != "BOOK":
                counted.not_final += 1
                continue
            # a debit pays; a reversal of one (booked as a credit) returns it
            if debit != ("CRDT" if reversal else "DBIT"):
                yield number, f"CdtDbtInd {debit!r}: not a payment made or returned"
                continue
            yield (
                number,
                {
                    "payment_id": _find(tx, "Refs/EndToEndId"),
                    "status": "RETURNED" if reversal else "PAID",
                    "settled_at": _moment(day),
                    "reference": ""
                    if reversal
                    else (_find(tx, "Refs/AcctSvcrRef") or _find(entry, "AcctSvcrRef")),
                    "reason": (_find(tx, "RtrInf/Rsn/Cd") or "reversed") if reversal else "",
                    "amount": _find(tx, "Amt") or (_find(entry, "Amt") if not details else ""),
                },
            )


def _moment(text: str) -> str:
    """A date alone is the start of that day in Vietnam."""
    return f"{text}T00:00:00+07:00" if len(text) == 10 else text


def _mt940(file: InputFile) -> Iterator[Entry]:
    import mt940  # type: ignore[import-untyped]

    try:
        text = file.data.decode("utf-8")
        statement = mt940.models.Transactions()
        statement.parse(text)
    except (UnicodeDecodeError, ValueError, KeyError, RuntimeError) as err:
        raise InputRejected([f"{file.name}: not readable as an MT940 statement ({err})"]) from None
    for number, tx in enumerate(statement, start=1):
        data: dict[str, Any] = tx.data
        mark = str(data.get("status", ""))
        if mark not in ("D", "RD"):
            yield number, f"{mark!r} line: not a payment made (D) or returned (RD)"
            continue
        said = f"{data.get('customer_reference') or ''} {data.get('transaction_details') or ''}"
        found = sorted(set(_PAYMENT_ID.findall(said)))
        if len(found) != 1:
            yield (
                number,
                (
                    "no payment id in its reference or :86: text"
                    if not found
                    else f"more than one payment id in it ({', '.join(found)})"
                ),
            )
            continue
        amount = data.get("amount")
        yield (
            number,
            {
                "payment_id": found[0],
                "status": "RETURNED" if mark == "RD" else "PAID",
                "settled_at": _moment(str(data.get("date", ""))),
                "reference": str(data.get("bank_reference") or "") if mark == "D" else "",
                "reason": "reversed" if mark == "RD" else "",
                "amount": str(abs(amount.amount)) if amount is not None else "",
            },
        )
