"""Files written once, as evidence or as a secret: whole or not at all, never over a file
that exists (a chain key, a checkpoint)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


class FileExists(FileExistsError):
    """The file is there already: it is never replaced."""


def write_new_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path`, which must not exist: staged under a temporary name, synced,
    then linked into place (which fails if a file appeared meanwhile), its folder synced."""
    if path.exists():
        raise FileExists(str(path))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FileExists(str(path)) from None
        except OSError:  # a file system without hard links
            if path.exists():
                raise FileExists(str(path)) from None
            os.rename(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    with contextlib.suppress(OSError):  # the file's name, durable too
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
