"""The one JSONL reader: plain and gzip files, its two error policies, blank and half-written lines."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from lingcoder.errors import LingcoderError
from lingcoder.jsonl import EMPTY, NOT_JSON, NOT_OBJECT, NOT_UTF8, JsonlReader, UnreadableFile, read_jsonl

MIXED = [b'{"a": 1}\n', b"\n", b"{not json\n", b"[1, 2]\n", b'{"a": "\xff"}\n', b'{"a": 2}\n']


def write(path: Path, lines: list[bytes]) -> Path:
    data = b"".join(lines)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.jsonl.gz"])
def test_good_lines_come_with_their_file_and_line(tmp_path, name):
    path = write(tmp_path / name, [b'{"a": 1}\n', b"   \n", b'{"a": 2, "b": [1]}'])
    lines = list(JsonlReader(path))
    assert [(x.lineno, x.where, x.value) for x in lines] == [
        (1, f"{path}:1", {"a": 1}), (3, f"{path}:3", {"a": 2, "b": [1]})]
    assert read_jsonl(path) == [{"a": 1}, {"a": 2, "b": [1]}]


@pytest.mark.parametrize(("lines", "message"), [
    ([b'{"a": 1}\n', b"{not json\n"], r"rows.jsonl:2: not valid JSON \(Expecting property name"),
    ([b"[1, 2]\n"], r"rows.jsonl:1: expected a JSON object, got a JSON array"),
    ([b"\n", b'"text"\n'], r"rows.jsonl:2: expected a JSON object, got a JSON string"),
    ([b'{"a": "\xff"}\n'], r"rows.jsonl:1: not UTF-8"),
])
def test_fail_names_the_file_and_line_of_the_first_bad_line(tmp_path, lines, message):
    path = write(tmp_path / "rows.jsonl", lines)
    with pytest.raises(LingcoderError, match=message):
        list(JsonlReader(path))


def test_skip_leaves_bad_lines_out_and_lists_them(tmp_path):
    path = write(tmp_path / "rows.jsonl", MIXED)
    reader = JsonlReader(path, on_error="skip")
    assert [x.value for x in reader] == [{"a": 1}, {"a": 2}]
    assert [(b.lineno, b.kind) for b in reader.skipped] == [(3, NOT_JSON), (4, NOT_OBJECT), (5, NOT_UTF8)]
    assert reader.lines_read == 6
    assert reader.skipped[0].size == len(MIXED[2]) and reader.skipped[1].detail == "a JSON array"
    assert reader.skipped[1].message == f"{path}:4: expected a JSON object, got a JSON array"


def test_blank_lines_can_count_as_bad_and_any_json_value_can_be_allowed(tmp_path):
    path = write(tmp_path / "rows.jsonl", MIXED)
    reader = JsonlReader(path, on_error="skip", objects_only=False, blank_lines="bad")
    assert [x.value for x in reader] == [{"a": 1}, [1, 2], {"a": 2}]
    assert [(b.lineno, b.kind) for b in reader.skipped] == [(2, EMPTY), (3, NOT_JSON), (5, NOT_UTF8)]
    with pytest.raises(LingcoderError, match=r"rows.jsonl:2: empty line"):
        list(JsonlReader(path, blank_lines="bad"))


def test_a_half_written_last_line_is_left_out_only_when_asked(tmp_path):
    path = write(tmp_path / "rows.jsonl", [b'{"a": 1}\n', b'{"a": 2}\n', b'{"a": 3, "b'])
    reader = JsonlReader(path, partial_last_line="ignore")
    assert [x.value for x in reader] == [{"a": 1}, {"a": 2}] and reader.partial_tail
    with pytest.raises(LingcoderError, match=r"rows.jsonl:3: not valid JSON"):
        list(JsonlReader(path))
    middle = write(tmp_path / "middle.jsonl", [b'{"a": 1\n', b'{"a": 2}'])  # a bad line with a newline is bad
    with pytest.raises(LingcoderError, match=r"middle.jsonl:1: not valid JSON"):
        list(JsonlReader(middle, partial_last_line="ignore"))


def test_an_unreadable_file_is_an_error_under_either_policy(tmp_path):
    for on_error in ("fail", "skip"):
        with pytest.raises(UnreadableFile, match=r"nope.jsonl: cannot read \(No such file"):
            list(JsonlReader(tmp_path / "nope.jsonl", on_error=on_error))
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(json.dumps({"a": 1}).encode() * 50)[:30])
    with pytest.raises(UnreadableFile, match=r"broken.jsonl.gz: cannot read"):
        list(JsonlReader(broken, on_error="skip"))
    with pytest.raises(LingcoderError, match="on_error must be 'fail' or 'skip'"):
        JsonlReader(broken, on_error="ignore")
