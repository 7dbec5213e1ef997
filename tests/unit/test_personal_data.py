"""Personal data sealed in the stored events (adapters/personal_data.py) with keys kept out of
the store (adapters/cipher_keys.py):

- whatever an event holds, sealing then opening gives it back, and the sealed form holds no
  personal value in the clear (names, dates of birth, account numbers, claimants, the lines'
  payees), while the facts the ledger searches on stay readable;
- each ciphertext names its key; a rotation adds a key that seals from then on, and the old
  ones still open what they sealed; a key not given is named; an altered ciphertext, key id
  or list of fields does not open;
- the key file is made private, refused when others can read it, never half-written."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.cipher_keys import (
    CipherKeyError,
    KeyRing,
    cipher_key_id,
    create_cipher_key_file,
    load_key_ring,
    rotate_cipher_key,
)
from adapters.personal_data import PersonalData, SealBroken
from adapters.transcoder import LedgerTranscoder
from ledger.personal import PERSONAL_COLUMNS, PERSONAL_FIELDS, SEALED, sealed_fields
from ledger.rules import ISSUED_FIELDS

OLD, NEW = bytes(range(32)), bytes(range(1, 33))


def ring(*keys: bytes) -> KeyRing:
    return KeyRing({cipher_key_id(k): k for k in keys}, "the test's keys")


def personal(*keys: bytes) -> PersonalData:
    return PersonalData(lambda: ring(*keys))


# personal values long enough to be found if they leaked (a short one, "1", would be found
# in any timestamp)
# (no lone surrogates: no input lets one in, and UTF-8 has none)
texts = st.characters(blacklist_categories=("Cs",), blacklist_characters="«»")
secrets_ = st.text(texts, min_size=6, max_size=30).map(lambda s: f"«{s}»")
clear_text = st.text(texts, max_size=12)


@st.composite
def event_states(draw: Any) -> dict[str, Any]:
    state: dict[str, Any] = {"personal_id": draw(st.from_regex(r"\d{12}", fullmatch=True))}
    for name in sorted(PERSONAL_FIELDS):
        choice = draw(st.sampled_from(["absent", "null", "value"]))
        if choice == "null":
            state[name] = None
        elif choice == "value":
            if name == "claimant":
                state[name] = {"personal_id": "009999999999", "name": draw(secrets_)}
            else:
                state[name] = draw(secrets_)
    if draw(st.booleans()):
        columns = list(ISSUED_FIELDS)
        state["columns"] = columns
        state["lines"] = [
            [draw(secrets_) if c in PERSONAL_COLUMNS else draw(clear_text) for c in columns]
            for _ in range(draw(st.integers(0, 4)))
        ]
    state["actor"] = draw(clear_text)
    return state


def secrets_of(state: dict[str, Any]) -> list[str]:
    found = [
        v if isinstance(v, str) else v["name"]
        for k, v in state.items()
        if k in PERSONAL_FIELDS and v is not None
    ]
    if "lines" in state:
        at = [i for i, c in enumerate(state["columns"]) if c in PERSONAL_COLUMNS]
        found += [line[i] for line in state["lines"] for i in at]
    return found


@settings(max_examples=150, deadline=None)
@given(event_states())
def test_sealing_then_opening_gives_the_event_back_and_no_personal_value_is_left_in_the_clear(
    state: dict[str, Any],
) -> None:
    given_state = orjson.loads(orjson.dumps(state))  # the event's own, left untouched
    sealer = personal(OLD)
    sealed = sealer.seal(state)
    assert state == given_state  # the event's own fields and lines are not changed
    text = orjson.dumps(sealed).decode()
    for value in secrets_of(state):
        assert value not in text
    assert sealed["personal_id"] == state["personal_id"]  # searched on: readable
    if secrets_of(state):
        assert sealed[SEALED]["key"] == cipher_key_id(OLD)
    else:
        assert sealed is state  # nothing to seal: stored as it was
    # opened by another instance holding the key, as another process would
    assert personal(OLD).unseal(orjson.loads(text)) == given_state


def test_the_transcoder_seals_what_it_writes_and_opens_what_it_reads() -> None:
    transcoder = LedgerTranscoder(personal(OLD))
    state = {"personal_id": "001000000001", "full_name": "Nguyễn Thị Ánh", "sex": "F"}
    data = transcoder.encode(dict(state))
    assert "Nguyễn".encode() not in data and b"001000000001" in data
    assert transcoder.decode(data) == state
    stored = transcoder.decode_stored(data)  # as ledger.events carries it
    assert stored[SEALED]["fields"] == ["full_name"] and "full_name" not in stored
    assert sealed_fields(stored) == {"full_name"}
    text = transcoder.encode_text(dict(state))  # the bulk enrolment's way
    assert "Nguyễn".encode() not in text and transcoder.decode(text) == state


def test_a_correction_naming_a_claimant_says_so_without_a_key() -> None:
    sealed = personal(OLD).seal({"registration_number": "KT-1", "claimant": {"name": "Con"}})
    assert "claimant" in sealed_fields(orjson.loads(orjson.dumps(sealed)))
    assert sealed_fields({"registration_number": "KT-1", "claimant": None}) == frozenset()


def test_after_a_rotation_new_events_name_the_new_key_and_old_ones_still_open() -> None:
    before = personal(OLD).seal({"full_name": "Trần Văn Bình"})
    after = personal(OLD, NEW).seal({"full_name": "Lê Thị Cúc"})
    assert before[SEALED]["key"] == cipher_key_id(OLD)
    assert after[SEALED]["key"] == cipher_key_id(NEW)
    both = personal(OLD, NEW)
    assert both.unseal(dict(before)) == {"full_name": "Trần Văn Bình"}
    assert both.unseal(dict(after)) == {"full_name": "Lê Thị Cúc"}


def test_a_key_not_given_is_named() -> None:
    sealed = personal(OLD).seal({"full_name": "Trần Văn Bình"})
    with pytest.raises(CipherKeyError) as missing:
        personal(NEW).unseal(dict(sealed))
    message = str(missing.value)
    assert cipher_key_id(OLD) in message and cipher_key_id(NEW) in message
    assert not isinstance(missing.value, SealBroken)

    def no_keys() -> KeyRing:
        raise CipherKeyError("no cipher key: .ledger/cipher.keys does not exist")

    with pytest.raises(CipherKeyError, match="no cipher key"):
        PersonalData(no_keys).unseal(dict(sealed))
    # an event without personal data needs no key at all
    assert PersonalData(no_keys).seal({"reason": "moved"}) == {"reason": "moved"}


def flipped(data: str) -> str:
    raw = bytearray(base64.b64decode(data))
    raw[-1] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "alter",
    [
        lambda e: e | {"data": flipped(e["data"])},
        lambda e: e | {"fields": ["date_of_birth"]},  # relabelled: a name read as a birth date
        lambda e: e | {"data": e["data"][:10]},
        lambda e: e | {"data": "not base64!"},
        lambda e: {k: v for k, v in e.items() if k != "fields"},
    ],
)
def test_an_altered_seal_does_not_open(alter: Any) -> None:
    sealed = personal(OLD).seal({"full_name": "Trần Văn Bình"})
    sealed[SEALED] = alter(sealed[SEALED])
    with pytest.raises(SealBroken, match="altered"):
        personal(OLD).unseal(sealed)


def test_a_seal_moved_to_another_key_id_does_not_open() -> None:
    sealed = personal(OLD).seal({"full_name": "Trần Văn Bình"})
    sealed[SEALED]["key"] = cipher_key_id(NEW)  # the key exists, but did not seal this
    with pytest.raises(SealBroken):
        personal(OLD, NEW).unseal(sealed)


def test_two_seals_of_the_same_values_differ() -> None:
    """A random nonce each time: equal names are not visible as equal ciphertexts."""
    sealer = personal(OLD)
    a, b = (sealer.seal({"full_name": "Trần Văn Bình"}) for _ in range(2))
    assert a[SEALED]["data"] != b[SEALED]["data"]


# the key file and the environment


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LEDGER_CIPHER_KEY", raising=False)
    path = tmp_path / "keys" / "cipher.keys"
    monkeypatch.setenv("LEDGER_CIPHER_KEY_FILE", str(path))
    return path


def test_the_key_file_is_made_private_once_and_rotated_without_losing_a_key(
    key_file: Path,
) -> None:
    assert create_cipher_key_file() == key_file
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first = load_key_ring()
    assert create_cipher_key_file() is None  # never replaced
    assert load_key_ring() == first
    new, kept = rotate_cipher_key()
    rotated = load_key_ring()
    assert kept == [first.current] and rotated.current == new != first.current
    assert rotated.keys[first.current] == first.keys[first.current]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == ["cipher.keys"]  # nothing staged left


def test_a_key_file_others_can_read_is_refused(key_file: Path) -> None:
    create_cipher_key_file()
    os.chmod(key_file, 0o644)
    with pytest.raises(CipherKeyError, match="can be read by others"):
        load_key_ring()


def test_without_keys_the_refusal_says_what_to_do(key_file: Path) -> None:
    with pytest.raises(CipherKeyError, match="restore its key file"):
        load_key_ring()
    with pytest.raises(CipherKeyError, match="restore its key file"):
        rotate_cipher_key()
    assert not key_file.exists()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("not hex", "LEDGER_CIPHER_KEY, key 1: not a cipher key"),
        ("ab" * 16, "LEDGER_CIPHER_KEY, key 1: holds 16 bytes"),
        (f"{OLD.hex()},{'cd' * 40}", "LEDGER_CIPHER_KEY, key 2: holds 40 bytes"),
        (" , ", "LEDGER_CIPHER_KEY holds no key"),
    ],
)
def test_a_malformed_key_in_the_environment_is_refused_by_its_place(
    key_file: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    monkeypatch.setenv("LEDGER_CIPHER_KEY", value)
    with pytest.raises(CipherKeyError) as refused:
        load_key_ring()
    assert expected in str(refused.value)
    assert "cd" * 8 not in str(refused.value)  # a key is never printed


def test_keys_in_the_environment_oldest_first_and_never_rotated_there(
    key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_CIPHER_KEY", f"{OLD.hex()}, {NEW.hex()}")
    keys = load_key_ring()
    assert list(keys.keys) == [cipher_key_id(OLD), cipher_key_id(NEW)]
    assert keys.current == cipher_key_id(NEW)
    with pytest.raises(CipherKeyError, match="rotate by adding a new key"):
        rotate_cipher_key()
    assert not key_file.exists()


def test_a_seal_is_bound_to_its_own_event() -> None:
    """Moved to another person's event, or left in an event whose readable facts changed (an
    insider who can also make the hash chain hold), it does not open."""
    sealer = personal(OLD)
    a = sealer.seal({"personal_id": "001000000001", "full_name": "Trần Văn Bình"})
    b = sealer.seal({"personal_id": "001000000002", "full_name": "Lê Thị Cúc"})
    with pytest.raises(SealBroken):
        personal(OLD).unseal(b | {SEALED: a[SEALED]})
    with pytest.raises(SealBroken):
        personal(OLD).unseal(a | {"personal_id": "001000000003"})
    # the time recorded is not bound: ledger.events carries it apart from the payload
    moved = a | {"timestamp": "elsewhere"}
    assert personal(OLD).unseal(moved)["full_name"] == "Trần Văn Bình"


def test_a_rotation_under_way_refuses_another_and_no_key_is_lost(key_file: Path) -> None:
    create_cipher_key_file()
    first = load_key_ring()
    staged = key_file.with_name(f".{key_file.name}.rotating")
    staged.write_text("")  # another rotation holds it
    with pytest.raises(CipherKeyError, match="another rotation is under way"):
        rotate_cipher_key()
    assert load_key_ring() == first and staged.exists()  # its file left to it
    staged.unlink()
    new, _ = rotate_cipher_key()
    assert list(load_key_ring().keys) == [first.current, new]


def test_a_linked_key_file_is_rotated_where_it_lives(key_file: Path, tmp_path: Path) -> None:
    create_cipher_key_file()
    target = tmp_path / "vault" / "cipher.keys"
    target.parent.mkdir()
    key_file.rename(target)
    key_file.symlink_to(target)
    new, _ = rotate_cipher_key()
    assert key_file.is_symlink() and key_file.resolve() == target
    assert new in load_key_ring().keys and len(target.read_text().split()) == 2


@pytest.mark.parametrize("kind", ["fifo", "folder", "huge"])
def test_a_key_file_that_is_not_a_small_regular_file_is_refused(key_file: Path, kind: str) -> None:
    key_file.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(key_file, 0o600)  # reading it would wait for ever
    elif kind == "folder":
        key_file.mkdir(mode=0o700)
    else:
        key_file.write_text("ab" * 40_000)
        os.chmod(key_file, 0o600)
    with pytest.raises(CipherKeyError, match="not a regular file|not a key file"):
        load_key_ring()
