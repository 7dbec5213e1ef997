"""The long-running processes' logs: one JSON object per line on stderr (or plain lines, with
LEDGER_LOG_FORMAT=text), naming the process and, where there is one, the topic, partition and
offset or the notification id of what a line is about.

A log is read by people who may not see personal data, and kept where it is not sealed: a
line never carries a personal id, a name or an account number. The ledger's own lines are
written so; what a library says, and the text of any error, has its digit runs of six or more
(personal ids are twelve digits, account numbers six to nineteen) masked before it is written,
and an error is one line, never a traceback."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

from ledger.terminal import escaped

# a run of six or more digits standing alone (not inside an identifier such as a store's id)
_NUMBERS = re.compile(r"(?<![\w.-])\d{6,}(?![\w-])")
FIELDS = ("topic", "partition", "offset", "notification_id", "group", "reason", "count")
_state: dict[str, Any] = {"process": None, "json": False}


def masked(text: str) -> str:
    return _NUMBERS.sub("[number]", text)


def _one_line(record: logging.LogRecord) -> str:
    message = masked(record.getMessage())
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        message += f" ({type(error).__name__}: {masked(str(error))})"
    return " ".join(message.split())  # a message of several lines is still one line


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "process": _state["process"],
            "pid": os.getpid(),
            "logger": record.name,
            "message": _one_line(record),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        # ASCII only: no byte of a line can be taken by a terminal as a control sequence
        return json.dumps(entry, ensure_ascii=True)


class TextLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        where = " ".join(
            f"{name}={getattr(record, name)}"
            for name in FIELDS
            if getattr(record, name, None) is not None
        )
        return escaped(_one_line(record) + (f" [{where}]" if where else ""))


def configure(process: str, log_format: str | None = None) -> None:
    """Every log line of this process (the ledger's, and its libraries', uvicorn and kafka
    included) through one handler on stderr, in the configured format."""
    from ledger.config import settings

    chosen = log_format or settings().log_format or "json"
    _state.update(process=process, json=chosen == "json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if chosen == "json" else TextLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # paths may hold ids
    logging.getLogger("kafka").setLevel(logging.WARNING)


def configured() -> bool:
    return _state["process"] is not None


def log() -> logging.Logger:
    return logging.getLogger("ansinh")
