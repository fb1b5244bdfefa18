"""Write a samples file by asking a backend for completions of a benchmark's problems.

Rows of DIR/samples.jsonl: {"task_id", "completion", "mode": "base"|"instruct", "raw": the model's
text before extraction}. Rows are appended task by task, so an interrupted generation resumes:
tasks that already have n samples are not asked again. The file is then judged like any other.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.benchmarks import Benchmark, Problem
from lingcoder.evaluate.prompts import completion_from_answer, instruct_messages
from lingcoder.evaluate.samples import read_samples
from lingcoder.generation.sampling import SamplingParams

MODES = ("base", "instruct")


def generate_samples(
    bench: Benchmark,
    backend,
    out_path: Path,
    *,
    mode: str = "base",
    settings: SamplingParams | None = None,
    batch_size: int = 8,
    on_task_done=None,
) -> Path:
    """Append `settings.n` samples per problem of `bench` (minus those already there) to `out_path`."""
    settings = settings or SamplingParams()
    if mode not in MODES:
        raise LingcoderError(f"mode {mode!r}: unknown (known: {', '.join(MODES)})")
    have = Counter()
    if out_path.exists() and out_path.stat().st_size:
        for sample in read_samples(out_path):
            have[bench.problem(sample.task_id, f"{out_path}:{sample.line}").task_id] += 1
    todo = [p for p in bench.problems.values() if have[p.task_id] < settings.n]
    with open(out_path, "a", encoding="utf-8") as handle:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            for problem, texts in zip(batch, _ask(backend, batch, mode, settings), strict=True):
                for raw in texts[: settings.n - have[problem.task_id]]:
                    completion = completion_from_answer(problem, raw) if mode == "instruct" else raw
                    row = {"task_id": problem.task_id, "completion": completion, "mode": mode, "raw": raw}
                    handle.write(json.dumps(row) + "\n")
                handle.flush()
                if on_task_done:
                    on_task_done()
    return out_path


def _ask(backend, batch: list[Problem], mode: str, settings: SamplingParams) -> list[list[str]]:
    if mode == "instruct":
        return backend.chat([instruct_messages(p) for p in batch], settings)
    # Base prompts stop at the problem's own stop strings (the user's replace them when given);
    # problems sharing their stop strings go to the backend together.
    answers: dict[str, list[str]] = {}
    groups: dict[tuple[str, ...], list[Problem]] = {}
    for problem in batch:
        groups.setdefault(tuple(settings.stop or problem.stop), []).append(problem)
    for stop, problems in groups.items():
        texts = backend.complete([p.prompt for p in problems], dataclasses.replace(settings, stop=stop))
        answers.update(zip([p.task_id for p in problems], texts, strict=True))
    return [answers[p.task_id] for p in batch]
