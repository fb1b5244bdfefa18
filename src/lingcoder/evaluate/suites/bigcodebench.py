"""BigCodeBench, complete and instruct splits: the hub release saved as JSONL (or parquet).

Rows: task_id (BigCodeBench/<n>), complete_prompt (imports + signature + docstring), instruct_prompt
(the task in words), code_prompt (imports + signature), canonical_solution (the body), test (a
unittest `TestCases` class), entry_point (task_func), libs (the libraries the task imports, as a
Python list or its text).

- `bigcodebench-complete`: the model continues complete_prompt; the program is prompt + completion.
- `bigcodebench-instruct`: the model answers instruct_prompt with the whole program (a fenced
  block in the completion is taken alone).

Judging follows BigCodeBench's grader, run inside our sandbox: the program and the test code share
one module, every test of `TestCases` runs (setUp and tearDown included) with TZ=UTC, one OpenMP
thread and exit/quit disabled, and the task passes only when no test failed or raised. The
benchmark's limit is 240 s per task. A task whose libraries the sandbox's Python lacks is `skipped`, naming them.
"""

from __future__ import annotations

import ast
from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.benchmarks import PYTHON_STOP, Benchmark, BenchmarkOptions, Problem, read_rows
from lingcoder.evaluate.prompts import extract_code
from lingcoder.evaluate.suites import collect

SECONDS_PER_TASK = 240.0  # BigCodeBench's TIMEOUT_LIMIT

# Distribution name -> import name where they differ (libs lists import names, a few list the package).
_IMPORT_NAMES = {"scikit-learn": "sklearn", "beautifulsoup4": "bs4", "pillow": "PIL", "python-dateutil": "dateutil"}

# Before the program: what BigCodeBench's reliability_guard sets (UTC, one OpenMP thread, quiet
# TensorFlow; exit and quit disabled, so a program calling them fails as it does there).
_PRELUDE = """import os as _os, time as _time
_os.environ.update(TZ="UTC", OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")
_time.tzset()
(__builtins__ if isinstance(__builtins__, dict) else vars(__builtins__)).update(exit=None, quit=None)
"""
_RUNNER = """
import unittest as _unittest
_result = _unittest.TestResult()
_unittest.TestLoader().loadTestsFromTestCase(TestCases).run(_result)
_problems = _result.failures + _result.errors
if _problems:
    _test, _trace = _problems[0]
    raise AssertionError(
        f"{len(_problems)} of {_result.testsRun} tests failed; first: {_test.id().split('.')[-1]}: "
        + _trace.strip().splitlines()[-1][:300]
    )
if _result.testsRun == 0:
    raise AssertionError("TestCases holds no tests")
"""


def libraries(value: object, where: str) -> tuple[str, ...]:
    """Import names of a row's `libs` (a list, or its Python/JSON text)."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value) if value.strip() else []
        except (ValueError, SyntaxError):
            raise LingcoderError(f"{where}: libs {value[:80]!r} is not a list") from None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise LingcoderError(f"{where}: libs must be a list of library names")
    return tuple(dict.fromkeys(_IMPORT_NAMES.get(v.lower(), v).split(".")[0] for v in value))


def program(source: str, test: str) -> str:
    """What the sandbox runs: the program, then the test code and its runner in the same module."""
    return f"{_PRELUDE}{source}\n\n{test}\n{_RUNNER}"


def _problem(name: str, row: dict, where: str) -> Problem:
    keys = ("task_id", "complete_prompt", "instruct_prompt", "code_prompt", "canonical_solution", "test", "entry_point")
    missing = [k for k in keys if k not in row]
    if missing:
        raise LingcoderError(f"{where}: missing field(s) {', '.join(missing)} (has: {', '.join(sorted(row))})")
    requires = libraries(row.get("libs") or [], where)
    test = row["test"]
    if name == "bigcodebench-complete":
        prompt = row["complete_prompt"]
        return Problem(
            str(row["task_id"]),
            "python",
            prompt,
            "",
            reference=row["canonical_solution"],
            stop=PYTHON_STOP,
            entry_point=row["entry_point"],
            make_solution=lambda completion: program(prompt + completion, test),
            timeout=SECONDS_PER_TASK,
            requires=requires,
        )
    return Problem(
        str(row["task_id"]),
        "python",
        row["instruct_prompt"],
        "",
        prompt_is_code=False,
        reference=row["code_prompt"] + row["canonical_solution"],
        entry_point=row["entry_point"],
        make_solution=lambda completion: program(
            extract_code(completion, "python") if "```" in completion else completion, test
        ),
        timeout=SECONDS_PER_TASK,
        requires=requires,
    )


def load(name: str, path: Path, options: BenchmarkOptions) -> Benchmark:
    return Benchmark(name, collect(name, ((where, _problem(name, row, where)) for _, where, row in read_rows(path))))
