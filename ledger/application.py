"""Where the ledger's service used to live, kept so that `from ledger.application import
Ledger` goes on working: the ledger is wired in `ledger.bootstrap`, its commands are the
handlers of `ledger.service_layer`, its reports the views of `ledger.views`."""

from __future__ import annotations

from adapters.export_files import export_bytes
from ledger.bootstrap import Ledger
from ledger.months import format_month
from ledger.service_layer.common import ImportResult
from ledger.service_layer.deaths import (
    APPLIED,
    REFUSED,
    UNCHANGED,
    DeathDecision,
    RegistrationOutcome,
)
from ledger.service_layer.ports import ExportedFile, ReadModelsBehind, RecordedButNotVisible
from ledger.views import ListSummary

__all__ = [
    "APPLIED",
    "REFUSED",
    "UNCHANGED",
    "DeathDecision",
    "ExportedFile",
    "ImportResult",
    "Ledger",
    "ListSummary",
    "ReadModelsBehind",
    "RecordedButNotVisible",
    "RegistrationOutcome",
    "export_bytes",
    "format_month",
]
