"""Chain heads kept outside the store, and the check that the store still has them.

The hash chain proves that no stored event was changed, and no one without the chain key can
compute it again; it cannot show, on its own, that events were removed from its end, nor a
history rewritten by someone holding the key. A head recorded elsewhere can: every export
manifest names the chain's head when it was written (`chain_head`), and `ledger checkpoint`
writes one to a file of its own. `check_heads` finds each head again in the store's chain:

- a notification the store no longer has: the history after the store's last one was removed;
- a different link at that notification: the history up to it was rewritten;
- another key id: the head is not this store's chain (or the key was changed).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.chain import ChainHead
from adapters.export_files import MANIFEST_SUFFIX
from adapters.new_files import FileExists, write_new_file
from ledger.application import Ledger
from ledger.rules import RuleViolation

CHECKPOINT_SUFFIX = ".checkpoint.json"
CHECKPOINT_KIND = "ansinh ledger chain checkpoint"


@dataclass(frozen=True)
class RecordedHead:
    """A chain head as a manifest or a checkpoint recorded it."""

    source: Path
    notification_id: int
    chain_hash: str
    key_id: str


def checkpoint_of(head: ChainHead, written_at: datetime | None = None) -> dict[str, Any]:
    """A checkpoint's JSON object. The store has no id of its own yet: the head and the key
    id name it."""
    moment = (written_at or datetime.now(UTC)).astimezone(UTC)
    return {
        "checkpoint": CHECKPOINT_KIND,
        **head.as_json(),
        "written_at": moment.isoformat(),
    }


def write_checkpoint(ledger: Ledger, path: Path) -> ChainHead:
    """Write the store's chain head to a new file (refused when it exists: a checkpoint is
    evidence, never replaced), whole or not at all. Keep it away from the store."""
    head = ledger.events.chain_head()
    data = (json.dumps(checkpoint_of(head), indent=2) + "\n").encode()
    if path.exists():
        raise RuleViolation(f"{path} exists: a checkpoint is never replaced; give another file")
    try:
        write_new_file(path, data)
    except FileExists:
        raise RuleViolation(f"{path} exists: a checkpoint is never replaced") from None
    return head


def _head(source: Path, found: Any) -> RecordedHead | str:
    if not isinstance(found, dict):
        return f"{source}: no chain head recorded in it"
    n, link, key = found.get("notification_id"), found.get("chain_hash"), found.get("key_id")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        return f"{source}: its chain head has no notification id ({n!r})"
    if not isinstance(link, str) or not isinstance(key, str):
        return f"{source}: its chain head lacks the link or the key id"
    return RecordedHead(source, n, link, key)


def head_in(source: Path) -> RecordedHead | str:
    """The head a manifest (`chain_head`) or a checkpoint records, or why there is none."""
    try:
        found = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"{source}: cannot be read as JSON ({err})"
    if isinstance(found, dict) and "chain_head" in found:
        return _head(source, found["chain_head"])
    if isinstance(found, dict) and found.get("checkpoint") == CHECKPOINT_KIND:
        return _head(source, found)
    return f"{source}: neither a manifest with a chain head nor a checkpoint"


def files_with_heads(paths: Iterable[Path]) -> list[Path]:
    """The files given, and below each folder given every manifest and checkpoint."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*.json")
                    if p.name.endswith((MANIFEST_SUFFIX, CHECKPOINT_SUFFIX)) and p.is_file()
                )
            )
        else:
            found.append(path)
    return found


def read_heads(paths: Sequence[Path]) -> tuple[list[RecordedHead], list[str]]:
    """The heads recorded in the files and folders given, and a line for each file that
    records none (or cannot be read, or is not there)."""
    heads: list[RecordedHead] = []
    problems: list[str] = []
    for path in paths:
        if not path.exists():
            problems.append(f"{path}: no such file or folder")
    for source in files_with_heads(p for p in paths if p.exists()):
        head = head_in(source)
        if isinstance(head, RecordedHead):
            heads.append(head)
        else:
            problems.append(head)
    if not heads and not problems:
        problems.append(f"no manifest or checkpoint found in {', '.join(str(p) for p in paths)}")
    return heads, problems


def check_heads(ledger: Ledger, heads: Sequence[RecordedHead]) -> list[str]:
    """Each recorded head that the store no longer has as it was recorded."""
    problems: list[str] = []
    store = ledger.events.chain_head()
    for head in sorted(heads, key=lambda h: (h.notification_id, str(h.source))):
        if head.key_id != store.key_id:
            problems.append(
                f"{head.source}: its head was made with chain key id {head.key_id}; this "
                f"store's chain is made with {store.key_id}: not this store's chain"
            )
            continue
        if head.notification_id == 0:
            continue  # the head of an empty store
        found = ledger.events.link_at(head.notification_id)
        if found is None and head.notification_id > store.notification_id:
            problems.append(
                f"notification {head.notification_id} named by {head.source} is missing: the "
                f"history after {store.notification_id} was removed"
            )
        elif found is None:
            problems.append(
                f"notification {head.notification_id} named by {head.source} is missing from "
                "the chain: its link was removed"
            )
        elif found != head.chain_hash:
            problems.append(
                f"notification {head.notification_id} named by {head.source} has another "
                "link in the store than the one recorded: the history up to it was rewritten"
            )
    return problems
