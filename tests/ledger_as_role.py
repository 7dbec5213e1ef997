"""`python -m tests.ledger_as_role ARGS`: `ledger ARGS` as the role the command needs on a
PostgreSQL test store (tests/roles.py), in this same process (exec: a test that kills the
command kills the ledger itself). On the embedded store, `ledger ARGS` unchanged."""

from __future__ import annotations

import os
import sys

from tests.roles import as_role

if __name__ == "__main__":
    argv, env = as_role(sys.argv[1:], dict(os.environ))
    os.execve(sys.executable, [sys.executable, "-m", "ledger.cli", *argv], env)
