"""The store's JSON, written and read by orjson where that gives the library's very bytes and
objects, by the library's own encoder and decoder otherwise. Every event this ledger records
has one value the library transcodes, its `timestamp`; writing and reading millions of them
(an enrolment, an approval, a settlement, a projection's catch-up, `verify`, `replay`)
through the library's pure-Python JSON costs more than the rest of their work."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import JSONTranscoder

from adapters.personal_data import PersonalData
from ledger.personal import SEALED

_TRANSCODED = b'"_type_"'  # the key of a transcoded value, as the library writes it
# orjson writes these itself where the library transcodes them (or refuses): left to it
_NATIVE_TO_ORJSON = (UUID, Enum)
# what `encode_text` writes itself: the values of an event whose fields are all text (the
# timestamp, a datetime, is one more type of value: the library's transcoding, as above)
_TEXT = frozenset({str, type(None), datetime})
_SEALED_TEXT = _TEXT | {dict}
# datetimes and dataclasses are handed to the library's transcodings, as it does
_WRITE = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class LedgerTranscoder(JSONTranscoder):
    """The library's transcoder, faster. Writing: orjson, which hands what it cannot write
    (a datetime, a Decimal) to the library's transcodings, as the library's encoder does,
    and gives the library's bytes (compact, UTF-8 as it is); an event with a UUID or an Enum
    among its fields, or what orjson refuses (an integer past 64 bits), is written by the
    library. Reading: orjson when the only transcoded value is the top-level `timestamp`,
    the library's own decoder for anything else.

    Given `personal`, every event's personal data is sealed as it is written and opened as it
    is read (adapters/personal_data.py): no path to the store writes it in the clear."""

    def __init__(self, personal: PersonalData | None = None) -> None:
        super().__init__()
        self.personal = personal

    def encode(self, obj: Any) -> bytes:
        if self.personal is not None and isinstance(obj, dict):
            obj = self.personal.seal(obj)
        return self._write(obj)

    def encode_text(self, obj: dict[str, Any]) -> bytes:
        """`encode` of a dictionary whose values are text (or None), but for the top-level
        `timestamp`: orjson at once, without asking each value what it is (an enrolment's
        events, millions of them)."""
        written = _TEXT
        if self.personal is not None:
            obj = self.personal.seal(obj)
            written = _SEALED_TEXT  # its one dictionary, the seal, holds text too
        if written.issuperset(map(type, obj.values())):
            return orjson.dumps(obj, default=self._encode_obj, option=_WRITE)
        return self._write(obj)

    def _write(self, obj: Any) -> bytes:
        if isinstance(obj, dict) and not any(
            isinstance(v, _NATIVE_TO_ORJSON) for v in obj.values()
        ):
            try:
                return orjson.dumps(obj, default=self._encode_obj, option=_WRITE)
            except orjson.JSONEncodeError:
                pass
        return super().encode(obj)

    def decode(self, data: bytes) -> Any:
        """The stored state with its personal data opened (the key it needs must be given)."""
        obj = self.decode_stored(data)
        if self.personal is not None and isinstance(obj, dict) and SEALED in obj:
            self.personal.unseal(obj)
        return obj

    def decode_stored(self, data: bytes) -> Any:
        """The stored state as stored: personal data left sealed (what ledger.events carries)."""
        if data.count(_TRANSCODED) == 1:
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                return super().decode(data)
            stamp = obj.get("timestamp") if isinstance(obj, dict) else None
            if isinstance(stamp, dict) and stamp.keys() == {"_type_", "_data_"}:
                obj["timestamp"] = self._decode_obj(stamp)
                return obj
        return super().decode(data)
