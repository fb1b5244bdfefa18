"""Deduplication and benchmark decontamination of synthetic samples.

Dedup: a sample is a duplicate when its normalised prompt or its normalised solution was seen
before (normalised = the code-aware token stream of `lingcoder.data.decontaminate`, so whitespace,
indentation and line wrapping do not matter; compared by SHA-256). The first in corpus order stays.
Decontamination reuses curation's n-gram index (HumanEval by default, plus benchmark JSONL files)
on the prompt, the solution and the tests together: any shared span of `ngram_size + stride - 1`
tokens with a benchmark prompt or solution drops the sample, naming the items.
"""

from __future__ import annotations

import hashlib

from lingcoder.data.decontaminate import DecontaminationConfig, NgramIndex, benchmark_texts, humaneval_path, tokens
from lingcoder.synth.samples import Sample


def normalised_hash(text: str) -> str:
    return hashlib.sha256(" ".join(tokens(text)).encode()).hexdigest()


class Deduplicator:
    """Remembers normalised prompts and solutions; `duplicate_of` says what a new sample repeats."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def duplicate_of(self, sample: Sample) -> str | None:
        keys = [("prompt", normalised_hash(sample.prompt)), ("solution", normalised_hash(sample.solution))]
        for part, key in keys:
            if key in self.seen:
                return f"same {part} as {self.seen[key]}"
        for _, key in keys:
            self.seen[key] = sample.origin.where
        return None


class BenchmarkFilter:
    """Finds benchmark items a sample overlaps (HumanEval and any benchmark files)."""

    def __init__(self, config: DecontaminationConfig | None = None) -> None:
        self.config = config or DecontaminationConfig()
        items = benchmark_texts(humaneval_path(), "HumanEval") if self.config.humaneval else []
        for path in self.config.benchmark_files:
            items += benchmark_texts(path)
        self.benchmarks = sorted({benchmark for benchmark, _, _ in items})
        self.index = NgramIndex(items, self.config.ngram_size, self.config.stride) if items else None

    def matches(self, sample: Sample) -> list[str]:
        return self.matches_text("\n".join((sample.prompt, sample.solution, sample.tests)))

    def matches_text(self, text: str) -> list[str]:
        return sorted(self.index.matches(text)) if self.index is not None else []
