"""Properties of the banks' file: whatever lines a province pays by bank (any banks, names in
any script and of any length, amounts up to a billion VND), the pain.001 file is valid against
the official schema of pain.001.001.09, holds one transfer per line with its payment id,
amount, bank, account and name (cut at 140 characters), one block per creditor bank, and its
counts and sums are those of its transfers at both levels."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import sepaxml
import xmlschema
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.export_files import list_files
from ledger.rules import LINE_FIELDS
from ledger.service_layer.ports import Approval, PayingAccount

SCHEMA = xmlschema.XMLSchema(str(Path(sepaxml.__file__).parent / "schemas" / "pain.001.001.09.xsd"))
NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}
APPROVAL = Approval("2025-07", "01", "anh", "2025-07-28T10:15:00.123456+07:00", "ab" * 32)
DEBTOR = PayingAccount("01", "Sở <LĐTBXH> & Hà Nội", "AGRIBANK", "1500201012345")
# what a recorded name may hold: no control, format or surrogate character (ledger.values)
NAMES = st.text(st.characters(blacklist_categories=["Cc", "Cf", "Cs", "Zl", "Zp"]), min_size=1)
LINES = st.lists(
    st.tuples(
        st.integers(0, 10**12 - 1),
        st.sampled_from(["VCB", "BIDV", "ACB", "AGRIBANK"]),
        st.from_regex(r"[0-9]{6,19}", fullmatch=True),
        NAMES,
        st.integers(0, 10**9),
        st.booleans(),
    ),
    min_size=1,
    max_size=30,
    unique_by=lambda t: (t[0], t[5]),
)


def _row(person: int, bank: str, account: str, name: str, amount: int, funeral: bool) -> list:
    pid = f"{person:012d}"
    values = {
        "payment_id": f"2025-07-01-{pid}{'F' if funeral else ''}",
        "period": "2025-07",
        "province_code": "01",
        "commune_code": "00001",
        "kind": "FUNERAL" if funeral else "REGULAR",
        "personal_id": pid,
        "payee_personal_id": pid,
        "payee_name": name,
        "channel": "BANK",
        "bank_code": bank,
        "account_number": account,
        "regular_amount": 0 if funeral else amount,
        "funeral_amount": amount if funeral else 0,
        "arrears_amount": 0,
        "total_amount": amount,
    }
    return [values[f] for f in LINE_FIELDS]


@settings(max_examples=40, deadline=None)
@given(LINES)
def test_the_banks_file_is_valid_and_holds_each_line_once(lines: list) -> None:
    rows = sorted((_row(*line) for line in lines), key=lambda r: r[0])
    (written,) = list_files(APPROVAL, rows, ("pain001",), DEBTOR)

    SCHEMA.validate(written.data.decode())
    root = ElementTree.fromstring(written.data)
    found = []
    for block in root.iterfind("p:CstmrCdtTrfInitn/p:PmtInf", NS):
        mine = [
            (
                tx.findtext("p:PmtId/p:EndToEndId", namespaces=NS),
                int(tx.findtext("p:Amt/p:InstdAmt", namespaces=NS) or ""),
                tx.findtext("p:CdtrAgt/p:FinInstnId/p:ClrSysMmbId/p:MmbId", namespaces=NS),
                tx.findtext("p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=NS),
                tx.findtext("p:Cdtr/p:Nm", namespaces=NS),
            )
            for tx in block.iterfind("p:CdtTrfTxInf", NS)
        ]
        assert block.findtext("p:NbOfTxs", namespaces=NS) == str(len(mine))
        assert block.findtext("p:CtrlSum", namespaces=NS) == str(sum(t[1] for t in mine))
        assert len({t[2] for t in mine}) == 1
        assert [t[0] for t in mine] == sorted(t[0] for t in mine)  # payment-id order
        found += mine
    header = root.find("p:CstmrCdtTrfInitn/p:GrpHdr", NS)
    assert header is not None
    assert header.findtext("p:NbOfTxs", namespaces=NS) == str(len(rows)) == str(written.rows)
    total = sum(r[LINE_FIELDS.index("total_amount")] for r in rows)
    assert header.findtext("p:CtrlSum", namespaces=NS) == str(total) == str(written.total_amount)
    expected = [
        (r[0], r[-1], r[LINE_FIELDS.index("bank_code")], r[LINE_FIELDS.index("account_number")])
        for r in rows
    ]
    assert sorted(t[:4] for t in found) == sorted(expected)
    names = {r[0]: r[LINE_FIELDS.index("payee_name")][:140] for r in rows}
    assert all(t[4] == names[t[0]] for t in found)
