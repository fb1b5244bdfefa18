"""DS-1000: data-science problems over seven libraries, from the released data/ds1000.jsonl(.gz)
(rows: prompt, reference_code, code_context, metadata {problem_id, library, ...}).

The prompt ends inside `<code>`; the model writes the missing code and generation stops at
`</code>`. The answer is cleaned as DS-1000 does (cut at `</code>`, `# SOLUTION END` or a fence)
and judged by the problem's own `code_context`: its `test_execution(code)` and, where defined, its
`test_string(code)`, under the benchmark's 120 s limit. A problem whose library (numpy, pandas,
scipy, sklearn, matplotlib, tensorflow, torch) the sandbox's Python lacks is `skipped`.
"""

from __future__ import annotations

from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.benchmarks import Benchmark, BenchmarkOptions, Problem, read_rows
from lingcoder.evaluate.suites import collect

SECONDS_PER_TASK = 120.0  # DS-1000's execution timeout
_IMPORT_NAMES = {"pytorch": "torch", "sklearn": "sklearn", "tensorflow": "tensorflow"}
STOP = ("</code>", "# SOLUTION END", "```")


def clean(answer: str) -> str:
    """The code of an answer: up to the first end marker, without a leading fence line."""
    text = answer
    if text.lstrip().startswith("```"):
        text = text.lstrip().split("\n", 1)[1] if "\n" in text.lstrip() else ""
    for marker in STOP:
        text = text.split(marker)[0]
    return text


def program(code_context: str, answer: str) -> str:
    checks = "test_execution(_ds1000_code)\n"
    if "def test_string(" in code_context:
        checks += "test_string(_ds1000_code)\n"
    return f"{code_context}\n_ds1000_code = {clean(answer)!r}\n{checks}"


def _problem(row: dict, where: str, index: int) -> Problem:
    missing = [k for k in ("prompt", "reference_code", "code_context") if k not in row]
    if missing:
        raise LingcoderError(f"{where}: missing field(s) {', '.join(missing)} (has: {', '.join(sorted(row))})")
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise LingcoderError(f"{where}: metadata must be an object")
    code_context = row["code_context"]
    if "def test_execution(" not in code_context:
        raise LingcoderError(f"{where}: code_context defines no test_execution(solution)")
    library = str(metadata.get("library", ""))
    module = _IMPORT_NAMES.get(library.lower(), library.lower())
    return Problem(
        str(metadata.get("problem_id", index)),
        "python",
        row["prompt"],
        "",
        prompt_is_code=False,
        reference=row["reference_code"],
        stop=STOP,
        make_solution=lambda answer: program(code_context, answer),
        timeout=SECONDS_PER_TASK,
        requires=(module,) if module else (),
    )


def load(name: str, path: Path, options: BenchmarkOptions) -> Benchmark:
    rows = ((where, _problem(row, where, i)) for i, (_, where, row) in enumerate(read_rows(path)))
    return Benchmark(name, collect(name, rows))
