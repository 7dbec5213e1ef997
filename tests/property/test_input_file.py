"""An input file read a block at a time gives the lines, the digest and the errors that reading
it whole gives, wherever the blocks are cut (a \\r\\n across two blocks, a BOM, a line with no
ending, bytes that are not UTF-8)."""

from __future__ import annotations

import codecs
import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.inputs import MAX_FILE_BYTES, InputFile, InputRejected, _lines

WHOLE_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")

pieces = st.lists(
    st.sampled_from([b"a", b"\xc3\xa9", b",", b"\r", b"\n", b"\r\n", b"\xff", b'"', b" "]),
    max_size=60,
).map(b"".join)


def whole(data: bytes) -> list[str] | str:
    """The lines as a reading of the whole file gives them, or the problem it raises."""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    lines = []
    for number, line in enumerate(WHOLE_LINE.finditer(data, start), start=1):
        try:
            lines.append(line[0].decode("utf-8"))
        except UnicodeDecodeError as err:
            return (
                f"f.csv: not UTF-8 text ({err.reason} at byte {line.start() + err.start}, "
                f"line {number})"
            )
    return lines


def blockwise(file: InputFile) -> list[str] | str:
    try:
        return list(_lines(file))
    except InputRejected as rejected:
        return str(rejected.problems[0])


@settings(max_examples=300, deadline=None)
@given(body=pieces, bom=st.booleans(), block=st.integers(min_value=1, max_value=9))
def test_blocks_give_what_the_whole_file_gives(body: bytes, bom: bool, block: int) -> None:
    data = (codecs.BOM_UTF8 if bom else b"") + body
    file = InputFile("f.csv", data)
    file.BLOCK = block
    assert blockwise(file) == whole(data)
    if not isinstance(whole(data), str):
        assert file.sha256 == hashlib.sha256(data).hexdigest()


def test_a_file_is_read_from_its_path_as_it_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    data = "name\r\nNguyễn Văn A\r\n".encode() * 1000
    path.write_bytes(data)
    file = InputFile.read(path)
    file.BLOCK = 7
    path.write_bytes(data + b"late\n")  # the bytes read, not the ones first seen, are checked
    assert blockwise(file) == whole(data + b"late\n")
    assert file.sha256 == hashlib.sha256(data + b"late\n").hexdigest()
    assert file.count_lines() == 2001


def test_a_file_that_grew_too_large_while_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"a\n" * 10)
    file = InputFile.read(path)
    file.BLOCK = 4
    monkeypatch.setattr("ledger.inputs.MAX_FILE_BYTES", 12)
    with pytest.raises(InputRejected, match="is larger than 12 bytes"):
        list(_lines(file))
    assert MAX_FILE_BYTES > 12
