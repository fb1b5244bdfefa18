"""Run one program in one language, confined, and judge it: the reusable entry point.

`run_program(language, source, tests=...)` builds, runs and judges a program in a fresh temporary
directory through the sandbox. With `tests`, it passes only if the tests ran to completion (the
token protocol of `languages.py`); without, a plain program passes when it exits 0. The synthetic
data verifier calls this too.

Verdicts: `passed`; `failed` (ran and exited without completing the tests: an assertion, an
exception, an early exit); `timeout` (wall clock or CPU time, of the run or the build); `error`
(could not be judged: build error, killed by a signal or a limit, bad program layout); `skipped`
(toolchain missing, with why).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.languages import get_language, toolchain
from lingcoder.evaluate.sandbox import SAFE_PATH, Execution, Limits, Sandbox

VERDICTS = ("passed", "failed", "timeout", "error", "skipped")
BUILD_LIMITS = Limits(cpu_seconds=120, memory_mb=4096, processes=256)


@dataclass
class Verdict:
    """The judgement of one program. `seconds` is the run's wall time (build excluded)."""

    status: str
    error: str = ""
    seconds: float = 0.0
    build_seconds: float = 0.0
    stdout: str = ""
    stderr: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


_default_sandbox: Sandbox | None = None


def default_sandbox() -> Sandbox:
    global _default_sandbox
    if _default_sandbox is None:
        _default_sandbox = Sandbox()
    return _default_sandbox


def run_program(
    language: str,
    source: str,
    *,
    tests: str | None = None,
    timeout: float = 10.0,
    build_timeout: float = 120.0,
    limits: Limits | None = None,
    sandbox: Sandbox | None = None,
    data_files: dict[str, str | bytes | Path] | None = None,
) -> Verdict:
    """Build and run `source` (+ `tests`) in the sandbox and return its verdict. `data_files` (relative
    name -> text, bytes, or a host file to copy) are put in the working directory first (a database,
    a support package)."""
    lang = get_language(language)
    sandbox = sandbox or default_sandbox()
    tools = toolchain(lang, sandbox)
    if tools.missing:
        return Verdict("skipped", tools.missing)
    limits = limits or Limits(cpu_seconds=max(int(timeout * 2) + 1, 5))
    try:
        files = lang.files(source, tests)
    except LingcoderError as exc:
        return Verdict("error", str(exc))
    path_env = os.pathsep.join(
        dict.fromkeys([*(os.path.dirname(t) for t in tools.tools.values()), SAFE_PATH])
    )
    with tempfile.TemporaryDirectory(
        prefix="lingcoder-run-", dir=sandbox.workdir_base(), ignore_cleanup_errors=True
    ) as tmp:
        workdir = Path(tmp)
        _write_data_files(workdir, data_files or {})
        for name, text in files.items():
            (workdir / name).write_text(text)
        env = {"PATH": path_env, **lang.env(workdir, tools)}
        build_seconds = 0.0
        build_argv = lang.build_argv(tools.tools, files)
        if build_argv is not None:
            built = sandbox.execute(build_argv, workdir, timeout=build_timeout, limits=BUILD_LIMITS, env=env)
            build_seconds = built.seconds
            if built.returncode != 0 or built.timed_out:
                status, reason = (
                    ("timeout", f"build timed out after {build_timeout:g}s")
                    if built.timed_out
                    else ("error", f"build failed: {short_error(built)}")
                )
                return Verdict(
                    status, reason, build_seconds=build_seconds, stdout=built.stdout, stderr=built.stderr
                )
            for name in files:
                (workdir / name).unlink(missing_ok=True)
        token = secrets.token_hex(16)
        ran = sandbox.execute(
            lang.run_argv(tools.tools, files),
            workdir,
            timeout=timeout,
            limits=limits,
            stdin=(token + "\n").encode(),
            env=env,
        )
    verdict = judge(ran, token if tests is not None else None, timeout)
    verdict.build_seconds = build_seconds
    return verdict


_module_cache: dict[tuple[object, str], bool] = {}
_module_lock = threading.Lock()


def missing_modules(modules: tuple[str, ...] | list[str], sandbox: Sandbox | None = None) -> list[str]:
    """The Python modules among `modules` that the sandbox's Python cannot import (probed once each,
    without importing them, and cached)."""
    sandbox = sandbox or default_sandbox()
    key = sandbox.isolation()
    with _module_lock:
        unknown = [m for m in dict.fromkeys(modules) if (key, m) not in _module_cache]
        if unknown:
            probe = (
                "import importlib.util, json\n"
                f"names = {unknown!r}\n"
                "def found(name):\n"
                "    try:\n        return importlib.util.find_spec(name) is not None\n"
                "    except (ImportError, ValueError):\n        return False\n"
                "print('LINGCODER-MODULES ' + json.dumps([found(n) for n in names]))\n"
            )
            verdict = run_program("python", "", tests=probe, timeout=60, sandbox=sandbox)
            line = next((x for x in verdict.stdout.splitlines() if x.startswith("LINGCODER-MODULES ")), None)
            if not verdict.passed or line is None:
                raise LingcoderError(f"cannot probe the sandbox's Python modules: {verdict.error or verdict.status}")
            for name, ok in zip(unknown, json.loads(line.split(" ", 1)[1]), strict=True):
                _module_cache[(key, name)] = ok
        return [m for m in dict.fromkeys(modules) if not _module_cache[(key, m)]]


def _write_data_files(workdir: Path, data_files: dict[str, str | bytes | Path]) -> None:
    for name, content in data_files.items():
        target = (workdir / name).resolve()
        if workdir.resolve() not in target.parents:
            raise LingcoderError(f"data file {name!r}: must stay inside the program's working directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)


def judge(ran: Execution, token: str | None, timeout: float) -> Verdict:
    """Turn what the program did into a verdict; `token` is None for a plain (test-less) program."""
    common = {"seconds": ran.seconds, "stdout": ran.stdout, "stderr": ran.stderr}
    signal_name = ran.signal_name
    if ran.timed_out:
        return Verdict("timeout", f"wall-clock timeout after {timeout:g}s", **common)
    if signal_name == "SIGXCPU":
        return Verdict("timeout", "CPU time limit exceeded", **common)
    if signal_name == "SIGXFSZ":
        return Verdict("error", "file size limit exceeded", **common)
    if signal_name == "SIGABRT":  # how C/C++ assert() fails
        return Verdict("failed", f"aborted: {short_error(ran)}".rstrip(": "), **common)
    if signal_name is not None:
        return Verdict("error", f"killed by {signal_name}: {short_error(ran)}".rstrip(": "), **common)
    if ran.returncode != 0:
        return Verdict("failed", f"exit status {ran.returncode}: {short_error(ran)}".rstrip(": "), **common)
    if token is not None and token not in ran.stdout.splitlines():
        return Verdict("failed", "exited with status 0 before the tests completed", **common)
    return Verdict("passed", **common)


_ERROR_LINE = re.compile(r"Error|error|Exception|panicked|[Aa]ssert|FAIL:|Traceback")


def short_error(ran: Execution, width: int = 300) -> str:
    """The most telling line of a program's output: the last one that names an error, else the last."""
    for stream in (ran.stderr, ran.stdout):
        lines = [line.strip() for line in stream.splitlines() if line.strip()]
        for line in reversed(lines):
            if _ERROR_LINE.search(line) and not line.startswith(("at ", "File ", "Traceback")):
                return line[:width]
        if lines:
            return lines[-1][:width]
    return ""
