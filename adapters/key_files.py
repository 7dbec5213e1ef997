"""Reading a key file (the chain key, the cipher keys): there, readable, and private to its
owner, or refused saying what to do."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ledger.rules import RuleViolation

MOST_BYTES = 64 * 1024  # far more than any key file holds


def read_key_file(
    path: Path, what: str, error: type[RuleViolation], fix: str, if_exposed: str
) -> str:
    """The file's text. `what`: the key's name ("chain key"); `fix`: what to do when there is
    no file; `if_exposed`: what to do besides `chmod` when others could read it."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a fifo would block, a device never end
            raise error(f"the {what} file {path} is not a regular file")
        if info.st_size > MOST_BYTES:
            raise error(f"the {what} file {path} holds {info.st_size:,} bytes: not a key file")
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise error(f"no {what}: {path} does not exist; {fix}") from None
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise error(f"the {what} file {path} cannot be read ({reason})") from None
    if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise error(
            f"the {what} file {path} can be read by others (mode "
            f"{stat.S_IMODE(info.st_mode):o}): run `chmod 600 {path}`, and {if_exposed}"
        )
    return text
