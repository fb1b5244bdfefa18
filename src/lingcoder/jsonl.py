"""JSON Lines files, read one way everywhere: plain or gzip (`.gz`), one JSON value a line, every bad
line either an error naming `file:line` or skipped and counted.

    reader = JsonlReader(path)                    # on_error="fail": the first bad line is a LingcoderError
    for line in reader:                           # JsonLine(lineno, where="path:lineno", value)
        ...
    reader = JsonlReader(path, on_error="skip")   # bad lines are left out; reader.skipped lists them
    rows = read_jsonl(path)                       # just the values, failing on a bad line

A bad line is one that is not UTF-8, not JSON, not a JSON object (unless `objects_only=False`) or,
where a caller asks (`blank_lines="bad"`), blank; blank lines are otherwise ignored. A file that is
being appended to may end in a half-written line: `partial_last_line="ignore"` leaves out a last line
that has no newline and does not parse. A file that cannot be opened or decompressed raises
`UnreadableFile`, whatever the policy.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lingcoder.errors import LingcoderError

NOT_UTF8, NOT_JSON, NOT_OBJECT, EMPTY = "not UTF-8", "not JSON", "not an object", "empty line"


class UnreadableFile(LingcoderError):
    """The file could not be opened, read or decompressed."""


@dataclass(frozen=True)
class JsonLine:
    lineno: int  # 1-based
    where: str  # "path:lineno"
    value: Any  # the parsed JSON value (a dict unless objects_only=False)


@dataclass(frozen=True)
class BadLine:
    lineno: int
    where: str
    kind: str  # NOT_UTF8, NOT_JSON, NOT_OBJECT or EMPTY
    detail: str  # what the parser said, or the JSON type found ("" for an empty line)
    size: int  # bytes of the line

    @property
    def message(self) -> str:
        """`path:line: what is wrong`, the error the "fail" policy raises."""
        what = {NOT_UTF8: f"not UTF-8 ({self.detail})", NOT_JSON: f"not valid JSON ({self.detail})",
                NOT_OBJECT: f"expected a JSON object, got {self.detail}", EMPTY: "empty line"}[self.kind]
        return f"{self.where}: {what}"


@dataclass
class JsonlReader:
    """Iterate a JSONL(.gz) file's good lines; see the module docstring for the policies."""

    path: str | Path
    on_error: Literal["fail", "skip"] = "fail"
    objects_only: bool = True
    blank_lines: Literal["ignore", "bad"] = "ignore"
    partial_last_line: Literal["bad", "ignore"] = "bad"
    lines_read: int = field(default=0, init=False)  # every line seen, blank and bad ones included
    skipped: list[BadLine] = field(default_factory=list, init=False)  # under on_error="skip", in file order
    partial_tail: bool = field(default=False, init=False)  # a half-written last line was left out

    def __post_init__(self) -> None:
        if self.on_error not in ("fail", "skip"):
            raise LingcoderError(f"on_error must be 'fail' or 'skip', got {self.on_error!r}")

    def __iter__(self) -> Iterator[JsonLine]:
        path = str(self.path)
        opener = gzip.open if path.endswith(".gz") else open
        try:
            with opener(path, "rb") as handle:
                for lineno, raw in enumerate(handle, 1):
                    self.lines_read += 1
                    parsed = self._parse(raw, lineno)
                    if isinstance(parsed, JsonLine):
                        yield parsed
                    elif parsed is not None:
                        if self.on_error == "fail":
                            raise LingcoderError(parsed.message)
                        self.skipped.append(parsed)
        except (OSError, EOFError, zlib.error) as exc:
            raise UnreadableFile(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None

    def _parse(self, raw: bytes, lineno: int) -> JsonLine | BadLine | None:
        where = f"{self.path}:{lineno}"
        if not raw.strip():
            return BadLine(lineno, where, EMPTY, "", len(raw)) if self.blank_lines == "bad" else None
        try:
            value = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            return BadLine(lineno, where, NOT_UTF8, str(exc), len(raw))
        except json.JSONDecodeError as exc:
            if self.partial_last_line == "ignore" and not raw.endswith(b"\n"):
                self.partial_tail = True
                return None
            return BadLine(lineno, where, NOT_JSON, f"{exc.msg} at column {exc.colno}", len(raw))
        if self.objects_only and not isinstance(value, dict):
            return BadLine(lineno, where, NOT_OBJECT, f"a JSON {json_type(value)}", len(raw))
        return JsonLine(lineno, where, value)


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def read_jsonl(path: str | Path, *, objects_only: bool = True) -> list[Any]:
    """Every value of a JSONL(.gz) file; a bad line is a LingcoderError naming `file:line`."""
    return [line.value for line in JsonlReader(path, objects_only=objects_only)]
