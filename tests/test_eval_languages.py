"""Each language through `run_program`: passes, fails, and an early exit 0 is caught.

Languages whose toolchain is missing here are skipped with the harness's own reason.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest

from lingcoder.evaluate import languages
from lingcoder.evaluate.execution import default_sandbox, run_program
from lingcoder.evaluate.languages import get_language, toolchain

# language -> (right solution, wrong solution, solution that exits 0 early, tests)
CASES = {
    "python": (
        "def f(x):\n    return x + 1\n",
        "def f(x):\n    return x\n",
        "import sys\ndef f(x):\n    sys.exit(0)\n",
        "assert f(1) == 2\n",
    ),
    "javascript": (
        "function f(x) { return x + 1; }",
        "function f(x) { return x; }",
        "function f(x) { process.exit(0); }",
        "const assert = require('node:assert');\nfunction test() {\n  assert.deepEqual(f(1), 2);\n}\n"
        "test();\n",
    ),
    "cpp": (
        "#include <cassert>\nlong f(long x) {\n    return x + 1;",
        "#include <cassert>\nlong f(long x) {\n    return x;",
        "#include <cassert>\n#include <cstdlib>\nlong f(long x) {\n    exit(0);",
        "\n}\nint main() {\n    auto candidate = f;\n    assert(candidate(1) == 2);\n}\n",
    ),
    "java": (
        "import java.util.*;\nclass Problem {\n    public static long f(long x) {\n        return x + 1;",
        "import java.util.*;\nclass Problem {\n    public static long f(long x) {\n        return x;",
        "import java.util.*;\nclass Problem {\n    public static long f(long x) {\n"
        "        System.exit(0); return 0;",
        "\n    }\n    public static void main(String[] args) {\n    assert(f((1l)) == (2l));\n    }\n\n}\n",
    ),
    "rust": (
        "fn f(x: i64) -> i64 {\n    x + 1",
        "fn f(x: i64) -> i64 {\n    x",
        "fn f(x: i64) -> i64 {\n    std::process::exit(0)",
        "\n}\n\nfn main() {\n    let candidate = f;\n    assert_eq!(candidate(1), 2);\n}\n",
    ),
    "go": (
        'package f_test\n\nimport (\n    "testing"\n)\n\nfunc f(x int) int {\n    return x + 1',
        'package f_test\n\nimport (\n    "testing"\n)\n\nfunc f(x int) int {\n    return x',
        'package f_test\n\nimport (\n    "os"\n    "testing"\n)\n\n'
        "func f(x int) int {\n    os.Exit(0)\n    return 0",
        '\n}\n\nfunc TestF(t *testing.T) {\n  if f(1) != 2 {\n    t.Errorf("f(1) != 2")\n  }\n}\n',
    ),
    "shell": (
        "f() {\n    echo $(( $1 + 1 ))",
        "f() {\n    echo $1",
        "exit 0\nf() {\n    echo $(( $1 + 1 ))",
        '\n}\n\ncandidate() {\n    f "$@"\n}\n\nset -e\nrun_test() {\n    [[ $(candidate "1") = "2" ]]\n}\n\n'
        "run_test\n",
    ),
}


def _require(language: str) -> None:
    chain = toolchain(get_language(language), default_sandbox())
    if chain.missing:
        pytest.skip(chain.missing)


@pytest.mark.parametrize("language", sorted(CASES))
def test_language_judges_right_wrong_and_early_exit(language):
    _require(language)
    *solutions, tests = CASES[language]
    with ThreadPoolExecutor(3) as pool:
        ok, bad, exited = pool.map(lambda source: run_program(language, source, tests=tests), solutions)
    assert ok.status == "passed", (ok.error, ok.stderr[-2000:])
    assert bad.status in {"failed", "error"}
    assert exited.status == "failed" and "before the tests completed" in exited.error


def test_rust_tests_cannot_be_disarmed_by_a_macro():
    _require("rust")
    _, wrong, _, tests = CASES["rust"]
    disarm = "macro_rules! assert_eq { ($($t:tt)*) => {}; }\n"
    assert run_program("rust", disarm + wrong, tests=tests).status != "passed"


def test_javascript_assert_cannot_be_monkeypatched():
    _require("javascript")
    _, wrong, _, tests = CASES["javascript"]
    patch = "require('assert').deepEqual = () => {};\n"
    assert run_program("javascript", patch + wrong, tests=tests).status != "passed"


def test_build_error_is_an_error():
    _require("cpp")
    verdict = run_program("cpp", "long f(long x) {\n    return x +;", tests=CASES["cpp"][3])
    assert verdict.status == "error" and verdict.error.startswith("build failed")


def test_plain_program_passes_on_exit_zero():
    assert run_program("python", "print('hi')\n").status == "passed"
    assert run_program("python", "raise SystemExit(3)\n").status == "failed"


def test_missing_toolchain_skips_with_the_reason(monkeypatch):
    fake = languages.Language("cpp", (), {"g++": (("no-such-compiler-xyz",), ("--version",))}, compiled=True)
    monkeypatch.setitem(languages.LANGUAGES, "cpp", fake)
    languages._toolchain.cache_clear()
    try:
        verdict = run_program("cpp", CASES["cpp"][0], tests=CASES["cpp"][3])
    finally:
        languages._toolchain.cache_clear()
    assert verdict.status == "skipped"
    assert "cpp toolchain missing" in verdict.error and "no-such-compiler-xyz" in verdict.error


def test_unknown_language_is_an_error():
    from lingcoder.errors import LingcoderError

    with pytest.raises(LingcoderError, match="language 'cobol'"):
        get_language("cobol")
