"""The units synthesis passes around: a candidate sample, where it came from, why one was dropped.

A `Sample` is one problem with its reference solution and the tests that judge it; its `prompt` is
the HUMAN turn of the SFT record and `answer` the ASSISTANT turn. `Origin` names the source of
every candidate (a mined function, a teacher reply) so each drop can say what it lost.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

REPLY_FORMAT = "Reply with the complete Python code in one ```python fenced code block."
KINDS = ("mined", "magpie", "evolved")


@dataclass(frozen=True)
class Origin:
    """Where a candidate came from: `kind` (mined, magpie, evolved) and a readable location."""

    kind: str
    where: str


@dataclass(frozen=True)
class Sample:
    """One problem: the instruction, a self-contained reference program and tests that check it."""

    origin: Origin
    prompt: str
    solution: str
    tests: str
    tags: tuple[str, ...] = ()
    entry_point: str = ""  # the function the tests exercise
    language: str = "python"

    @property
    def answer(self) -> str:
        return fenced(self.solution)

    @property
    def mid(self) -> str:
        digest = hashlib.sha256(f"{self.prompt}\0{self.solution}".encode()).hexdigest()
        return f"lingcoder-synth-{digest[:20]}"


@dataclass(frozen=True)
class Drop:
    """A candidate that did not become data: at which stage, why, and the evidence."""

    origin: Origin
    stage: str
    reason: str
    detail: str = ""


@dataclass
class SourceOutput:
    """What a source produced: samples to go on, drops, and how many candidates it looked at."""

    samples: list[Sample] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)

    def extend(self, other: SourceOutput) -> None:
        self.samples += other.samples
        self.drops += other.drops
        for kind, count in other.seen.items():
            self.seen[kind] = self.seen.get(kind, 0) + count


def fenced(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```"
