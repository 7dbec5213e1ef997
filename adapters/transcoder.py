"""The store's JSON: written by the library's encoder, read by orjson where that gives the same
objects. Every event this ledger records has one value the library transcodes, its
`timestamp`; reading millions of them (a projection's catch-up, `verify`, `replay`) through
the library's decoder, which calls back into Python for every object, costs more than the
rest of the reading."""

from __future__ import annotations

from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder

_TRANSCODED = b'"_type_"'  # the key of a transcoded value, as the library writes it


class LedgerTranscoder(JSONTranscoder):
    """The library's transcoder, with a faster reading of the events it wrote: orjson when
    the only transcoded value is the top-level `timestamp`, the library's own decoder for
    anything else (a UUID, a Decimal or a `_type_` key anywhere else in the event)."""

    def decode(self, data: bytes) -> Any:
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
