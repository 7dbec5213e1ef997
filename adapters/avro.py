"""Avro in the Confluent wire format (byte 0, a 4-byte schema id, the Avro body), with the
schema registry kept as files in schemas/ (replaceable by a real registry)."""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import fastavro

MAGIC = 0


class UndecodableMessage(ValueError):
    """Bytes that are not a message this ledger can read; the message says why."""

    reason = "undecodable"


class UnknownSchemaId(UndecodableMessage):
    """Well-formed bytes whose schema id the registry does not hold for the subject: a
    registry ahead of this ledger, or a message sent to the wrong topic."""

    reason = "unknown-schema-id"


@dataclass(frozen=True)
class RegisteredSchema:
    subject: str
    version: int
    id: int
    schema: Any  # parsed


@cache
def registry() -> dict[int, RegisteredSchema]:
    """Every registered schema by id."""
    folder = resources.files("schemas")
    index = json.loads(folder.joinpath("registry.json").read_text("utf-8"))
    out: dict[int, RegisteredSchema] = {}
    for subject, versions in index["subjects"].items():
        for v in versions:
            raw = json.loads(folder.joinpath(v["file"]).read_text("utf-8"))
            if v["id"] in out:
                raise ValueError(f"schema id {v['id']} is used twice in schemas/registry.json")
            out[v["id"]] = RegisteredSchema(
                subject, v["version"], v["id"], fastavro.parse_schema(raw, named_schemas={})
            )
    return out


def latest(subject: str) -> RegisteredSchema:
    versions = [s for s in registry().values() if s.subject == subject]
    if not versions:
        raise KeyError(f"no schema registered for {subject}")
    return max(versions, key=lambda s: s.version)


def encode(subject: str, record: dict[str, Any]) -> bytes:
    """A record in the subject's latest schema, in the wire format."""
    schema = latest(subject)
    body = io.BytesIO()
    body.write(struct.pack(">bI", MAGIC, schema.id))
    fastavro.schemaless_writer(body, schema.schema, record)
    return body.getvalue()


def decode(subject: str, data: bytes) -> dict[str, Any]:
    """A message written with any registered version of the subject's schema, read as the
    latest version (Avro schema resolution fills fields added since with their defaults)."""
    if len(data) < 5 or data[0] != MAGIC:
        raise UndecodableMessage("not in the wire format (magic byte 0, schema id, Avro body)")
    (schema_id,) = struct.unpack(">I", data[1:5])
    writer = registry().get(schema_id)
    if writer is None or writer.subject != subject:
        raise UnknownSchemaId(f"unknown schema id {schema_id} for {subject}")
    try:
        record = fastavro.schemaless_reader(
            io.BytesIO(data[5:]), writer.schema, latest(subject).schema
        )
    except Exception as err:  # fastavro raises many kinds for a bad body
        raise UndecodableMessage(f"Avro body does not match schema id {schema_id}: {err}") from None
    return record  # type: ignore[return-value]


def samples(schema: Any, variants: int = 8) -> list[Any]:
    """Records that exercise every field of a parsed schema: each takes another branch of
    every union and another symbol of every enum, so that all of them are written once
    (for unions and enums of up to `variants` members)."""
    return [_sample(schema, k) for k in range(variants)]


def _sample(schema: Any, branch: int) -> Any:
    import datetime
    import uuid

    if isinstance(schema, list):  # a union: the k-th branch
        return _sample(schema[branch % len(schema)], branch)
    if isinstance(schema, str):
        return {
            "null": None,
            "boolean": True,
            "int": 7,
            "long": 7,
            "float": 1.5,
            "double": 1.5,
            "bytes": b"\x00\x01",
            "string": "đồng",
        }[schema]
    logical = schema.get("logicalType")
    if logical == "date":
        return datetime.date(2025, 7, 15)
    if logical in ("timestamp-millis", "timestamp-micros"):
        return datetime.datetime(2025, 7, 20, 2, 0, 0, 123000, tzinfo=datetime.UTC)
    if logical == "uuid":
        return str(uuid.UUID(int=7))
    kind = schema["type"]
    if kind == "record":
        return {f["name"]: _sample(f["type"], branch) for f in schema["fields"]}
    if kind == "enum":
        return schema["symbols"][branch % len(schema["symbols"])]
    if kind == "array":
        return [_sample(schema["items"], branch)]
    if kind == "map":
        return {"k": _sample(schema["values"], branch)}
    if kind == "fixed":
        return b"\x00" * schema["size"]
    return _sample(kind, branch)


def incompatibility(writer: Any, reader: Any) -> str | None:
    """Why a reader with schema `reader` could not read what `writer` wrote; None if it can.
    Both are raw (unparsed) schemas."""
    writer_schema = fastavro.parse_schema(writer, named_schemas={})
    reader_schema = fastavro.parse_schema(reader, named_schemas={})
    for record in samples(writer_schema):
        body = io.BytesIO()
        fastavro.schemaless_writer(body, writer_schema, record)
        body.seek(0)
        try:
            fastavro.schemaless_reader(body, writer_schema, reader_schema)
        except Exception as err:
            return f"{type(err).__name__}: {err}"
    return None
