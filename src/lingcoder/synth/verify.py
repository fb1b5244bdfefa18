"""Verification by execution: a program passes its tests in the evaluation sandbox, or is dropped.

Programs run through `lingcoder.evaluate.execution.run_program` (one confined subprocess each, the
token protocol proving the tests ran to completion), many at a time on a thread pool; results come
back in input order. A failing sample's drop reason is its verdict (`failed`, `timeout`, `error`,
`skipped`), with `import_failed` split out of `failed`: a mined program whose module context does
not import in the sandbox is not self-contained after all.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from lingcoder.evaluate.execution import Verdict, run_program
from lingcoder.evaluate.sandbox import Sandbox

_IMPORT_ERROR = re.compile(r"\b(ModuleNotFoundError|ImportError)\b")


def run_all(programs: list[tuple[str, str]], *, workers: int, timeout: float | list[float], sandbox: Sandbox,
            language: str = "python") -> list[Verdict]:
    """The verdict of each (solution, tests) pair, in order; `timeout` is one limit or one per program."""
    limits = timeout if isinstance(timeout, list) else [timeout] * len(programs)

    def one(index: int) -> Verdict:
        solution, tests = programs[index]
        return run_program(language, solution, tests=tests, timeout=limits[index], sandbox=sandbox)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(one, range(len(programs))))


def drop_reason(verdict: Verdict) -> tuple[str, str]:
    """(reason, detail) for a verdict that is not a pass."""
    if verdict.status == "failed" and _IMPORT_ERROR.search(verdict.error):
        return "import_failed", verdict.error
    return verdict.status, verdict.error or verdict.status
