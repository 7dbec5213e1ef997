"""Where the ledger keeps its events and read models, from `LEDGER_STORE` or `--store`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STORE = "sqlite:///./.ledger/ledger.sqlite"


class StoreUrlError(ValueError):
    pass


@dataclass(frozen=True)
class StoreLocation:
    url: str
    kind: str  # "sqlite" or "postgresql"
    path: Path | None = None

    @classmethod
    def parse(cls, url: str | None) -> StoreLocation:
        url = url or os.environ.get("LEDGER_STORE") or DEFAULT_STORE
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///") :])
            if not path.name:
                raise StoreUrlError(f"store {url!r}: no file name after sqlite:///")
            return cls(url, "sqlite", path)
        if url.startswith(("postgresql://", "postgres://")):
            return cls(url, "postgresql")
        raise StoreUrlError(f"store {url!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
