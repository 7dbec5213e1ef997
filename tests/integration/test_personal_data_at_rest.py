"""Personal data at rest, on the real PostgreSQL server and the real Kafka broker:

- after enrolments, death registrations naming claimants and an approved payroll, no name, date
  of birth or account number is found in the stored events' bytes, nor in any message on
  `ledger.events`; the payment files (for the bank and the post office) carry them in the clear,
  and so do the events read back from Kafka by a process holding the key;
- `ledger keys rotate` makes a new key seal what follows; `verify`, `replay` and `explain` read
  both; without the keys, or without the old one, they refuse and name the key missing;
- a seal moved to another event, by an insider who can also make the chain hold, is found."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.chain import link
from adapters.cipher_keys import cipher_key_id
from ledger.application import Ledger
from ledger.personal import SEALED
from ledger.rules import RuleViolation
from replay.rebuild import kafka_events
from replay.verify import verify
from tests.conftest import Files, death, enrolment, new_store, query_store
from tests.integration.test_publish import consume_all, publish_once, unique_topic
from tests.integration.test_store_guarantees import KEY, stored, tamper
from tests.integration.test_verify import alter_event, events_and_id, guards_off

pytestmark = pytest.mark.integration

PEOPLE = [f"0010000{i:05d}" for i in range(6)]


def person(i: int) -> dict[str, Any]:
    """An enrolment whose personal values are found nowhere else in the store."""
    return enrolment(
        PEOPLE[i],
        full_name=f"Phạm Thị Riêng{i}",
        date_of_birth=f"1931-0{i + 1}-2{i}",
        channel="BANK",
        bank_code="VCB",
        account_number=f"97042299887766{i:02d}",
    )


SECRETS = [
    v
    for i in range(len(PEOPLE))
    for k, v in person(i).items()
    if k in ("full_name", "date_of_birth", "account_number")
]
CLAIMANT = {
    "claimant_name": "Hoàng Văn Thừakế",
    "claimant_channel": "BANK",
    "claimant_bank_code": "VCB",
    "claimant_account_number": "1903998877665544",
}
SECRETS += ["Hoàng Văn Thừakế", "1903998877665544", "Người Mất Riêng"]


def fill(ledger: Ledger, files: Files) -> None:
    ledger.enrol(files.enrolments([person(i) for i in range(len(PEOPLE))]), "maker")
    ledger.import_deaths(
        files.deaths([death(PEOPLE[0], full_name="Người Mất Riêng", **CLAIMANT)]), "registry"
    )
    ledger.run_payroll("2025-07", None, "maker")
    ledger.approve_payroll("2025-07", None, "checker")


def leaked(data: bytes) -> list[str]:
    return [s for s in SECRETS if s.encode() in data]


def test_no_personal_value_is_stored_or_published_in_the_clear(
    files: Files, kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = new_store("postgresql", tmp_path, request)
    settings = unique_topic()
    with Ledger(store) as ledger:
        fill(ledger, files)
        assert publish_once(ledger, kafka_bootstrap, settings) > 0
        exported = ledger.export_payroll("2025-07", None, tmp_path / "out")
    states = [bytes(s) for (s,) in query_store(store, "SELECT state FROM ledger_events")]
    sealed = [s for s in states if SEALED.encode() in s]
    # the enrolments, the registration, the list's lines: each sealed with the tests' key
    assert len(sealed) >= len(PEOPLE) + 2
    key = cipher_key_id(bytes.fromhex(os.environ["LEDGER_CIPHER_KEY"]))
    assert all(orjson.loads(s)[SEALED]["key"] == key for s in sealed)
    assert [leaked(s) for s in states if leaked(s)] == []
    # what the ledger searches on stays readable: each person's id
    assert all(any(p.encode() in s for s in states) for p in PEOPLE)

    messages = consume_all(kafka_bootstrap, settings.name)
    assert len(messages) == len(states)
    assert [leaked(m.value) for m in messages if leaked(m.value)] == []
    assert all(not leaked(v) for m in messages for _, v in m.headers)

    # the files that pay carry them in the clear, as the bank needs them
    paid = b"".join(Path(f.path).read_bytes() for f in exported.files)
    assert "Phạm Thị Riêng1".encode() in paid and b"9704229988776601" in paid
    assert "Hoàng Văn Thừakế".encode() in paid and b"1903998877665544" in paid
    # and a process holding the key reads them back from Kafka
    payloads = [e.payload for batch in kafka_events(kafka_bootstrap, settings.name) for e in batch]
    names = {p.get("full_name") for p in payloads}
    assert {"Phạm Thị Riêng0", "Người Mất Riêng"} <= names
    assert not any(SEALED in p for p in payloads)


def ledger_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.ledger_as_role", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_rotated_key_seals_what_follows_and_every_key_is_needed_to_read(
    store_url: str, files: Files, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys" / "cipher.keys"
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_CIPHER_KEY"}
    env |= {"LEDGER_STORE": store_url, "LEDGER_CIPHER_KEY_FILE": str(key_file)}
    env["LEDGER_USER"] = "maker"
    made = ledger_cli(env, "init")
    assert made.returncode == 0, made.stderr
    assert f"cipher key made at {key_file}" in made.stdout
    first = key_file.read_text().split()[0]
    before = ledger_cli(env, "enrol", str(files.enrolments([person(0), person(1)])))
    assert before.returncode == 0, before.stderr

    rotated = ledger_cli(env, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    old_id = cipher_key_id(bytes.fromhex(first))
    second = key_file.read_text().split()[1]
    new_id = cipher_key_id(bytes.fromhex(second))
    assert new_id in rotated.stdout and old_id in rotated.stdout
    listed = ledger_cli(env, "keys", "list", "--json")
    assert [k["key_id"] for k in orjson.loads(listed.stdout)["keys"]] == [old_id, new_id]
    after = ledger_cli(env, "enrol", str(files.enrolments([person(2)])))
    assert after.returncode == 0, after.stderr

    table = "stored_events" if store_url.startswith("sqlite") else "ledger_events"
    keys = [
        orjson.loads(bytes(s))[SEALED]["key"]
        for (s,) in query_store(store_url, f"SELECT state FROM {table}")
        if SEALED.encode() in bytes(s)
    ]
    assert keys == [old_id, old_id, new_id]  # nothing written before was re-encrypted

    for args in (("verify",), ("replay", "--as-of", "2025-07-31")):
        ok = ledger_cli(env, *_at(args, tmp_path, "ok"))
        assert ok.returncode == 0, ok.stdout + ok.stderr
    explained = ledger_cli(env, "explain", PEOPLE[0])
    assert explained.returncode == 0 and "Phạm Thị Riêng0" in explained.stdout

    # only the new key: the old one is named as missing, by every reader
    only_new = {**env, "LEDGER_CIPHER_KEY": second}
    for args in (("verify",), ("replay", "--as-of", "2025-07-31"), ("explain", PEOPLE[1])):
        refused = ledger_cli(only_new, *_at(args, tmp_path, "new"))
        assert refused.returncode == 1, refused.stdout
        assert old_id in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    # no keys at all: the same, with what to do
    shutil.move(key_file, tmp_path / "away.keys")
    for args in (("verify",), ("replay", "--as-of", "2025-07-31")):
        refused = ledger_cli(env, *_at(args, tmp_path, "none"))
        assert refused.returncode == 1, refused.stdout
        assert f"sealed with cipher key {old_id}" in refused.stderr, refused.stderr
        assert "restore its key file" in refused.stderr and "Traceback" not in refused.stderr


def _at(args: tuple[str, ...], tmp_path: Path, name: str) -> tuple[str, ...]:
    """A replay writes its tables to a file of its own each time."""
    if args[0] == "replay":
        return (*args, "--out", str(tmp_path / f"replay-{name}.sqlite"))
    return args


def test_seals_swapped_by_an_insider_who_holds_the_chain_key_are_found(
    store_url: str, files: Files
) -> None:
    """Someone who can write the store and holds the chain key, but not the cipher key, swaps
    two people's sealed particulars (one would be paid into the other's account) and makes
    the chain hold again: each seal is bound to its own event, and verify names both."""
    with Ledger(store_url) as ledger:
        ledger.enrol(files.enrolments([person(0), person(1)]), "maker")
    rows = [r for r in stored(store_url) if r[3].endswith("Beneficiary.Enrolled")]
    (n0, *_, a), (n1, *_, b) = rows
    seal_a, seal_b = orjson.loads(a)[SEALED], orjson.loads(b)[SEALED]
    assert seal_a["fields"] == seal_b["fields"]  # the same key, the same fields: swappable
    swapped = {
        n0: a.replace(orjson.dumps(seal_a), orjson.dumps(seal_b)),
        n1: b.replace(orjson.dumps(seal_b), orjson.dumps(seal_a)),
    }
    guards_off(store_url)
    for n, state in swapped.items():
        rewrite(store_url, n, state)
    relink(store_url, first=n0)
    with Ledger(store_url, read_models="none", existing=True) as ledger:
        checks = {c.name: c.findings for c in verify(ledger).checks}
    assert checks["hash chain"] == []  # the insider made it hold
    found = " ".join(checks["read models"] + checks["books"])
    assert f"notification {n0}" in found and "does not open" in found, checks


def rewrite(url: str, n: int, state: bytes) -> None:
    """An insider's new bytes for stored event `n` (the guards already switched off)."""
    events, nid = events_and_id(url)
    literal = f"X'{state.hex()}'" if url.startswith("sqlite") else f"'\\x{state.hex()}'"
    assert tamper(url, f"UPDATE {events} SET state = {literal} WHERE {nid} = {n}") == ""


def relink(url: str, first: int) -> None:
    """Every link from `first` on computed again with the chain key, as its holder can."""
    previous: bytes | None = None
    for n, originator, version, topic, state in stored(url):
        if n < first:
            previous = None
            continue
        if previous is None:
            (before,) = query_store(
                url, "SELECT chain_hash FROM event_chain WHERE notification_id < ?"
                " ORDER BY notification_id DESC LIMIT 1", (n,),
            )[0]  # fmt: skip
            previous = bytes.fromhex(before)
        previous = link(KEY, previous, n, originator, version, topic, state)
        change = f"UPDATE event_chain SET chain_hash = '{previous.hex()}'"
        assert tamper(url, f"{change} WHERE notification_id = {n}") == ""


@pytest.mark.parametrize("holds", ["the chain key", "both keys"])
def test_lines_rewritten_by_key_holders_are_not_exported(
    store_url: str, files: Files, tmp_path: Path, holds: str
) -> None:
    """Someone who can write the store rewrites an approved list's lines (one payee's id, and
    so who is paid) and makes the chain hold. Holding only the chain key, they cannot seal the
    payees' particulars to the new lines: the seal does not open. Holding the cipher key too,
    they can: the lines no longer reproduce the approval's digest. Either way nothing is
    written."""
    with Ledger(store_url) as ledger:
        ledger.enrol(files.enrolments([person(i) for i in range(3)]), "maker")
        ledger.run_payroll("2025-07", None, "maker")
        ledger.approve_payroll("2025-07", None, "checker")
        transcoder = ledger.app.mapper.transcoder
    (n, *_, state), *_ = [r for r in stored(store_url) if r[3].endswith("LinesIssued")]
    if holds == "the chain key":
        rewritten = state.replace(f'"{PEOPLE[1]}"'.encode(), b'"001000009999"')
    else:
        facts = transcoder.decode(state)
        for line in facts["lines"]:
            if line[facts["columns"].index("personal_id")] == PEOPLE[1]:
                line[facts["columns"].index("account_number")] = "1111222233334444"
        rewritten = transcoder.encode(facts)
    assert rewritten != state
    guards_off(store_url)
    rewrite(store_url, n, rewritten)
    relink(store_url, first=n)
    out = tmp_path / "out"
    with Ledger(store_url) as ledger, pytest.raises(RuleViolation) as refused:
        ledger.export_payroll("2025-07", None, out)
    message = str(refused.value)
    assert message.startswith("payroll 2025-07 01: "), message
    expected = "does not open" if holds == "the chain key" else "digest recorded at approval"
    assert expected in message and "ledger verify" in message
    assert not out.exists() or list(out.iterdir()) == []


def test_without_its_key_file_init_makes_no_new_key_and_verify_still_checks_the_chain(
    store_url: str, files: Files, tmp_path: Path
) -> None:
    """The key file lost (or the command run from another folder): `init` does not make a new
    key for a store whose data another key sealed, and `verify` still checks what needs no
    key (here: an altered event), naming the key the rest needs."""
    key_file = tmp_path / "keys" / "cipher.keys"
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_CIPHER_KEY"}
    env |= {"LEDGER_STORE": store_url, "LEDGER_CIPHER_KEY_FILE": str(key_file)}
    env["LEDGER_USER"] = "maker"
    assert ledger_cli(env, "init").returncode == 0
    assert ledger_cli(env, "enrol", str(files.enrolments([person(0)]))).returncode == 0
    key_id = cipher_key_id(bytes.fromhex(key_file.read_text().split()[0]))
    shutil.move(key_file, tmp_path / "away.keys")

    again = ledger_cli(env, "init")
    assert again.returncode == 1, again.stdout
    assert f"sealed with cipher key {key_id}" in again.stderr
    assert "no new key is made" in again.stderr and "Traceback" not in again.stderr
    assert not key_file.exists()

    n = stored(store_url)[-1][0]
    alter_event(store_url, n)
    checked = ledger_cli(env, "verify")
    assert checked.returncode == 1
    assert f"notification {n}: altered" in checked.stdout  # the chain, checked without a key
    assert f"sealed with cipher key {key_id}" in checked.stderr
    assert "could not be checked without the cipher keys" in checked.stderr
