"""Where the ledger keeps its events and read models, from `LEDGER_STORE` or `--store`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ledger.config import settings

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
        url = url or settings().store or DEFAULT_STORE
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///") :])
            if not path.name:
                raise StoreUrlError(f"store {url!r}: no file name after sqlite:///")
            return cls(url, "sqlite", path)
        if url.startswith(("postgresql://", "postgres://")):
            parts = urlsplit(url)
            if not (parts.hostname and parts.username and parts.path.strip("/")):
                raise StoreUrlError(f"store {url!r}: use postgresql://USER@HOST:PORT/DB")
            return cls(url, "postgresql")
        raise StoreUrlError(f"store {url!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")

    def eventsourcing_env(self) -> dict[str, str]:
        """The environment `eventsourcing` builds its recorder from."""
        if self.kind == "sqlite":
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(self.path),
                "SQLITE_LOCK_TIMEOUT": str(settings().lock_timeout),
                "APPLICATION_RECORDER_TOPIC": "adapters.recorders:ChainedSQLiteApplicationRecorder",
            }
        parts = urlsplit(self.url)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": parts.path.strip("/"),
            "POSTGRES_HOST": parts.hostname or "",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or ""),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_LOCK_TIMEOUT": str(settings().lock_timeout),
            # one connection kept, up to five while a command reads as it appends: 34
            # approvers at once stay within the server's connections
            "POSTGRES_POOL_SIZE": "1",
            "POSTGRES_MAX_OVERFLOW": "4",
            # a file saved a chunk at a time keeps its transaction open while the next chunk
            # is checked (a province's list loaded, seconds at national size): the library's
            # 5 s would end it midway. A process that dies ends its transaction at once.
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "600",
            "APPLICATION_RECORDER_TOPIC": "adapters.recorders:ChainedPostgresApplicationRecorder",
        }
