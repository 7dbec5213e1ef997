"""The payment files for the post office and the banks, and their manifests: written from the
lines recorded at approval, staged beside their final names and put in place together, so that
a refused or interrupted export leaves no partial file under a final name.

Every payment file's bytes come from `export_bytes`, and a list's files from `list_files`: the
export, `replay --check-issued` and `exports check` all call them, so that what is checked is
what is written. A text cell that a spreadsheet would evaluate as a formula is written with a
leading `'` (`safe_cell`)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from adapters.chain import ChainHead
from adapters.pain001 import CreditTransfers
from adapters.payment_cells import (
    TOTAL,
    cells_of,
)
from adapters.post_sheet import PostSheet
from ledger.rules import LINE, LINE_FIELDS
from ledger.service_layer.ports import Approval, ExportedFile, PayingAccount

MANIFEST_SUFFIX = ".manifest.json"
# the manifest's keys, in the order written; `chain_head` when the export was given one
MANIFEST_KEYS = (
    "file",
    "period",
    "province_code",
    "channel",
    "rows",
    "total_amount",
    "sha256",
    "approved_by",
    "approved_at",
    "lines_digest",
)


def export_bytes(rows: Iterable[Sequence[Any]]) -> tuple[bytes, int, int]:
    """A payment file as the contract gives it, from lines ordered by payment_id: its bytes,
    its row count and its total amount."""
    out = io.BytesIO()
    writer = _PaymentFile(out)
    for row in rows:
        writer.add(row)
    count, total = writer.finish()  # the last block written
    return out.getvalue(), count, total


class _PaymentFile:
    """A payment file written a line at a time (several of a list at once) into `out`, a
    block of lines at a time."""

    BLOCK = 1 << 16  # characters of lines kept before they are written

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\n")
        # Python's writer quotes a cell only for the characters of its line terminator: a
        # carriage return inside a cell would be left bare and read as the end of a row.
        # Such a row is written with "\r\n" (which quotes it) and ended with "\n" like
        # every other.
        self.one = io.StringIO()
        self.quoting = csv.writer(self.one, lineterminator="\r\n")
        self.writer.writerow(LINE_FIELDS)
        self.count = self.total = 0

    def add(self, row: Sequence[Any]) -> None:
        cells, returns = cells_of(row)
        if returns:
            self.one.seek(0)
            self.one.truncate()
            self.quoting.writerow(cells)
            self.buffer.write(self.one.getvalue()[:-2] + "\n")
        else:
            self.writer.writerow(cells)
        self.count += 1
        self.total += int(row[TOTAL])
        if self.buffer.tell() >= self.BLOCK:
            self._flush()

    def _flush(self) -> None:
        self.out.write(self.buffer.getvalue().encode("utf-8"))
        self.buffer.seek(0)
        self.buffer.truncate()

    def finish(self) -> tuple[int, int]:
        self._flush()
        return self.count, self.total


# The formats a list's files are written in, each with the channel it is for (None: every
# channel) and how its files' names end; a CSV's manifest keeps the name it always had.
CSV, PAIN001, XLSX = "csv", "pain001", "xlsx"
FORMATS = {CSV: (None, ".csv"), PAIN001: ("BANK", ".pain001.xml"), XLSX: ("POST", ".xlsx")}


@dataclass(frozen=True)
class ListFile:
    """One payment file of an approved list, as the recorded lines give it: its bytes, or
    (written into a folder) the temporary file that holds them, and their SHA-256."""

    approval: Approval
    channel: str
    data: bytes
    rows: int
    total_amount: int
    format: str = CSV
    path: Path | None = None
    digest: str = ""

    @property
    def stem(self) -> str:
        return f"{self.approval.period}_{self.approval.province_code}_{self.channel}"

    @property
    def name(self) -> str:
        return f"{self.stem}{FORMATS[self.format][1]}"

    @property
    def manifest_name(self) -> str:
        if self.format == CSV:
            return f"{self.stem}{MANIFEST_SUFFIX}"
        return f"{self.stem}.{self.format}{MANIFEST_SUFFIX}"

    @property
    def sha256(self) -> str:
        return self.digest or hashlib.sha256(self.data).hexdigest()

    def manifest(self, chain_head: ChainHead | None = None) -> dict[str, Any]:
        found: dict[str, Any] = {
            "file": self.name,
            "period": self.approval.period,
            "province_code": self.approval.province_code,
            "channel": self.channel,
            "rows": self.rows,
            "total_amount": self.total_amount,
            "sha256": self.sha256,
            "approved_by": self.approval.approved_by,
            "approved_at": self.approval.approved_at,
            "lines_digest": self.approval.lines_digest,
        }
        if self.format != CSV:
            found["format"] = self.format
        if chain_head is not None:
            found["chain_head"] = chain_head.as_json()
        return found


def list_file(approval: Approval, channel: str, rows: Iterable[Sequence[Any]]) -> ListFile:
    """One channel's file, from its lines ordered by payment_id."""
    data, count, total = export_bytes(rows)
    return ListFile(approval, channel, data, count, total)


def list_files(
    approval: Approval,
    rows: Iterable[Sequence[Any]],
    formats: Sequence[str] = (CSV,),
    debtor: PayingAccount | None = None,
    folder: Path | None = None,
) -> list[ListFile]:
    """An approved list's payment files from its recorded lines (LINE_FIELDS order, any
    order), in each of `formats` (FORMATS) for each channel that has lines and the format is
    for, each ordered by payment_id; `debtor`: the province's paying account, which a pain.001
    file needs. Lines recorded in payment-id order (as approvals issue them) are written as
    they are read, the list never held; others are sorted first. `folder`: the files are
    written there under temporary names (`.NAME.tmp`), a block at a time, never held whole
    (a national province's are tens of megabytes); else they are kept in memory."""
    if iter(rows) is rows:  # read once only: kept, to be read again if out of order
        rows = list(rows)
    try:
        return _list_files(approval, rows, formats, debtor, folder, ordered=True)
    except _OutOfOrder:
        return _list_files(
            approval,
            sorted(rows, key=lambda r: str(r[LINE["payment_id"]])),
            formats,
            debtor,
            folder,
            ordered=False,
        )


class _OutOfOrder(Exception):
    pass


class _Writer(Protocol):
    """A file of one format written a line at a time into its `out`; `finish` completes it
    and gives its line count and total amount."""

    def add(self, row: Sequence[Any]) -> None: ...
    def finish(self) -> tuple[int, int]: ...


def _writer(form: str, approval: Approval, debtor: PayingAccount | None, out: BinaryIO) -> _Writer:
    if form == PAIN001:
        return CreditTransfers(approval, debtor, out)
    if form == XLSX:
        return PostSheet(approval, out)
    return _PaymentFile(out)


@dataclass
class _Open:
    """A file being written: its writer, where its bytes go, and its temporary path."""

    writer: _Writer
    out: BinaryIO
    path: Path | None


def _list_files(
    approval: Approval,
    rows: Iterable[Sequence[Any]],
    formats: Sequence[str],
    debtor: PayingAccount | None,
    folder: Path | None,
    ordered: bool,
) -> list[ListFile]:
    files: dict[tuple[str, str], _Open] = {}
    try:
        last = ""
        for row in rows:
            payment = str(row[LINE["payment_id"]])
            if ordered and payment <= last:
                raise _OutOfOrder
            last = payment
            channel = row[LINE["channel"]]
            for form in formats:
                if FORMATS[form][0] not in (None, channel):
                    continue
                held = files.get((channel, form))
                if held is None:
                    held = files[(channel, form)] = _open(form, approval, debtor, channel, folder)
                held.writer.add(row)
        return [
            _finished(approval, channel, form, files[(channel, form)])
            for channel, form in sorted(files)
        ]
    except BaseException:  # nothing half-written is left behind
        for held in files.values():
            held.out.close()
            if held.path is not None:
                held.path.unlink(missing_ok=True)
        raise


def _open(
    form: str, approval: Approval, debtor: PayingAccount | None, channel: str, folder: Path | None
) -> _Open:
    if folder is None:
        out: BinaryIO = io.BytesIO()
        return _Open(_writer(form, approval, debtor, out), out, None)
    folder.mkdir(parents=True, exist_ok=True)  # not before there is a file to write
    name = f"{approval.period}_{approval.province_code}_{channel}{FORMATS[form][1]}"
    path = folder / f".{name}.tmp"
    out = path.open("wb")
    return _Open(_writer(form, approval, debtor, out), out, path)


def _finished(approval: Approval, channel: str, form: str, held: _Open) -> ListFile:
    count, total = held.writer.finish()
    if held.path is None:
        assert isinstance(held.out, io.BytesIO)
        return ListFile(approval, channel, held.out.getvalue(), count, total, form)
    held.out.flush()
    os.fsync(held.out.fileno())
    held.out.close()
    digest = hashlib.sha256()
    with held.path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return ListFile(approval, channel, b"", count, total, form, held.path, digest.hexdigest())


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()


HeadSource = ChainHead | Callable[[], ChainHead]


class StagedExport:
    """Files written under temporary names in the output folder; `commit` renames them all,
    `discard` removes them.

    `chain_head`: the store's chain head, or how to read it (`EventStore.chain_head`), written
    into every manifest. A function is called at `commit`, after every list was read, so that
    the head recorded covers each approval exported. The manifests are staged then."""

    def __init__(self, out_dir: Path, *, chain_head: HeadSource | None = None) -> None:
        self.out_dir = out_dir
        self.chain_head = chain_head
        self.staged: list[tuple[Path, Path]] = []
        self.manifests: list[tuple[str, dict[str, Any]]] = []

    def _stage(self, name: str, data: bytes) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)  # not before there is a file to write
        final = self.out_dir / name
        tmp = final.with_name(f".{final.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:  # a full disk: no part of a file left behind
            tmp.unlink(missing_ok=True)
            raise
        self.staged.append((tmp, final))
        return final

    def _add(self, file: ListFile) -> ExportedFile:
        if file.path is not None:  # written in place, under its temporary name
            path = self.out_dir / file.name
            self.staged.append((file.path, path))
        else:
            path = self._stage(file.name, file.data)
        # its manifest without the file's bytes: a national export is 700 MB of them
        self.manifests.append((file.manifest_name, file.manifest()))
        return ExportedFile(path, file.rows, file.total_amount, file.sha256)

    def add_list_file(
        self, approval: Approval, channel: str, rows: Iterable[Sequence[Any]]
    ) -> ExportedFile:
        """One channel's file of a list, from its lines ordered by payment_id."""
        return self._add(list_file(approval, channel, rows))

    def add_list(
        self,
        approval: Approval,
        rows: Iterable[Sequence[Any]],
        formats: Sequence[str] = (CSV,),
        debtor: PayingAccount | None = None,
    ) -> list[ExportedFile]:
        """Every file of an approved list, from its recorded lines (`list_files`), written
        into the folder a block at a time."""
        written = list_files(approval, rows, formats, debtor, self.out_dir)
        return [self._add(file) for file in written]

    def handover(self) -> tuple[list[tuple[Path, Path]], list[tuple[str, dict[str, Any]]]]:
        """What is staged here (the files' temporary and final paths, the manifests to
        write), given up for another export of the folder to commit or discard."""
        given = (self.staged, self.manifests)
        self.staged, self.manifests = [], []
        return given

    def adopt(
        self, staged: tuple[list[tuple[Path, Path]], list[tuple[str, dict[str, Any]]]]
    ) -> None:
        """What another export of this folder staged (`handover`), committed or discarded
        with what is staged here."""
        self.staged.extend(staged[0])
        self.manifests.extend(staged[1])

    def _head(self) -> ChainHead | None:
        if self.chain_head is None or isinstance(self.chain_head, ChainHead):
            return self.chain_head
        return self.chain_head()

    def commit(self) -> None:
        if self.manifests:
            head = self._head()
            for name, manifest in self.manifests:
                if head is not None:
                    manifest = {**manifest, "chain_head": head.as_json()}
                self._stage(name, manifest_bytes(manifest))
            self.manifests.clear()
        for tmp, final in self.staged:
            os.replace(tmp, final)
        self.staged.clear()

    def discard(self) -> None:
        for tmp, _ in self.staged:
            tmp.unlink(missing_ok=True)
        self.staged.clear()
        self.manifests.clear()
