"""`ledger demo` tells the whole story end to end, on a smaller data set than its default."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.reference import provinces as provinces_in_force


@pytest.mark.e2e
@pytest.mark.parametrize("seed", [1, 2025])
def test_demo_runs_eight_cycles_and_its_exports_match_their_manifests(
    tmp_path: Path, seed: int
) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "ledger.cli",
            "demo",
            "--beneficiaries",
            "3000",
            "--seed",
            str(seed),
            "--out",
            "out",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    periods = ("2025-05", "2025-06", "2025-07", "2025-08", "2025-09", "2025-10", "2025-11")
    for period in (*periods, "2025-12"):
        assert f"payroll {period}" in run.stdout
    assert "books balance: yes" in run.stdout
    assert "reconciles with the control account: yes" in run.stdout
    assert "raised to 550,000 VND back-dated" in run.stderr

    manifests = sorted((tmp_path / "out").glob("*.manifest.json"))
    assert len(manifests) >= 8 * 34
    # rule 9: a third of the people are recorded under a former province's code; lists follow
    # it until June 2025, and there is one list per new province from July
    provinces = {
        period: {m.name.split("_")[1] for m in manifests if m.name.startswith(period)}
        for period in ("2025-06", "2025-07")
    }
    assert len(provinces["2025-06"]) == 63
    assert provinces["2025-07"] == set(provinces_in_force())
    for manifest_path in manifests:
        manifest = json.loads(manifest_path.read_text())
        data = (tmp_path / "out" / manifest["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
        rows = data.decode().splitlines()[1:]
        assert len(rows) == manifest["rows"]
        assert sum(int(r.rsplit(",", 1)[1]) for r in rows) == manifest["total_amount"]
    # every input went through the operators' files
    inputs = {p.name.split("-")[0] for p in (tmp_path / "out" / "inputs").iterdir()}
    assert inputs == {"enrolment", "deaths", "settlement"}
