"""Payroll at a tenth of the country on the embedded store.

Makes a store with `ledger init` and enrols N beneficiaries (default 380,000; set-up, not
measured), then times `ledger payroll run`, `payroll approve`, `payroll export` and `settle` (a
results file for every line) as an operator runs them: each a separate `ledger` process, whose
peak resident memory is read from the kernel. Prints a table and compares with the targets: the
four under 60 s together, each under 2 GiB. Then times the auditor's `verify` and `replay
--check-issued` on the same store (no target).

The store's chain key is `LEDGER_CHAIN_KEY` when set, else a throwaway key made here (written
to DIR/chain.key with --keep, so that the kept store can still be verified).

    python bench/payroll_bench.py [--beneficiaries N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ledger.demo import Story, claim_directory  # noqa: E402
from ledger.inputs import ENROLMENT_COLUMNS, SETTLEMENT_COLUMNS  # noqa: E402

TARGET_SECONDS = 60.0
TARGET_MEMORY_MIB = 2048
PERIOD = "2025-07"


@dataclass
class Running:
    """A `ledger` process started, its output going to files (a pipe left unread would
    stop it once full)."""

    args: tuple[str, ...]
    proc: subprocess.Popen[str]
    out: Any
    err: Any
    started: float


@dataclass
class Finished:
    args: tuple[str, ...]
    seconds: float
    peak_mib: float
    status: int
    stdout: str
    stderr: str


# A PostgreSQL store's commands run as the ledger's roles, as in production: never as the
# owner. By the owner's URL: the URL of each role's login (`make_store`), and the `ledger
# project` that keeps its read models when Kafka does not.
_ROLE_URLS: dict[str, dict[str, str]] = {}
_FOLLOWERS: dict[str, subprocess.Popen[bytes]] = {}
_KINDS = ("operator", "approver", "auditor", "projector")


def make_store(owner: str, follow: bool = True) -> None:
    """`ledger init` as the owner of the store `owner` names, a login role for each of the
    ledger's roles, and (unless not `follow`) `ledger project` following the store as the
    projector: on PostgreSQL without Kafka the commands wait for it. From then on a command
    given `owner` runs as the role it needs (its actor: that role)."""
    succeeded(finish(start(owner, "init", "--role-prefix", _prefix(owner))))
    attach(owner, follow)


def attach(owner: str, follow: bool = True) -> None:
    """The logins of a store `make_store` made (a password of this run's given to each), and
    (unless not `follow`) `ledger project` following it: a kept store opened again."""
    password = secrets.token_urlsafe(18)
    with tempfile.NamedTemporaryFile("w", suffix=".password") as file:
        file.write(password + "\n")
        file.flush()
        urls = {}
        for kind in _KINDS:
            name = f"{_prefix(owner)}{kind}_login"
            add = ("users", "add", name, "--role", kind, "--password-file", file.name)
            succeeded(finish(start(owner, *add)))
            scheme, rest = owner.split("://", 1)
            urls[kind] = f"{scheme}://{name}:{password}@{rest.split('@', 1)[-1]}"
    _ROLE_URLS[owner] = urls
    if follow:
        env = {k: v for k, v in os.environ.items() if k not in ("LEDGER_KAFKA", "LEDGER_USER")}
        _FOLLOWERS[owner] = subprocess.Popen(
            [sys.executable, "-m", "ledger.cli", "project", "--store", urls["projector"]],
            env=env,
            stdout=subprocess.DEVNULL,
        )


def role_url(owner: str, kind: str = "projector") -> str:
    """The URL of a store made by `make_store`, as one of its roles' logins."""
    return _ROLE_URLS[owner][kind]


def stop_store(owner: str) -> None:
    """The store's follower stopped (before its database is dropped)."""
    follower = _FOLLOWERS.pop(owner, None)
    if follower is not None:
        follower.terminate()
        follower.wait(timeout=60)


def _prefix(owner: str) -> str:
    """Role names of this store's own (role names are the server's, not a database's): a
    digest of its database's name, within the 16 characters a prefix may have."""
    return "b" + hashlib.sha256(owner.rsplit("/", 1)[1].encode()).hexdigest()[:10] + "_"


def _as_role(store: str, args: tuple[str, ...], env: dict[str, str]) -> str:
    """The URL to run `ledger ARGS` with: the role's login the command needs, if the store
    was made by `make_store` (and then no LEDGER_USER: the role is the actor)."""
    urls = _ROLE_URLS.get(store)
    if urls is None:
        return store
    from ledger.cli import build_parser

    needs = build_parser().parse_args(list(args)).needs
    kind = {"reader": "auditor"}.get(needs, needs)
    if kind not in urls:
        return store  # the owner's commands, and those that open no store
    env.pop("LEDGER_USER", None)
    return urls[kind]


def start(store: str, *args: str, env: dict[str, str] | None = None) -> Running:
    """Start one `ledger` command (in this process's environment unless `env` is given)."""
    env = dict(os.environ if env is None else env)
    store = _as_role(store, args, env)
    # closed by finish(): they outlive this call while the process runs
    out = tempfile.TemporaryFile("w+")  # noqa: SIM115
    err = tempfile.TemporaryFile("w+")  # noqa: SIM115
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledger.cli", *args, "--store", store],
        stdout=out,
        stderr=err,
        env=env,
        text=True,
    )
    return Running(args, proc, out, err, started)


def finish(running: Running) -> Finished:
    """Wait for a started command: its seconds since it started and its peak memory."""
    # wait4 rather than wait: the kernel's account of this one process's peak memory
    _, status, usage = os.wait4(running.proc.pid, 0)
    seconds = time.perf_counter() - running.started
    running.proc.returncode = os.waitstatus_to_exitcode(status)
    with running.out, running.err:
        running.out.seek(0)
        running.err.seek(0)
        return Finished(
            running.args,
            seconds,
            usage.ru_maxrss / 1024,
            running.proc.returncode,
            running.out.read(),
            running.err.read(),
        )


def succeeded(done: Finished) -> Finished:
    if done.status:
        raise SystemExit(f"ledger {' '.join(done.args)} failed:\n{done.stderr}")
    return done


def ledger(store: str, *args: str, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run one `ledger` command; (seconds, peak RSS MiB, stdout)."""
    done = succeeded(finish(start(store, *args, env=env)))
    return done.seconds, done.peak_mib, done.stdout


def chain_key(work: Path, keep: bool) -> None:
    """Throwaway keys for the bench's own store (its chain key, and the key that seals its
    personal data), in this process's environment (the `ledger` processes inherit them),
    unless LEDGER_CHAIN_KEY / LEDGER_CIPHER_KEY are set: never the key files of the directory
    the bench runs from. With --keep, also written beside the kept store."""
    for variable, name in (("LEDGER_CHAIN_KEY", "chain.key"), ("LEDGER_CIPHER_KEY", "cipher.keys")):
        if os.environ.get(variable, "").strip():
            continue
        key = secrets.token_hex(32)
        os.environ[variable] = key
        if keep:
            fd = os.open(work / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(key + "\n")
            print(
                f"set-up: the store's key is {work / name} "
                f"({variable}_FILE={work / name} to open the kept store)",
                file=sys.stderr,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beneficiaries", type=int, default=380_000)
    parser.add_argument("--keep", help="keep the store and files in this directory")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="ansinh-bench-"))
    claim_directory(work, "the payroll benchmark")
    (work / "inputs").mkdir(parents=True)
    store = f"sqlite:///{work / 'ledger.sqlite'}"
    os.environ["LEDGER_USER"] = "bench"
    chain_key(work, bool(args.keep))
    ledger(store, "init")  # set-up: every other command needs the store made

    story = Story(random.Random(7), work / "inputs")
    chunk = 50_000
    started = time.perf_counter()
    for i in range(0, args.beneficiaries, chunk):
        rows = story.enrolments(min(chunk, args.beneficiaries - i), ["2025-05", PERIOD, PERIOD])
        path = story.write(f"enrol-{i // chunk:03d}.csv", ENROLMENT_COLUMNS, rows)
        ledger(store, "enrol", str(path))
        print(
            f"set-up: enrolled {i + len(rows):,} beneficiaries "
            f"({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
        )

    steps: list[tuple[str, float, float]] = []
    s, m, _ = ledger(store, "payroll", "run", "--period", PERIOD, "--by", "maker")
    steps.append(("payroll run", s, m))
    s, m, _ = ledger(store, "payroll", "approve", "--period", PERIOD, "--by", "checker")
    steps.append(("payroll approve", s, m))
    s, m, _ = ledger(store, "payroll", "export", "--period", PERIOD, "--out", str(work / "out"))
    steps.append(("payroll export", s, m))

    results = work / "inputs" / "settlement.csv"
    outcomes = 0
    with results.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(SETTLEMENT_COLUMNS)
        for export in sorted((work / "out").glob("*.csv")):
            with export.open(encoding="utf-8") as lines:
                for i, line in enumerate(csv.DictReader(lines)):
                    status = "FAILED" if i % 50 == 0 else "PAID"
                    writer.writerow(
                        [
                            line["payment_id"],
                            status,
                            "2025-07-25T10:00:00+07:00",
                            f"REF{i}",
                            "account closed" if status == "FAILED" else "",
                        ]
                    )
                    outcomes += 1
    s, m, _ = ledger(store, "settle", str(results))
    steps.append((f"settle ({outcomes:,} rows)", s, m))

    # the auditor's commands on the same store, measured beside the target, not in it
    audit: list[tuple[str, float, float]] = []
    s, m, _ = ledger(store, "verify")
    audit.append(("verify (whole store)", s, m))
    s, m, _ = ledger(store, "replay", "--as-of", "2099-12-31", "--check-issued")
    audit.append(("replay --check-issued", s, m))

    total = sum(s for _, s, _ in steps)
    peak = max(m for _, _, m in steps)
    width = max(len(name) for name, _, _ in steps + audit) + 2
    print(
        f"\npayroll benchmark: {args.beneficiaries:,} beneficiaries, period {PERIOD}, "
        f"embedded SQLite store, {os.cpu_count()} cores"
    )
    print(f"{'step':<{width}}{'seconds':>10}{'peak MiB':>12}")
    for name, s, m in steps:
        print(f"{name:<{width}}{s:>10.1f}{m:>12.0f}")
    print(f"{'all four':<{width}}{total:>10.1f}{peak:>12.0f}")
    for name, s, m in audit:
        print(f"{name:<{width}}{s:>10.1f}{m:>12.0f}  (no target)")
    ok_time, ok_memory = total < TARGET_SECONDS, peak < TARGET_MEMORY_MIB
    print(
        f"\ntarget: under {TARGET_SECONDS:.0f} s together -> {'met' if ok_time else 'MISSED'}; "
        f"peak under {TARGET_MEMORY_MIB} MiB -> {'met' if ok_memory else 'MISSED'}"
    )
    if not args.keep:
        shutil.rmtree(work)
    sys.exit(0 if ok_time and ok_memory else 1)


if __name__ == "__main__":
    main()
