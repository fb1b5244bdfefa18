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
from lingcoder.jsonl import JsonlReader
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
        reader = JsonlReader(path, on_error="skip", blank_lines="bad")  # lines that are not records, in order
        bad: list[tuple[int, dict]] = []  # records that are not examples
        for line in reader:
            try:
                records.examples.append(_example(line.where, line.value, to_conversations, renderer, max_tokens,
                                                 table))
            except BadRecord as exc:
                bad.append((line.lineno, {"where": line.where, "kind": exc.kind, "reason": str(exc)}))
            if on_bad_record == "fail" and (bad or reader.skipped):
                break
        bad += [(b.lineno, {"where": b.where, "kind": b.kind, "reason": str(BadRecord(b.kind, b.detail))})
                for b in reader.skipped]
        bad.sort(key=lambda pair: pair[0])
        if on_bad_record == "fail" and bad:
            first = bad[0][1]
            raise LingcoderError(f"{first['where']}: {first['reason']} (set {table}.on_bad_record=\"skip\" to skip "
                                 "bad records)")
        records.read += reader.lines_read
        records.bad += [entry for _, entry in bad]
    if not records.examples:
        raise LingcoderError(f"{table}.data: none of the {records.read} records is usable"
                             + (f", e.g. {records.bad[0]['where']}: {records.bad[0]['reason']}" if records.bad else ""))
    return records


def _example(where: str, record: dict, to_conversations, renderer: ChatRenderer, max_tokens: int, table: str
             ) -> Example:
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
