"""Languages: how to turn (solution, tests) into files, build them and run them in the sandbox.

Every language follows one protocol so the harness knows that the tests ran to completion: the
program reads a one-time token from its stdin before any solution code runs, deletes its own
source where that is possible, runs the tests, and prints the token only after the last test
returned. A program that exits 0 without printing the token (`sys.exit(0)`, `exit(0)` inside the
solution, a killed parent...) therefore fails. For compiled languages the tests' `main` is renamed
and called from a `main` of ours; scripts get the token print appended.

Toolchains are found on the machine and probed inside the sandbox (so a compiler the sandbox user
cannot run counts as missing); a language without one yields `skipped` with the reason.

Limitation, stated plainly: solution code runs in the same process as the tests, so a deliberately
adversarial program that introspects its own process (frames, memory) can still fake a pass; the
protocol defeats early exits, shadowed builtins and redefined test functions, not such attacks.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import site
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.sandbox import SAFE_PATH, Isolation, Limits, Sandbox


@dataclass(frozen=True)
class Toolchain:
    """The resolved tools of one language (absolute paths) or why there are none."""

    tools: dict[str, str] = field(default_factory=dict)
    version: str = ""
    missing: str = ""


@dataclass(frozen=True)
class Language:
    """One language: names, the tools it needs (name -> candidate executables), build and run."""

    name: str
    aliases: tuple[str, ...]
    tools: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]  # tool -> (candidates, version argv)
    compiled: bool = False

    def files(self, solution: str, tests: str | None) -> dict[str, str]:
        return _FILES[self.name](solution, tests)

    def build_argv(self, tools: dict[str, str], files: dict[str, str]) -> list[str] | None:
        return _BUILD[self.name](tools, files) if self.compiled else None

    def run_argv(self, tools: dict[str, str], files: dict[str, str]) -> list[str]:
        return _RUN[self.name](tools, files)

    def env(self, workdir: Path, chain: Toolchain) -> dict[str, str]:
        if self.name == "python":
            same_version = chain.version.startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
            if same_version and chain.tools["python"] != sys.executable:
                return {"LINGCODER_PYTHONPATH": os.pathsep.join(site.getsitepackages())}
        if self.name == "go":
            return {
                "GOCACHE": str(workdir / ".gocache"),
                "GOPATH": str(workdir / ".gopath"),
                "GO111MODULE": "off",
                "GOTOOLCHAIN": "local",
                "CGO_ENABLED": "0",
                "GOFLAGS": "",
            }
        return {}


# ---------------------------------------------------------------------------------------------
# Checked Python runs with -S (site.py's start-up work is a third of the interpreter's start-up);
# the site-packages directories are put on sys.path by hand so installed packages stay importable,
# plus the harness's own site-packages when the sandbox runs another interpreter of the same
# version (as root, the harness's interpreter may be unreadable to the sandbox user): benchmarks'
# tests may import what the harness has installed (EvalPlus's use numpy).
# The solution and the tests run in separate namespaces built from a pristine copy of the
# builtins, so a solution that rebinds builtins (module attribute or global of the same name) or
# defines `check` cannot change what the tests see; the tests still see the solution's helpers.
_PY_CHECKED = """\
import os as _os, sys as _sys, site as _site
_sys.path += _site.getsitepackages() + _os.environ.get("LINGCODER_PYTHONPATH", "").split(_os.pathsep)
_token = _sys.stdin.readline().strip()
_write = _os.write
try:
    _os.unlink(__file__)
except OSError:
    pass
import builtins as _builtins
_pristine = dict(vars(_builtins))
_solution_ns = {{"__name__": "__main__", "__builtins__": dict(_pristine)}}
exec(compile({solution!r}, "solution", "exec"), _solution_ns)
_test_ns = {{k: v for k, v in _solution_ns.items() if k not in _pristine}}
_test_ns.update(__name__="__main__", __builtins__=dict(_pristine))
exec(compile({tests!r}, "tests", "exec"), _test_ns)
try:
    _sys.stdout.flush()
except Exception:
    pass
_write(1, ("\\n" + _token + "\\n").encode())
"""


def _python_files(solution: str, tests: str | None) -> dict[str, str]:
    if tests is None:
        return {"program.py": solution}
    return {"main.py": _PY_CHECKED.format(solution=solution, tests=tests)}


def _javascript_files(solution: str, tests: str | None) -> dict[str, str]:
    if tests is None:
        return {"main.js": solution}
    head = (
        'const __lingcoderDone = (() => { const fs = require("fs"); '
        'const t = fs.readFileSync(0, "utf8").split("\\n")[0].trim(); '
        "try { fs.unlinkSync(__filename); } catch (e) {} "
        # The tests' assert module is shared through require's cache: freeze it before the solution runs.
        'const a = require("assert"); Object.freeze(a.strict); Object.freeze(a); '
        'return () => fs.writeSync(1, "\\n" + t + "\\n"); })();\n'
    )
    return {"main.js": head + solution + "\n" + tests + "\n;__lingcoderDone();\n"}


def _shell_files(solution: str, tests: str | None) -> dict[str, str]:
    if tests is None:
        return {"main.sh": solution}
    return {
        "main.sh": 'IFS= read -r __lingcoder_token\nrm -f -- "$0"\n'
        + solution
        + "\n"
        + tests
        + '\nprintf "\\n%s\\n" "$__lingcoder_token"\n'
    }


# A solution may `#define assert(x)` to nothing; <cassert> redefines it each time it is included.
_RESTORE_ASSERT = "\n#undef NDEBUG\n#undef assert\n#include <cassert>\n"


def _cpp_files(solution: str, tests: str | None) -> dict[str, str]:
    if tests is None:
        return {"main.cpp": solution}
    code = solution + "\n" + tests
    match = _last(r"\bint\s+main\s*\(([^)]*)\)\s*\{", code)
    if match is None:
        raise LingcoderError("C++ tests define no `int main(...) {`: cannot run them")
    end = find_block_end(code, match.end() - 1)
    takes_args = bool(match.group(1).strip()) and match.group(1).strip() != "void"
    # Renamed, it must return 0 when the body falls off its end, as main does.
    code = (
        code[: match.start()]
        + _RESTORE_ASSERT
        + f"int lingcoder_tests_main({match.group(1)}) {{"
        + code[match.end() : end]
        + "\nreturn 0;\n"
        + code[end:]
    )
    call = "lingcoder_tests_main(argc, argv)" if takes_args else "lingcoder_tests_main()"
    ours = (
        "\n#include <iostream>\n#include <string>\n#include <cstdio>\n"
        "int main(int argc, char** argv) {\n  std::string t; std::getline(std::cin, t);\n"
        '  std::remove("main.cpp");\n'
        f"  int rc = {call};\n  if (rc != 0) return rc;\n"
        "  std::cout << std::endl << t << std::endl;\n  return 0;\n}\n"
    )
    return {"main.cpp": code + ours}


def _java_files(solution: str, tests: str | None) -> dict[str, str]:
    code = solution + ("\n" + tests if tests is not None else "")
    public = re.search(r"\bpublic\s+(?:final\s+)?class\s+(\w+)", code)
    if tests is None:
        main_class = _enclosing_class(code, _last(r"\bstatic\s+void\s+main\s*\(", code))
        return {f"{public.group(1) if public else main_class}.java": code}
    match = _last(r"\bpublic\s+static\s+void\s+main\s*\(", code) or _last(
        r"\bstatic\s+void\s+main\s*\(", code
    )
    if match is None:
        raise LingcoderError("Java tests define no `static void main(...)`: cannot run them")
    owner = _enclosing_class(code, match)
    code = (
        code[: match.start()]
        + re.sub(r"main\s*\($", "lingcoderTestsMain(", match.group(0))
        + code[match.end() :]
    )
    ours = (
        "\nclass LingcoderMain {\n  public static void main(String[] args) throws Throwable {\n"
        "    String t = new java.io.BufferedReader(new java.io.InputStreamReader(System.in)).readLine();\n"
        f"    {owner}.lingcoderTestsMain(args);\n"
        "    System.out.println(); System.out.println(t); System.out.flush();\n  }\n}\n"
    )
    return {f"{public.group(1) if public else 'Main'}.java": code + ours}


def _enclosing_class(code: str, main: re.Match | None) -> str:
    if main is None:
        raise LingcoderError("Java program defines no `static void main(...)`: cannot run it")
    for cls in reversed(list(re.finditer(r"\b(?:class|enum|record)\s+(\w+)[^{]*\{", code[: main.start()]))):
        if find_block_end(code, cls.end() - 1) > main.start():
            return cls.group(1)
    raise LingcoderError("Java `main` is not inside a class")


def _rust_files(solution: str, tests: str | None) -> dict[str, str]:
    if tests is None:
        return {"main.rs": solution}
    # Path-qualified macros cannot be shadowed by a `macro_rules! assert_eq` in the solution.
    tests = re.sub(r"(?<![:\w])(assert|assert_eq|assert_ne|panic|unreachable)!", r"::std::\1!", tests)
    code = solution + "\n" + tests
    match = _last(r"\bfn\s+main\s*\(\s*\)", code)
    if match is None:
        raise LingcoderError("Rust tests define no `fn main()`: cannot run them")
    code = code[: match.start()] + "fn lingcoder_tests_main()" + code[match.end() :]
    ours = (
        "\nfn main() {\n    let mut t = String::new();\n    let _ = std::io::stdin().read_line(&mut t);\n"
        '    lingcoder_tests_main();\n    println!("\\n{}", t.trim());\n}\n'
    )
    return {"main.rs": code + ours}


def _go_files(solution: str, tests: str | None) -> dict[str, str]:
    code = solution + ("\n" + tests if tests is not None else "")
    package = re.search(r"^\s*package\s+(\w+)", code, re.M)
    package_name = package.group(1) if package else "main"
    if tests is None:
        return {"main.go": code}
    if re.search(r"\bfunc\s+Test\w*\s*\(\s*\w+\s+\*testing\.T\s*\)", code):
        ours = (
            f'package {package_name}\n\nimport (\n\t"bufio"\n\t"fmt"\n\t"os"\n\t"testing"\n)\n\n'
            "func TestMain(m *testing.M) {\n\tt, _ := bufio.NewReader(os.Stdin).ReadString('\\n')\n"
            '\tcode := m.Run()\n\tif code == 0 {\n\t\tfmt.Printf("\\n%s\\n", t[:len(t)-1])\n\t}\n'
            "\tos.Exit(code)\n}\n"
        )
        return {"main_test.go": code, "lingcoder_main_test.go": ours}
    match = _last(r"\bfunc\s+main\s*\(\s*\)", code)
    if match is None:
        raise LingcoderError("Go tests define neither `func main()` nor `func TestX(t *testing.T)`")
    code = code[: match.start()] + "func lingcoderTestsMain()" + code[match.end() :]
    ours = (
        'package main\n\nimport (\n\t"bufio"\n\t"fmt"\n\t"os"\n)\n\nfunc main() {\n'
        "\tt, _ := bufio.NewReader(os.Stdin).ReadString('\\n')\n\tlingcoderTestsMain()\n"
        '\tfmt.Printf("\\n%s\\n", t[:len(t)-1])\n}\n'
    )
    return {"main.go": code, "lingcoder_main.go": ours}


def _last(pattern: str, text: str) -> re.Match | None:
    matches = list(re.finditer(pattern, text))
    return matches[-1] if matches else None


def find_block_end(code: str, open_brace: int) -> int:
    """Index of the `}` closing the `{` at `open_brace`, skipping C-family strings and comments."""
    depth, i, n = 0, open_brace, len(code)
    while i < n:
        ch = code[i]
        if code.startswith("//", i):
            i = code.find("\n", i)
            i = n if i < 0 else i
        elif code.startswith("/*", i):
            i = code.find("*/", i + 2)
            i = n if i < 0 else i + 1
        elif ch in "\"'`":
            i += 1
            while i < n and code[i] != ch:
                i += 2 if code[i] == "\\" and ch != "`" else 1
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise LingcoderError("unbalanced braces in the program: cannot find where `main` ends")


_FILES = {
    "python": _python_files,
    "javascript": _javascript_files,
    "shell": _shell_files,
    "cpp": _cpp_files,
    "java": _java_files,
    "rust": _rust_files,
    "go": _go_files,
}


def _java_classpath() -> str:
    """The working directory plus $LINGCODER_JAVA_CLASSPATH (MultiPL-E's Java problems import
    org.javatuples: point it at javatuples-1.2.jar, readable by the sandbox user)."""
    return os.pathsep.join(p for p in [".", os.environ.get("LINGCODER_JAVA_CLASSPATH", "")] if p)


_BUILD = {
    "cpp": lambda t, f: [t["g++"], "-std=c++17", "-O1", "-o", "prog", "main.cpp"],
    "java": lambda t, f: [
        t["javac"],
        "-J-Xmx512m",
        "-J-XX:-UsePerfData",
        "-J-XX:+UseSerialGC",
        "-encoding",
        "UTF-8",
        "-nowarn",
        "-cp",
        _java_classpath(),
        "-d",
        ".",
        *f,
    ],
    "rust": lambda t, f: [t["rustc"], "--edition", "2021", "--cap-lints", "allow", "-o", "prog", "main.rs"],
    "go": lambda t, f: (
        [t["go"], "test", "-c", "-o", "prog", "."]
        if "main_test.go" in f
        else [t["go"], "build", "-o", "prog", "."]
    ),
}

_RUN = {
    "python": lambda t, f: (
        [t["python"], "-I", "-S", "main.py"] if "main.py" in f else [t["python"], "-I", "program.py"]
    ),
    "javascript": lambda t, f: [t["node"], "--max-old-space-size=1024", "main.js"],
    "shell": lambda t, f: [t["bash"], "main.sh"],
    "cpp": lambda t, f: ["./prog"],
    "java": lambda t, f: [
        t["java"],
        "-ea",
        "-Xmx1g",
        "-Xss64m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-XX:-UsePerfData",
        "-cp",
        _java_classpath(),
        "LingcoderMain" if "LingcoderMain" in "".join(f.values()) else Path(next(iter(f))).stem,
    ],
    "rust": lambda t, f: ["./prog"],
    "go": lambda t, f: ["./prog"],
}

_VERSION = ("--version",)


def _python_candidates() -> tuple[str, ...]:
    """$LINGCODER_SANDBOX_PYTHON first (an interpreter with the packages benchmarks' tests import);
    then, as root (programs run as another uid), the system's python3 before the harness's own
    interpreter, which may live where that uid cannot read; otherwise the other way round. The first
    that runs in the sandbox wins (read when this module is imported)."""
    ours = (sys.executable, "python3") if os.geteuid() != 0 else ("python3", sys.executable)
    chosen = os.environ.get("LINGCODER_SANDBOX_PYTHON")
    return (chosen, *ours) if chosen else ours


def _rustc_candidates() -> tuple[str, ...]:
    """A real rustc before rustup's proxy: the proxy picks its toolchain from $HOME/.rustup, which the
    sandbox's scrubbed HOME hides, so it fails there. So the system's rustc first, then the binaries
    of rustup's toolchains themselves, stable first (usable where the sandbox user can read them),
    then whatever `rustc` is on PATH."""
    home = Path(os.environ.get("RUSTUP_HOME") or Path.home() / ".rustup")
    try:
        toolchains = sorted(home.glob("toolchains/*/bin/rustc"), key=lambda p: ("stable" not in p.parts[-3], str(p)))
    except OSError:
        toolchains = []
    return ("/usr/bin/rustc", *map(str, toolchains), "rustc")


LANGUAGES: dict[str, Language] = {
    lang.name: lang
    for lang in [
        Language(
            "python",
            ("py", "python3"),
            {"python": (_python_candidates(), ("-I", "-c", "import sys; print(sys.version)"))},
        ),
        Language("javascript", ("js", "node", "nodejs"), {"node": (("node", "nodejs"), _VERSION)}),
        Language("cpp", ("c++", "cc", "cxx"), {"g++": (("g++",), _VERSION)}, compiled=True),
        Language(
            "java",
            (),
            {
                "javac": (("javac",), ("-J-Xmx256m", "-version")),
                "java": (("java",), ("-Xmx256m", "-version")),
            },
            compiled=True,
        ),
        Language("go", ("golang",), {"go": (("go",), ("version",))}, compiled=True),
        Language("rust", ("rs",), {"rustc": (_rustc_candidates(), _VERSION)}, compiled=True),
        Language("shell", ("sh", "bash"), {"bash": (("bash",), _VERSION)}),
    ]
}
_ALIASES = {alias: lang.name for lang in LANGUAGES.values() for alias in (lang.name, *lang.aliases)}


def get_language(name: str) -> Language:
    """Look a language up by name or alias (`py`, `js`, `c++`, `rs`, `sh`...)."""
    key = _ALIASES.get(str(name).strip().lower())
    if key is None:
        raise LingcoderError(f"language {name!r}: unknown (known: {', '.join(sorted(LANGUAGES))})")
    return LANGUAGES[key]


def toolchain(language: Language, sandbox: Sandbox) -> Toolchain:
    """The tools of `language` that work inside `sandbox` (cached per process and isolation)."""
    return _toolchain(language.name, sandbox.isolation())


@functools.cache
def _toolchain(name: str, isolation: Isolation) -> Toolchain:
    language = LANGUAGES[name]
    sandbox = Sandbox(isolation=isolation)
    tools, version, problems = {}, "", []
    search_path = os.pathsep.join([SAFE_PATH, os.environ.get("PATH", "")])
    for tool, (candidates, version_argv) in language.tools.items():
        found = None
        for candidate in dict.fromkeys(_resolve(c, search_path) for c in candidates):
            if candidate is None:
                continue
            with tempfile.TemporaryDirectory(
                prefix="lingcoder-probe-", dir=sandbox.workdir_base(), ignore_cleanup_errors=True
            ) as tmp:
                result = sandbox.execute(
                    [candidate, *version_argv],
                    Path(tmp),
                    timeout=60,
                    limits=Limits(cpu_seconds=60),
                    env=language.env(Path(tmp), Toolchain()),
                )
            if result.returncode == 0 and not result.timed_out:
                found = candidate
                version = version or (result.stdout + result.stderr).strip().splitlines()[0]
                break
            detail = (result.stderr or result.stdout).strip().replace("\n", " ")[:160]
            problems.append(f"{candidate} does not run in the sandbox ({detail})")
        if found is None:
            reason = "; ".join(problems) or f"`{'` or `'.join(candidates)}` not found on PATH"
            return Toolchain(missing=f"{language.name} toolchain missing: {reason}")
        tools[tool] = found
    return Toolchain(tools=tools, version=version)


def _resolve(candidate: str, search_path: str) -> str | None:
    if os.path.isabs(candidate):
        return candidate if os.access(candidate, os.X_OK) else None
    return shutil.which(candidate, path=search_path)
