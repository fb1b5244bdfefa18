"""LiveCodeBench code generation: the `code_generation_lite` release (test*.jsonl).

Rows: question_id, question_title, question_content, platform, contest_date (ISO), starter_code,
difficulty, public_test_cases and private_test_cases (a JSON list of {input, output, testtype}; the
private list may instead be base64 of zlib of a pickled JSON string), metadata (JSON with `func_name`
for LeetCode-style problems). The pickle is read by an unpickler that refuses every global, so a
crafted file can only fail to load, never run code here.

Judging follows LiveCodeBench's own grader, run inside our sandbox: with a `func_name`, each test's
input lines are JSON arguments of that method (of `Solution()` when the code defines that class) and
its output is the JSON result (a tuple counts as a list); otherwise the program's top level is
wrapped in a function and run once per test with stdin patched, and its stdout is compared line by
line after stripping, a line also matching when its tokens are equal decimals. The benchmark's
limits: 6 s per test, (6 + 1) x tests + 5 s for the whole program. `--since/--until` keep the
problems whose contest_date falls in that window.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import zlib
from datetime import date, datetime
from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.benchmarks import Benchmark, BenchmarkOptions, Problem, read_rows
from lingcoder.evaluate.prompts import extract_code
from lingcoder.evaluate.suites import collect

SECONDS_PER_TEST = 6  # LiveCodeBench's default `timeout`

_INSTRUCTION = (
    "You are given a programming problem. Write a correct and efficient Python 3 program that "
    "solves it and passes all of its hidden tests.\n\n### Question:\n{question}\n\n"
)
_STARTER = (
    "### Format: complete the following starter code and give the whole solution in one "
    "```python fenced code block.\n```python\n{starter}\n```\n\n"
)
_STDIN = (
    "### Format: read the input from standard input, solve the problem and write the answer to "
    "standard output (do not hard-code the sample inputs). Give the whole program in one ```python "
    "fenced code block.\n```python\n# YOUR CODE HERE\n```\n\n"
)

# Runs inside the sandbox with _LCB_CODE (the candidate), _LCB_TESTS, _LCB_FUNC and _LCB_SECONDS set.
_HARNESS = r'''
import ast, builtins, io, json, signal, sys, types
from decimal import Decimal
from unittest import mock

PRELUDE = """from string import *
from re import *
from datetime import *
from collections import *
from heapq import *
from bisect import *
from copy import *
from math import *
from random import *
from statistics import *
from itertools import *
from functools import *
from operator import *
from io import *
from sys import *
from json import *
from builtins import *
from typing import *
import string, re, datetime, collections, heapq, bisect, copy, math, random, statistics
import itertools, functools, operator, io, sys, json
sys.setrecursionlimit(50000)
"""
CASES = json.loads(_LCB_TESTS)


class TimeLimit(Exception):
    pass


def on_alarm(signum, frame):
    raise TimeLimit()


signal.signal(signal.SIGALRM, on_alarm)


def fail(index, why):
    raise AssertionError(f"test {index + 1} of {len(CASES)}: {why}"[:2000])


def limited(index, call):
    signal.alarm(_LCB_SECONDS)
    try:
        return call()
    except TimeLimit:
        fail(index, f"time limit exceeded ({_LCB_SECONDS} s)")
    except AssertionError:
        raise
    except BaseException as exc:
        fail(index, f"runtime error: {exc!r}")
    finally:
        signal.alarm(0)


def unwrap_main_guard(code):
    try:
        tree = ast.parse(code)
        last = tree.body[-1]
        if isinstance(last, ast.If) and ast.unparse(last.test).strip() == "__name__ == '__main__'":
            return ast.unparse(tree.body[:-1]) + "\n" + ast.unparse(last.body)
    except Exception:
        pass
    return code


def as_function(code):
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    imports = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
    body = [s for s in tree.body if not isinstance(s, (ast.Import, ast.ImportFrom))]
    function = ast.FunctionDef(
        name="lcb_program",
        args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
        body=body or [ast.Pass()],
        decorator_list=[],
        lineno=1,
    )
    return PRELUDE + "\n" + ast.unparse(imports) + "\n" + ast.unparse(ast.fix_missing_locations(function))


def load(code, index):
    module = types.ModuleType("solution")
    limited(index, lambda: exec(compile(code, "solution", "exec"), module.__dict__))
    return module


def decimals(line):
    try:
        return [Decimal(token) for token in line.split()]
    except Exception:
        return None


def lines_of(text):
    return [line.strip() for line in text.strip().split("\n")]


def run_functional():
    code = PRELUDE + "\n\n" + _LCB_CODE
    module = load(code, 0)
    owner = module.Solution() if "class Solution" in code and hasattr(module, "Solution") else module
    method = getattr(owner, _LCB_FUNC, None)
    if method is None:
        fail(0, f"the program defines no {_LCB_FUNC}")
    for index, case in enumerate(CASES):
        args = [json.loads(line) for line in case["input"].split("\n")]
        expected = json.loads(case["output"])
        got = limited(index, lambda: method(*args))
        if isinstance(got, tuple):
            got = list(got)
        if got != expected:
            fail(index, f"wrong answer: got {got!r:.300}, expected {expected!r:.300}")


class PatchedStdin(io.StringIO):
    def __init__(self, text):
        super().__init__(text)
        self.pending = iter(text.split("\n"))

    def readline(self, *args):
        return next(self.pending, "")

    def readlines(self, *args):
        return self.getvalue().split("\n")

    def read(self, *args):
        return self.getvalue()


def run_stdin():
    module = load(as_function(unwrap_main_guard(_LCB_CODE)), 0)
    program = getattr(module, "lcb_program", None)
    if program is None:
        fail(0, "the program does not parse")
    for index, case in enumerate(CASES):
        text = case["input"]
        captured = io.StringIO()

        def call():
            saved = sys.stdin, sys.stdout
            sys.stdin, sys.stdout = PatchedStdin(text), captured
            try:
                with mock.patch("builtins.open", mock.mock_open(read_data=text)):
                    program()
            except SystemExit:
                pass
            finally:
                sys.stdin, sys.stdout = saved

        limited(index, call)
        got, expected = lines_of(captured.getvalue()), lines_of(case["output"])
        if len(got) != len(expected):
            fail(index, f"wrong answer: {len(got)} output lines, expected {len(expected)}")
        for number, (mine, theirs) in enumerate(zip(got, expected), 1):
            if mine != theirs and (decimals(mine) is None or decimals(mine) != decimals(theirs)):
                fail(index, f"wrong answer at line {number}: {mine[:200]!r} != {theirs[:200]!r}")


def disable_like_livecodebench():
    """What LiveCodeBench's reliability_guard switches off before running a program (not for safety:
    the sandbox sees to that; so that a program calling one of these fails here as it does there)."""
    import os, shutil, subprocess
    builtins.quit = None
    builtins.help = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
                 "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown",
                 "chmod", "chown", "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"):
        setattr(os, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


disable_like_livecodebench()
run_functional() if _LCB_FUNC else run_stdin()
'''


class _NoGlobals(pickle.Unpickler):
    """Unpickles plain data only: any class or function reference is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing {module}.{name}: test data may only hold plain values")


def decode_tests(value: object, where: str) -> list[dict]:
    """A test-case list from its JSON text or from base64(zlib(pickle(JSON text)))."""
    if isinstance(value, list):
        cases = value
    elif not isinstance(value, str):
        raise LingcoderError(f"{where}: test cases must be a JSON string, got {type(value).__name__}")
    else:
        try:
            cases = json.loads(value)
        except json.JSONDecodeError:
            try:
                raw = zlib.decompress(base64.b64decode(value.encode("ascii"), validate=True))
                text = _NoGlobals(io.BytesIO(raw)).load()
                cases = json.loads(text)
            except Exception as exc:
                raise LingcoderError(
                    f"{where}: test cases are neither JSON nor base64+zlib+pickle JSON ({exc})"
                ) from None
    if not isinstance(cases, list) or not all(
        isinstance(c, dict) and isinstance(c.get("input"), str) and isinstance(c.get("output"), str) for c in cases
    ):
        raise LingcoderError(f"{where}: test cases must be a list of {{input, output, testtype}} objects")
    return cases


def _contest_date(value: object, where: str) -> date:
    try:
        return datetime.fromisoformat(str(value)).date()
    except ValueError:
        raise LingcoderError(f"{where}: contest_date {value!r} is not an ISO date") from None


def prompt_text(question: str, starter: str) -> str:
    text = _INSTRUCTION.format(question=question.strip())
    text += _STARTER.format(starter=starter.rstrip()) if starter.strip() else _STDIN
    return text + "### Answer:\n"


def program(completion: str, cases: list[dict], func_name: str) -> str:
    """The Python program that judges `completion` on `cases` (the harness with its inputs)."""
    return (
        f"_LCB_CODE = {completion!r}\n_LCB_TESTS = {json.dumps(cases)!r}\n"
        f"_LCB_FUNC = {func_name!r}\n_LCB_SECONDS = {SECONDS_PER_TEST}\n{_HARNESS}"
    )


def _code(completion: str) -> str:
    """The program of a completion; a fenced block when it holds one (a whole chat answer)."""
    return extract_code(completion, "python") if "```" in completion else completion


def _problem(row: dict, where: str, options: BenchmarkOptions) -> Problem | None:
    for key in ("question_id", "question_content", "public_test_cases", "private_test_cases", "contest_date"):
        if key not in row:
            raise LingcoderError(f"{where}: missing field {key} (has: {', '.join(sorted(row))})")
    day = _contest_date(row["contest_date"], where)
    if (options.since and day < options.since) or (options.until and day > options.until):
        return None
    cases = decode_tests(row["public_test_cases"], f"{where}: public_test_cases") + decode_tests(
        row["private_test_cases"], f"{where}: private_test_cases"
    )
    if not cases:
        raise LingcoderError(f"{where}: no test cases")
    metadata = row.get("metadata") or "{}"
    try:
        metadata = json.loads(metadata) if isinstance(metadata, str) else dict(metadata)
    except (json.JSONDecodeError, TypeError, ValueError):
        metadata = None
    if not isinstance(metadata, dict):
        raise LingcoderError(f"{where}: metadata is not a JSON object")
    func_name = metadata.get("func_name") or ""
    starter = row.get("starter_code") or ""
    text = prompt_text(row["question_content"], starter)
    return Problem(
        str(row["question_id"]),
        "python",
        text + "```python\n",
        "",
        prompt_is_code=False,
        stop=("```",),
        instruction=text,
        make_solution=lambda completion: program(_code(completion), cases, func_name),
        timeout=(SECONDS_PER_TEST + 1) * len(cases) + 5,
    )


def load(name: str, path: Path, options: BenchmarkOptions) -> Benchmark:
    def problems():
        for _, where, row in read_rows(path):
            problem = _problem(row, where, options)
            if problem is not None:
                yield where, problem

    return Benchmark(name, collect(name, problems()))
