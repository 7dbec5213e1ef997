"""Configuration comes from one typed place: every LEDGER_* variable is read by
`ledger.config`, and a bad value is named, not crashed on. The chain key comes from
LEDGER_CHAIN_KEY or the key file LEDGER_CHAIN_KEY_FILE names, made by `create_chain_key`."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.chain_key import ChainKeyError, create_chain_key, key_id, load_chain_key
from ledger.config import BadSettings, settings
from ledger.rules import RuleViolation

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LEDGER_"):
            monkeypatch.delenv(name)
    config = settings()
    assert (config.read_timeout, config.events_topic, config.events_partitions) == (
        60.0,
        "ledger.events",
        12,
    )
    monkeypatch.setenv("LEDGER_EVENTS_PARTITIONS", "0")
    monkeypatch.setenv("LEDGER_READ_TIMEOUT", "soon")
    with pytest.raises(BadSettings) as bad:
        settings()
    assert "LEDGER_EVENTS_PARTITIONS" in str(bad.value)
    assert "LEDGER_READ_TIMEOUT" in str(bad.value)


def test_a_bad_variable_is_named_by_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "LEDGER_READ_TIMEOUT": "-5", "LEDGER_STORE": f"sqlite:///{tmp_path}/l.db"}
    env.pop("LEDGER_KAFKA", None)
    done = subprocess.run(
        [sys.executable, "-m", "ledger.cli", "receivables"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 1, done
    assert "LEDGER_READ_TIMEOUT" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_module_reads_the_environment_but_the_configuration() -> None:
    readers = [
        str(path.relative_to(ROOT))
        for package in ("ledger", "adapters", "projections", "replay")
        for path in (ROOT / package).rglob("*.py")
        if re.search(r"os\.environ|getenv\(", path.read_text(encoding="utf-8"))
    ]
    # the configuration itself names, for worker processes it starts, where their metrics go
    assert readers == ["ledger/config.py"]


# The chain key (adapters/chain_key.py): read through the configuration like every variable


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No LEDGER_CHAIN_KEY, and a key file that does not exist yet."""
    monkeypatch.delenv("LEDGER_CHAIN_KEY", raising=False)
    path = tmp_path / "keys" / "chain.key"
    monkeypatch.setenv("LEDGER_CHAIN_KEY_FILE", str(path))
    return path


def test_the_chain_key_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LEDGER_"):
            monkeypatch.delenv(name)
    config = settings()
    assert config.chain_key is None
    assert config.chain_key_file == Path(".ledger/chain.key")
    monkeypatch.setenv("LEDGER_CHAIN_KEY", "ab" * 32)
    assert "ab" * 32 not in repr(settings())  # a secret, never printed


def test_a_key_from_the_environment(no_key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_CHAIN_KEY", "AB" * 40)
    assert load_chain_key() == bytes.fromhex("ab" * 40)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("xyz", "is not a chain key: it must be hex digits only"), ("ab" * 31, "holds 31 bytes")],
)
def test_a_malformed_key_is_refused(
    no_key: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    monkeypatch.setenv("LEDGER_CHAIN_KEY", value)
    with pytest.raises(ChainKeyError, match=expected):
        load_chain_key()
    assert issubclass(ChainKeyError, RuleViolation)  # a refusal, not a traceback


def test_without_a_key_the_refusal_says_what_to_do(no_key: Path) -> None:
    with pytest.raises(ChainKeyError) as refused:
        load_chain_key()
    assert "run `ledger init`" in str(refused.value)
    assert "LEDGER_CHAIN_KEY" in str(refused.value)
    assert str(no_key) in str(refused.value)


def test_a_key_file_is_made_once_readable_by_its_owner_only(no_key: Path) -> None:
    assert create_chain_key() == no_key
    assert stat.S_IMODE(no_key.stat().st_mode) == 0o600
    text = no_key.read_text(encoding="ascii")
    assert re.fullmatch(r"[0-9a-f]{64}\n", text)
    assert load_chain_key() == bytes.fromhex(text)
    with pytest.raises(ChainKeyError, match="never replaced"):
        create_chain_key()
    assert no_key.read_text(encoding="ascii") == text
    assert [p.name for p in no_key.parent.iterdir()] == ["chain.key"]  # no temporary file left


def test_a_key_file_others_can_read_is_refused(no_key: Path) -> None:
    create_chain_key()
    no_key.chmod(0o644)
    with pytest.raises(ChainKeyError, match="chmod 600"):
        load_chain_key()


def test_a_malformed_key_file_is_refused(no_key: Path) -> None:
    no_key.parent.mkdir()
    no_key.write_text("not a key\n", encoding="ascii")
    no_key.chmod(0o600)
    with pytest.raises(ChainKeyError, match="is not a chain key"):
        load_chain_key()


def test_a_key_id_is_a_short_public_fingerprint() -> None:
    key = bytes(range(32))
    assert re.fullmatch(r"[0-9a-f]{16}", key_id(key))
    assert key_id(key) == key_id(bytes(range(32)))
    assert key_id(key) != key_id(bytes(range(1, 33)))
    assert key_id(key) not in key.hex()
