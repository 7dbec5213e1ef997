"""The keyed chain and the heads kept outside the store, on both stores.

- Someone who can write the store but does not hold the chain key rewrites an event and
  computes the chain after it again (with plain SHA-256, or a key of their own): verify names
  the event.
- A store opened with another key is refused by name, not reported as altered everywhere; with
  no key at all, the command says what to do.
- Events removed from the end of the history, or a history rewritten by someone holding the
  key, leave a consistent chain: a checkpoint or a manifest written before names what changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.chain import ChainHead, link
from adapters.chain_key import ChainKeyError, key_id
from ledger.application import Ledger
from replay.checkpoint import check_heads, read_heads, write_checkpoint
from replay.verify import HEADS, verify
from tests.conftest import Files, enrolment, query_store
from tests.integration.test_exports_check import export_with_head
from tests.integration.test_store_guarantees import (
    KEY,
    fill,
    stored,
    tamper,
    unkeyed_link,
)
from tests.integration.test_verify import alter_event, events_and_id, guards_off

pytestmark = pytest.mark.integration

OTHER_KEY = bytes(range(32))


@pytest.fixture
def filled(store_url: str, files: Files) -> str:
    with Ledger(store_url) as ledger:
        fill(ledger, files)
    return store_url


def report(url: str, heads_from: list[Path] | None = None) -> dict[str, list[str]]:
    with Ledger(url, read_models="none", existing=True) as ledger:  # as `ledger verify` opens
        return {c.name: c.findings for c in verify(ledger, heads_from=heads_from or []).checks}


def rewrite(url: str, at: int, compute: str) -> int:
    """Alter the `at`-th stored event and write every link from it again, computed by
    `compute`: "sha256" (the old, unkeyed link), "other key", or "the key" (an insider). The
    notification id of the altered event."""
    rows = stored(url)
    n = rows[at][0]
    alter_event(url, n)
    (before,) = query_store(
        url, "SELECT chain_hash FROM event_chain WHERE notification_id = ?", (rows[at - 1][0],)
    )[0]
    previous = bytes.fromhex(before)
    for m, originator, version, topic, state in stored(url)[at:]:
        if compute == "sha256":
            previous = unkeyed_link(previous, m, originator, version, topic, state)
        else:
            key = KEY if compute == "the key" else OTHER_KEY
            previous = link(key, previous, m, originator, version, topic, state)
        change = f"UPDATE event_chain SET chain_hash = '{previous.hex()}'"
        assert tamper(url, f"{change} WHERE notification_id = {m}") == ""
    return int(n)


@pytest.mark.parametrize("compute", ["sha256", "other key"])
def test_a_rewrite_with_the_chain_computed_again_without_the_key_is_found(
    filled: str, compute: str
) -> None:
    n = rewrite(filled, 5, compute)
    found = report(filled)["hash chain"]
    assert found[0].startswith(f"notification {n}: altered"), found


def test_a_store_opened_with_another_key_is_refused_by_name(
    filled: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = stored(filled)
    monkeypatch.setenv("LEDGER_CHAIN_KEY", OTHER_KEY.hex())
    expected = (
        f"this store's chain was made with key id {key_id(KEY)}; the key given has id "
        f"{key_id(OTHER_KEY)}"
    )
    for existing in (False, True):  # a command, and verify
        with pytest.raises(ChainKeyError) as refused:
            Ledger(filled, existing=existing)
        assert expected in str(refused.value)
    env = {k: v for k, v in os.environ.items() if k not in ("LEDGER_KAFKA", "LEDGER_STORE")}
    run = subprocess.run(
        [sys.executable, "-m", "tests.ledger_as_role", "verify", "--store", filled],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert expected in run.stderr and "Traceback" not in run.stderr
    assert stored(filled) == before


def test_the_recorder_never_appends_under_another_key(filled: str, files: Files) -> None:
    before = stored(filled)
    with Ledger(filled) as ledger:
        ledger.app.recorder.set_chain_key(OTHER_KEY)  # type: ignore[attr-defined]
        with pytest.raises(ChainKeyError, match="made with key id"):
            ledger.enrol(files.enrolments([enrolment("001000000099")]), "maker")
    assert stored(filled) == before


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, "run `ledger init`"),
        ({"LEDGER_CHAIN_KEY": "not hex"}, "LEDGER_CHAIN_KEY is not a chain key"),
        ({"LEDGER_CHAIN_KEY": "ab" * 16}, "LEDGER_CHAIN_KEY holds 16 bytes"),
    ],
)
def test_without_a_usable_key_the_command_says_what_to_do(
    tmp_path: Path, variables: dict[str, str], expected: str
) -> None:
    with Ledger(f"sqlite:///{tmp_path / 'store' / 'ledger.sqlite'}"):
        pass  # a store made with the tests' key: only the key is missing below
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env.update(variables, LEDGER_CHAIN_KEY_FILE=str(tmp_path / "keys" / "chain.key"))
    run = subprocess.run(
        [sys.executable, "-m", "ledger.cli", "receivables"],
        env={**env, "LEDGER_STORE": f"sqlite:///{tmp_path / 'store' / 'ledger.sqlite'}"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 1, run
    assert expected in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not (tmp_path / "keys").exists()  # nothing made a key


def truncate(url: str, keep: int) -> None:
    """Remove every event after the first `keep` ones, with their links: the chain left is
    consistent with itself."""
    rows = stored(url)
    last = rows[keep - 1][0]
    guards_off(url)
    events, nid = events_and_id(url)
    assert tamper(url, f"DELETE FROM {events} WHERE {nid} > {last}") == ""
    assert tamper(url, f"DELETE FROM event_chain WHERE notification_id > {last}") == ""


def test_events_removed_from_the_end_are_found_from_a_checkpoint(
    filled: str, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "audit" / "2025-07.checkpoint.json"
    with Ledger(filled, read_models="none", existing=True) as ledger:
        head = write_checkpoint(ledger, checkpoint)
    written = json.loads(checkpoint.read_text(encoding="utf-8"))
    assert {k: written[k] for k in ("notification_id", "chain_hash", "key_id")} == (head.as_json())
    assert report(filled, [checkpoint])[HEADS] == []
    keep = len(stored(filled)) - 3
    truncate(filled, keep)
    last = stored(filled)[-1][0]
    found = report(filled, [checkpoint])
    assert found["hash chain"] == []  # the chain left is consistent with itself
    assert found[HEADS] == [
        f"notification {head.notification_id} named by {checkpoint} is missing: the history "
        f"after {last} was removed"
    ]


def test_events_removed_from_the_end_are_found_from_the_manifests(
    store_url: str, files: Files, tmp_path: Path
) -> None:
    out = tmp_path / "exports"
    with Ledger(store_url) as ledger:
        fill(ledger, files)
        exported = export_with_head(ledger, "2025-07", out)
        head = ledger.events.chain_head()
    assert report(store_url, [out])[HEADS] == []
    truncate(store_url, len(stored(store_url)) - 2)
    last = stored(store_url)[-1][0]
    found = report(store_url, [out])[HEADS]
    manifests = sorted(out / f"{f.path.stem}.manifest.json" for f in exported)
    assert found == [
        f"notification {head.notification_id} named by {manifest} is missing: the history "
        f"after {last} was removed"
        for manifest in manifests
    ]


def test_a_history_rewritten_with_the_key_is_found_from_a_checkpoint(
    filled: str, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint.json"
    with Ledger(filled, read_models="none", existing=True) as ledger:
        head = write_checkpoint(ledger, checkpoint)
    rewrite(filled, 5, "the key")
    found = report(filled, [checkpoint])
    assert found["hash chain"] == []  # whoever holds the key can make the chain hold
    assert found[HEADS] == [
        f"notification {head.notification_id} named by {checkpoint} has another link in the "
        "store than the one recorded: the history up to it was rewritten"
    ]


def test_a_head_of_another_chain_key_and_unreadable_files_are_named(
    filled: str, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint.json"
    with Ledger(filled, read_models="none", existing=True) as ledger:
        write_checkpoint(ledger, checkpoint)
        with pytest.raises(Exception, match="never replaced"):
            write_checkpoint(ledger, checkpoint)  # a checkpoint is evidence
        data = json.loads(checkpoint.read_text(encoding="utf-8"))
        data["key_id"] = key_id(OTHER_KEY)
        other = tmp_path / "other.json"
        other.write_text(json.dumps(data), encoding="utf-8")
        broken = tmp_path / "broken.json"
        broken.write_text("{", encoding="utf-8")
        heads, unreadable = read_heads([other, broken, tmp_path / "nowhere"])
        assert check_heads(ledger, heads) == [
            f"{other}: its head was made with chain key id {key_id(OTHER_KEY)}; this store's "
            f"chain is made with {key_id(KEY)}: not this store's chain"
        ]
        assert [u.split(":")[0] for u in unreadable] == [
            str(tmp_path / "nowhere"),
            str(broken),
        ]


def test_the_head_of_a_store_is_its_last_link(filled: str) -> None:
    (n, chain_hash), *_ = query_store(
        filled, "SELECT notification_id, chain_hash FROM event_chain ORDER BY 1 DESC"
    )
    with Ledger(filled, read_models="none", existing=True) as ledger:
        assert ledger.events.chain_head() == ChainHead(n, chain_hash, key_id(KEY))


def test_whether_a_store_exists_is_seen_without_making_it(
    store_url: str, files: Files, tmp_path: Path
) -> None:
    from adapters.event_store import EventStore, store_exists
    from adapters.sql import SQLiteDatabase
    from adapters.store import StoreLocation, StoreUrlError

    location = StoreLocation.parse(store_url)
    assert not store_exists(location)
    assert location.path is None or not location.path.exists()  # not even an empty file
    with Ledger(store_url) as ledger:
        assert ledger.events.created and ledger.events.exists()
        fill(ledger, files)
    assert store_exists(location)
    with Ledger(store_url, existing=True) as ledger:
        assert not ledger.events.created
        assert ledger.events.guard_problems() == []
    empty = tmp_path / "empty.sqlite"
    db = SQLiteDatabase(empty)  # a database without the ledger's tables
    try:
        with pytest.raises(StoreUrlError, match="no ledger store"):
            EventStore(StoreLocation.parse(f"sqlite:///{empty}"), db, create=False)
    finally:
        db.close()
