"""`ledger exports check DIR`: before anything is sent, prove that every payment file and
manifest in DIR (and below it) is what the store recorded.

For each manifest: its list was approved, and its fields (file, period, province, channel,
rows, total, sha256, approved_by, approved_at, lines_digest, and format but for a CSV's) equal
what the recorded `Approved` and `LinesIssued` events give; its chain head is in the store's
chain, with that link and that key id; its payment file is beside it. For each payment file (a
CSV, a pain.001 or an xlsx): its manifest is beside it, its list was approved, and its bytes
are exactly those the recorded lines give (the same `list_files` the export writes with; a
pain.001 paid from the province's paying account in force). A list with a CSV here and another
channel's CSV missing is named too.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.export_files import CSV, FORMATS, MANIFEST_KEYS, MANIFEST_SUFFIX, list_files
from ledger.aggregates import payment_list_id
from ledger.application import Ledger
from ledger.rules import IssuedList, RuleViolation
from ledger.service_layer.paying_accounts import paying_accounts
from ledger.service_layer.ports import Approval
from replay.checkpoint import RecordedHead, check_heads

STEM = r"(?P<period>\d{4}-\d{2})_(?P<province>\d{2})_(?P<channel>[A-Z]+)"
_ENDINGS = {ending: form for form, (_, ending) in FORMATS.items()}
PAYMENT_FILE = re.compile(rf"^{STEM}(?P<ending>{'|'.join(re.escape(e) for e in _ENDINGS)})$")
MANIFEST_FILE = re.compile(
    rf"^{STEM}(?:\.(?P<form>{'|'.join(f for f in FORMATS if f != CSV)}))?"
    rf"{re.escape(MANIFEST_SUFFIX)}$"
)


def _payment_file_name(period: str, province: str, channel: str, form: str) -> str:
    return f"{period}_{province}_{channel}{FORMATS[form][1]}"


def _manifest_name(period: str, province: str, channel: str, form: str) -> str:
    return f"{period}_{province}_{channel}{'' if form == CSV else '.' + form}{MANIFEST_SUFFIX}"


@dataclass(frozen=True)
class Finding:
    path: str  # relative to the folder checked
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class ExportsCheck:
    """What `check_exports` found: one finding per problem, and how many files (payment
    files and manifests) were checked and how many of them are equal to the record."""

    findings: list[Finding] = field(default_factory=list)
    checked: int = 0
    equal: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings

    def lines(self) -> list[str]:
        return [str(f) for f in self.findings]

    @property
    def summary(self) -> str:
        return f"{self.checked:,} files checked, {self.equal:,} equal to the record"


@dataclass(frozen=True)
class _List:
    """An approved list as the store recorded it."""

    issued: IssuedList | None
    altered: tuple[str, ...]


class _Record:
    """The approved lists, and the manifests of the files their recorded lines give in each
    format (what the export writes of each, its SHA-256 among them; not the files' bytes: a
    national folder is hundreds of megabytes of them), each list read once per format."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.lists: dict[tuple[str, str], _List] = {}
        self.files: dict[tuple[str, str, str], dict[str, dict[str, Any]] | str] = {}
        self.accounts = paying_accounts(ledger.ports)

    def of(self, period: str, province: str) -> _List:
        key = (period, province)
        if key not in self.lists:
            issued = self.ledger.events.issued_list(payment_list_id(period, province))
            altered = tuple(issued.problems()) if issued is not None else ()
            self.lists[key] = _List(issued, altered)
        return self.lists[key]

    def manifests(self, period: str, province: str, form: str) -> dict[str, dict[str, Any]] | str:
        """channel -> the manifest of the file the list's lines give in `form`, or why there
        can be none (a pain.001 of a province without a paying account)."""
        key = (period, province, form)
        if key not in self.files:
            issued = self.of(period, province).issued
            assert issued is not None
            try:
                # written to a folder of its own, never held whole, and removed
                with tempfile.TemporaryDirectory(prefix="ledger-exports-check-") as scratch:
                    self.files[key] = {
                        f.channel: f.manifest()
                        for f in self._files(period, province, issued, form, Path(scratch))
                    }
            except RuleViolation as err:
                self.files[key] = str(err)
        return self.files[key]

    def data(self, period: str, province: str, channel: str, form: str) -> bytes:
        """The bytes of one file the recorded lines give (read again: the rare case of a
        file that differs, to say where)."""
        issued = self.of(period, province).issued
        assert issued is not None
        found = [f for f in self._files(period, province, issued, form) if f.channel == channel]
        return found[0].data if found else b""

    def _files(
        self,
        period: str,
        province: str,
        issued: IssuedList,
        form: str,
        folder: Path | None = None,
    ) -> list[Any]:
        approval = Approval(period, province, issued.approved_by, issued.approved_at, issued.digest)
        return list_files(approval, issued.rows, (form,), self.accounts.get(province), folder)


def _sha256_of(path: Path) -> str:
    """A file's SHA-256, read a block at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _payment_files(directory: Path, pattern: re.Pattern[str]) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        if path.is_file() and pattern.match(path.name):
            yield path


def _first_difference(got: bytes, want: bytes) -> str:
    for number, (a, b) in enumerate(
        zip(got.split(b"\n"), want.split(b"\n"), strict=False), start=1
    ):
        if a != b:
            return f"from line {number}"
    return "in its length"


def _list_problems(record: _List, period: str, province: str) -> list[str]:
    if record.issued is None:
        return [f"list {period} {province} was never approved: this file must not be sent"]
    if record.altered:
        return [
            f"the recorded events of list {period} {province} were altered "
            f"({'; '.join(record.altered)}): run `ledger verify` and send nothing"
        ]
    return []


def check_exports(ledger: Ledger, directory: Path) -> ExportsCheck:
    """Every payment file and manifest in `directory` (and below it) against the record."""
    if not directory.is_dir():
        raise RuleViolation(f"{directory} is not a folder")
    record = _Record(ledger)
    result = ExportsCheck()
    lists_here: dict[tuple[str, str], set[str]] = {}
    folder_of: dict[tuple[str, str], Path] = {}

    def name(path: Path) -> str:
        return str(path.relative_to(directory))

    for manifest_path in _payment_files(directory, MANIFEST_FILE):
        match = MANIFEST_FILE.match(manifest_path.name)
        assert match is not None
        period, province, channel = match["period"], match["province"], match["channel"]
        form = match["form"] or CSV
        if form == CSV:
            lists_here.setdefault((period, province), set()).add(channel)
            folder_of.setdefault((period, province), manifest_path.parent)
        problems = _manifest_problems(
            ledger, record, manifest_path, (period, province, channel, form)
        )
        result.checked += 1
        result.equal += not problems
        result.findings.extend(Finding(name(manifest_path), p) for p in problems)

    for file_path in _payment_files(directory, PAYMENT_FILE):
        match = PAYMENT_FILE.match(file_path.name)
        assert match is not None
        period, province, channel = match["period"], match["province"], match["channel"]
        form = _ENDINGS[match["ending"]]
        if form == CSV:
            lists_here.setdefault((period, province), set()).add(channel)
            folder_of.setdefault((period, province), file_path.parent)
        problems = []
        manifest = file_path.with_name(_manifest_name(period, province, channel, form))
        if not manifest.is_file():
            problems.append("no manifest beside it: a payment file is never sent without one")
        listed = record.of(period, province)
        found = _list_problems(listed, period, province)
        problems.extend(found)
        if not found:
            manifests = record.manifests(period, province, form)
            expected = manifests.get(channel) if isinstance(manifests, dict) else None
            if isinstance(manifests, str):
                problems.append(f"{manifests}: do not send it")
            elif expected is None:
                problems.append(f"list {period} {province} has no {channel} line to pay")
            elif _sha256_of(file_path) != expected["sha256"]:
                where = (
                    _first_difference(
                        file_path.read_bytes(), record.data(period, province, channel, form)
                    )
                    if form == CSV
                    else "a file of another format is compared whole"
                )
                problems.append(
                    f"its bytes differ from the file the recorded lines give ({where}): "
                    "do not send it"
                )
        result.checked += 1
        result.equal += not problems
        result.findings.extend(Finding(name(file_path), p) for p in problems)

    for (period, province), channels in sorted(lists_here.items()):
        listed = record.of(period, province)
        if listed.issued is None or listed.altered:
            continue
        csv_files = record.manifests(period, province, CSV)
        assert isinstance(csv_files, dict)  # a CSV needs no paying account
        for channel, expected in sorted(csv_files.items()):
            if channel not in channels:
                result.findings.append(
                    Finding(
                        name(folder_of[(period, province)] / expected["file"]),
                        f"missing: list {period} {province} has {expected['rows']:,} {channel} "
                        "lines, and this folder has its other files",
                    )
                )
    return result


def _manifest_problems(
    ledger: Ledger, record: _Record, path: Path, which: tuple[str, str, str, str]
) -> list[str]:
    """`which`: the period, province, channel and format its name gives."""
    period, province, channel, form = which
    problems: list[str] = []
    file_name = _payment_file_name(period, province, channel, form)
    if not path.with_name(file_name).is_file():
        problems.append(f"its payment file {file_name} is not beside it")
    try:
        manifest: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return [*problems, f"cannot be read as JSON ({err})"]
    if not isinstance(manifest, dict):
        return [*problems, "not a manifest (a JSON object)"]
    listed = record.of(period, province)
    found = _list_problems(listed, period, province)
    if found:
        return problems + found
    manifests = record.manifests(period, province, form)
    if isinstance(manifests, str):
        return [*problems, f"{manifests}: do not send its file"]
    expected = manifests.get(channel)
    if expected is None:
        return [*problems, f"list {period} {province} has no {channel} line to pay"]
    want = expected
    for key in (*MANIFEST_KEYS, *(() if form == CSV else ("format",))):
        if key not in manifest:
            problems.append(f"{key} is missing; the record gives {want[key]!r}")
        elif manifest[key] != want[key] or type(manifest[key]) is not type(want[key]):
            problems.append(f"{key} is {manifest[key]!r}; the record gives {want[key]!r}")
    extra = sorted(set(manifest) - {*MANIFEST_KEYS, "chain_head", *want})
    if extra:
        problems.append(f"keys the ledger does not write: {', '.join(extra)}")
    head = manifest.get("chain_head")
    if head is None:
        problems.append("it names no chain head: it was not written by this ledger's export")
    else:
        problems.extend(_head_problems(ledger, path, head))
    return problems


def _head_problems(ledger: Ledger, path: Path, head: Any) -> list[str]:
    n = head.get("notification_id") if isinstance(head, dict) else None
    link = head.get("chain_hash") if isinstance(head, dict) else None
    key = head.get("key_id") if isinstance(head, dict) else None
    if (
        not isinstance(n, int)
        or isinstance(n, bool)
        or not isinstance(link, str)
        or not isinstance(key, str)
    ):
        return [f"its chain_head is not a notification id, a link and a key id: {head!r}"]
    found = check_heads(ledger, [RecordedHead(Path(path.name), n, link, key)])
    return [f"chain_head: {f}" for f in found]
