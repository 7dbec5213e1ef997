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
FIELDS = ("payment_id", "status", "settled_at", "reference", "reason", "amount", "instruction")
NOT_FINAL = frozenset({"ACTC", "ACCP", "ACSP", "ACWC", "ACWP", "PDNG", "RCVD", "PART"})
# a payment id standing alone in a statement's text (not a part of a longer number)
_PAYMENT_ID = re.compile(r"(?<![0-9-])\d{4}-\d{2}-\d{2}-\d{12}F?(?![0-9A-Za-z])", re.ASCII)
_MT940_START = re.compile(rb"\s*(\{1:|:20:)")
_NAMESPACE = re.compile(r"\{urn:iso:std:iso:20022:tech:xsd:(pain\.002|camt\.054)\.\d{3}\.\d{2}\}")
MT940_MAX_BYTES = 64 * 2**20  # a statement is read whole: one account's days, not a country's
_BAD_FILE = (SyntaxError, DefusedXmlException, LookupError, ValueError, ArithmeticError)


def detect(file: InputFile) -> str:
    """The file's format, from its first bytes: an XML file by its root element's namespace
    (comments and all before it skipped), MT940 by its first block."""
    head = file.head(64 * 1024)
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        parser = XMLPullParser(events=("start",), _parser=_parser())
        try:
            parser.feed(head)
            started: Iterator[Any] = parser.read_events()
            root = next((e for _, e in started), None)
        except _BAD_FILE as err:
            raise InputRejected([f"{file.name}: not readable as XML ({err})"]) from None
        found = _NAMESPACE.fullmatch(str(getattr(root, "tag", "")).split("}")[0] + "}")
        if found is None:
            raise InputRejected(
                [
                    f"{file.name}: an XML file that is neither a pain.002 status report nor a "
                    "camt.054 notification (ISO 20022): nothing was read"
                ]
            )
        return PAIN002 if found[1] == "pain.002" else CAMT054
    if _MT940_START.match(head):
        return MT940
    return CSV


def _parser() -> Any:
    return DefusedXMLParser(forbid_dtd=True, forbid_entities=True)


class Counted:
    """What a bank file held: its entries, and those that settle nothing yet."""

    def __init__(self) -> None:
        self.entries = 0
        self.not_final = 0


def entries(file: InputFile, form: str, counted: Counted) -> Iterator[Entry]:
    """The file's settlements as numbered entries of FIELDS (text, as a CSV row gives them), or
    an entry's problem as a whole."""
    if form == MT940:
        found = _mt940(file)
    elif form == PAIN002:
        found = _pain002(_elements(file, "TxInfAndSts"), counted)
    else:
        found = _camt054(_elements(file, "Ntry"), counted)
    for entry in found:
        counted.entries += 1
        yield entry
    if not counted.entries and not counted.not_final:
        raise InputRejected(
            [f"{file.name}: a {form} file of no payment's entry: nothing to settle in it"]
        )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _elements(file: InputFile, wanted: str) -> Iterator[tuple[Element, dict[str, str]]]:
    """Each `wanted` element of an XML file, complete, with what the file said before it: the
    group header's fields (MsgId, CreDtTm) and the original message's id (OrgnlMsgId). Every
    element outside a wanted one is dropped from its parent once it ends, and each wanted one
    once given: the tree never grows with the file."""
    parser = XMLPullParser(events=("start", "end"), _parser=_parser())
    header: dict[str, str] = {}
    path: list[Element] = []  # the open elements, the root first
    inside = 0  # how deep in a wanted element
    try:
        for block in file.blocks():
            parser.feed(block)
            events: Iterator[Any] = parser.read_events()
            for event, element in events:
                if event == "start":
                    path.append(element)
                    inside += inside > 0 or _local(element.tag) == wanted
                    continue
                path.pop()
                name = _local(element.tag)
                if inside > 1:  # a part of a wanted element: kept with it
                    inside -= 1
                    continue
                if name == "GrpHdr":
                    header.update({_local(c.tag): (c.text or "").strip() for c in element})
                elif name == "OrgnlMsgId":
                    header["OrgnlMsgId"] = (element.text or "").strip()
                elif inside:
                    inside = 0
                    yield element, header
                if path:  # ended, complete: nothing refers to it any more
                    del path[-1][-1]
        parser.close()
    except _BAD_FILE as err:  # ParseError is a SyntaxError
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
        wrong = _not_vnd(tx, "OrgnlTxRef/Amt/InstdAmt")
        if wrong:
            yield number, wrong
            continue
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
                "instruction": header.get("OrgnlMsgId", ""),
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
        amounts = [_find(tx, "Amt") or _find(tx, "AmtDtls/TxAmt/Amt") for tx in details]
        if len(details) == 1 and not amounts[0]:
            amounts = [_find(entry, "Amt")]  # the entry's one transaction moved its amount
        # the transactions' amounts add up to the entry's, or none of them is believed
        sums = _adds_up(_find(entry, "Amt"), amounts)
        wrong = _not_vnd(entry, "Amt") or next(
            (w for tx in details if (w := _not_vnd(tx, "Amt"))), ""
        )
        for i, tx in enumerate(details or [entry]):
            number += 1
            if booked != "BOOK":
                counted.not_final += 1
                continue
            if wrong:
                yield number, wrong
                continue
            if not sums:
                yield (
                    number,
                    (
                        f"amount: the entry's transactions add up to other than its Amt "
                        f"{_find(entry, 'Amt')}: none of them is believed"
                    ),
                )
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
                    "amount": amounts[i] if details else "",
                },
            )


def _adds_up(total: str, amounts: list[str]) -> bool:
    """Whether an entry's transactions add up to its amount: else none of them is believed.
    (An amount that is not one is each entry's own problem, named by its check.)"""
    given = [total, *amounts]
    if not all(_AMOUNT.fullmatch(a) for a in given):
        return True
    whole = [int(a.replace(",", ".").split(".")[0]) for a in given]
    return not amounts or sum(whole[1:]) == whole[0]


_AMOUNT = re.compile(r"\d{1,15}(?:[.,]0*)?", re.ASCII)


def _not_vnd(element: Element, path: str) -> str:
    """Why an amount at `path` is not one in VND (empty: it is, or there is none)."""
    found: Element | None = element
    for step in path.split("/"):
        if found is not None:
            found = next((c for c in found if _local(c.tag) == step), None)
    currency = found.get("Ccy", "VND") if found is not None else "VND"
    return "" if currency == "VND" else f"{path}: in {currency!r}, not VND: the ledger pays in VND"


def _moment(text: str) -> str:
    """A date alone is the start of that day in Vietnam."""
    return f"{text}T00:00:00+07:00" if len(text) == 10 else text


def _mt940(file: InputFile) -> Iterator[Entry]:
    import logging

    import mt940  # type: ignore[import-untyped]

    logging.getLogger("mt940").setLevel(logging.CRITICAL)  # its own dump of a line it misreads
    blocks = []
    size = 0
    for block in file.blocks():
        size += len(block)
        if size > MT940_MAX_BYTES:
            raise InputRejected(
                [
                    f"{file.name}: an MT940 statement of more than {MT940_MAX_BYTES // 2**20} "
                    "MiB: send one account's statements a day at a time"
                ]
            )
        blocks.append(block)
    try:
        statement = mt940.models.Transactions()
        statement.parse(b"".join(blocks).decode("utf-8"))
    except (*_BAD_FILE, KeyError, RuntimeError, IndexError) as err:
        raise InputRejected([f"{file.name}: not readable as an MT940 statement ({err})"]) from None
    currency = str(statement.data.get("currency") or "")
    for number, tx in enumerate(statement, start=1):
        data: dict[str, Any] = tx.data
        mark = str(data.get("status", ""))
        if (data.get("currency") or currency) != "VND":
            yield (
                number,
                f"in {data.get('currency') or currency!r}, not VND: the ledger pays in VND",
            )
            continue
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
