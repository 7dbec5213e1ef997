"""Configuration comes from one typed place: every LEDGER_* variable is read by
`ledger.config`, and a bad value is named, not crashed on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.config import BadSettings, settings

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
    assert readers == []
