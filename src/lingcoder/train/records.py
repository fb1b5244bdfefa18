"""Training records (JSONL, one object a line) -> tokenized examples, every record accounted for.

A record that cannot be used (not JSON, unknown role, no assistant turn, empty, too long for the
sequence length, ...) is reported with `file:line` and counted: skipped under `on_bad_record = "skip"`,
an error under `"fail"`. `OUT/bad_records.jsonl` lists every skipped record with its reason.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.train.chat import BadRecord, ChatRenderer, Rendered


@dataclass
class Example:
    where: str  # file:line
    key: str  # mid (or file:line) + hash of the content: names the example in stored reference log-probs
    sequences: list[Rendered]  # SFT: one conversation; DPO: the chosen and the rejected one

    @property
    def num_tokens(self) -> int:
        return sum(len(s) for s in self.sequences)


@dataclass
class Records:
    examples: list[Example]
    read: int  # lines read, bad ones included
    bad: list[dict] = field(default_factory=list)  # {"where", "kind", "reason"}

    def summary(self) -> dict:
        return {"read": self.read, "used": len(self.examples), "bad": len(self.bad),
                "bad_by_kind": dict(Counter(b["kind"] for b in self.bad))}


def read_examples(paths: list[str], to_conversations: Callable[[dict], list[list[dict]]], renderer: ChatRenderer,
                  max_tokens: int, on_bad_record: str, table: str) -> Records:
    """Read every line of every file; `to_conversations(record)` turns a record into the conversations of one
    example; an example longer than `max_tokens` is bad (`table` names the config table in messages)."""
    if not paths:
        raise LingcoderError(f"{table}.data: no data files given")
    records = Records([], 0)
    for path in paths:
        if not Path(path).is_file():
            raise LingcoderError(f"{table}.data: {path}: file not found")
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                records.read += 1
                where = f"{path}:{number}"
                try:
                    records.examples.append(_example(where, line, to_conversations, renderer, max_tokens, table))
                except BadRecord as exc:
                    if on_bad_record == "fail":
                        raise LingcoderError(f"{where}: {exc} (set {table}.on_bad_record=\"skip\" to skip bad "
                                             "records)") from None
                    records.bad.append({"where": where, "kind": exc.kind, "reason": str(exc)})
    if not records.examples:
        raise LingcoderError(f"{table}.data: none of the {records.read} records is usable"
                             + (f", e.g. {records.bad[0]['where']}: {records.bad[0]['reason']}" if records.bad else ""))
    return records


def _example(where: str, line: bytes, to_conversations, renderer: ChatRenderer, max_tokens: int, table: str
             ) -> Example:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecord("not UTF-8", str(exc)) from None
    if not text.strip():
        raise BadRecord("empty line")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRecord("not JSON", str(exc)) from None
    if not isinstance(record, dict):
        raise BadRecord("not an object", f"a JSON {type(record).__name__}")
    conversations = to_conversations(record)
    sequences = [renderer.render(c) for c in conversations]
    total = sum(len(s) for s in sequences)
    if total > max_tokens:
        raise BadRecord("too long", f"{total} tokens, more than {table}.seq_len + 1 = {max_tokens}")
    content = hashlib.sha256(json.dumps(conversations, sort_keys=True).encode()).hexdigest()[:16]
    mid = record.get("mid") if isinstance(record.get("mid"), str) and record.get("mid") else where
    return Example(where, f"{mid}:{content}", sequences)


def write_bad_records(records: Records, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bad_records.jsonl", "w") as f:
        for bad in records.bad:
            f.write(json.dumps(bad) + "\n")
