"""The payment files for the post office and the banks, and their manifests: written from the
lines recorded at approval, staged beside their final names and put in place together, so that
a refused or interrupted export leaves no partial file under a final name."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ledger.rules import LINE, LINE_FIELDS
from ledger.service_layer.ports import Approval, ExportedFile

TOTAL = LINE["total_amount"]


def export_bytes(rows: Iterable[Sequence[Any]]) -> tuple[bytes, int, int]:
    """A payment file as the contract gives it, from lines ordered by payment_id: its bytes,
    its row count and its total amount."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LINE_FIELDS)
    count = total = 0
    for row in rows:
        writer.writerow(row)
        count += 1
        total += int(row[TOTAL])
    return buffer.getvalue().encode("utf-8"), count, total


class StagedExport:
    """Files written under temporary names in the output folder; `commit` renames them all,
    `discard` removes them."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.staged: list[tuple[Path, Path]] = []

    def _stage(self, name: str, data: bytes) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)  # not before there is a file to write
        final = self.out_dir / name
        tmp = final.with_name(f".{final.name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.staged.append((tmp, final))
        return final

    def add_list_file(
        self, approval: Approval, channel: str, rows: Iterable[Sequence[Any]]
    ) -> ExportedFile:
        data, count, total = export_bytes(rows)
        digest = hashlib.sha256(data).hexdigest()
        stem = f"{approval.period}_{approval.province_code}_{channel}"
        path = self._stage(f"{stem}.csv", data)
        manifest = {
            "file": path.name,
            "period": approval.period,
            "province_code": approval.province_code,
            "channel": channel,
            "rows": count,
            "total_amount": total,
            "sha256": digest,
            "approved_by": approval.approved_by,
            "approved_at": approval.approved_at,
            "lines_digest": approval.lines_digest,
        }
        self._stage(
            f"{stem}.manifest.json",
            (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode(),
        )
        return ExportedFile(path, count, total, digest)

    def commit(self) -> None:
        for tmp, final in self.staged:
            os.replace(tmp, final)
        self.staged.clear()

    def discard(self) -> None:
        for tmp, _ in self.staged:
            tmp.unlink(missing_ok=True)
        self.staged.clear()
