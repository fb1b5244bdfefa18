"""HumanEvalFix (the HumanEvalPack "fix tests" task): repair a buggy function, in python, js, cpp,
java, go and rust, from HumanEvalPack rows (task_id Python/0, JavaScript/0, CPP/0, Java/0, Go/0,
Rust/0; prompt, declaration, canonical_solution, buggy_solution, entry_point, import, test_setup,
test). One file per language as saved from the hub, or several concatenated; the language is read
from each task_id.

The base prompt is the benchmark's: the buggy function and its tests, "Fix bugs in <name>.", then
the declaration again, which the model continues. The completion is therefore a function body (as
canonical_solution and buggy_solution are); it is cut where the function ends (the first
unindented line in Python, the closing brace elsewhere) and judged as declaration + body + test.
A chat model is asked for the whole fixed function: in Python it replaces the declaration, in the
other languages its body after the repeated declaration line is used.

Per language: Python and C++ get the imports and headers the benchmark's harness adds; JavaScript's tests call
`console.assert`, made to throw so that a failed check fails the run; Go's tests use testify's
`assert`, served by a small package with the same API in the program's GOPATH (no network), and
the imports are merged and pruned to those used, as the benchmark does; Rust's `#[cfg(test)]`
module is run from `main`, and tasks needing the crates md5/regex/rand, which a plain rustc cannot
link, are `skipped`.
"""

from __future__ import annotations

import re
from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.benchmarks import Benchmark, BenchmarkOptions, Problem, read_rows
from lingcoder.evaluate.suites import collect

LANGUAGES = {
    "python": "python",
    "javascript": "javascript",
    "js": "javascript",
    "cpp": "cpp",
    "java": "java",
    "go": "go",
    "rust": "rust",
}
# The benchmark harness's limits per language (Rust's covers a first cargo build there).
SECONDS = {"python": 10.0, "javascript": 10.0, "cpp": 60.0, "java": 10.0, "go": 20.0, "rust": 300.0}

_PYTHON_IMPORTS = (
    "import math\nimport re\nimport sys\nimport copy\nimport datetime\nimport itertools\n"
    "import collections\nimport heapq\nimport statistics\nimport functools\nimport hashlib\n"
    "import string\nfrom typing import *\nfrom collections import *\n"
    "try:\n    import numpy\n    import numpy as np\nexcept ImportError:\n    pass\n"
)
# The C++ headers the benchmark's harness puts before every answer (boost/any.hpp left to the tasks
# that include it themselves).
_CPP_INCLUDES = (
    "#include<stdlib.h>\n#include<algorithm>\n#include<cmath>\n#include<math.h>\n#include<numeric>\n"
    "#include<stdio.h>\n#include<vector>\n#include<set>\n#include<map>\n#include<queue>\n#include<stack>\n"
    "#include<list>\n#include<deque>\n#include<string>\n#include<climits>\n#include<cstring>\n"
    "#include<iostream>\n#include<sstream>\n#include<fstream>\nusing namespace std;\n"
)
_JS_THROWING_ASSERT = (
    "console.assert = (condition, ...message) => "
    "{ if (!condition) throw new Error('Assertion failed' + (message.length ? ': ' + message.join(' ') : '')); };\n"
)
_RUST_CRATES = ("md5", "regex", "rand")

# Served at $GOPATH/src/github.com/stretchr/testify/assert: the calls HumanEvalPack's Go tests make.
_GO_ASSERT = """// Package assert offers the part of testify's assert API that HumanEvalPack's tests use.
package assert

import (
\t"bytes"
\t"fmt"
\t"reflect"
\t"testing"
)

type Assertions struct{ t *testing.T }

func New(t *testing.T) *Assertions { return &Assertions{t} }

func ObjectsAreEqual(expected, actual interface{}) bool {
\tif expected == nil || actual == nil {
\t\treturn expected == actual
\t}
\te, eok := expected.([]byte)
\ta, aok := actual.([]byte)
\tif eok && aok {
\t\treturn bytes.Equal(e, a)
\t}
\treturn reflect.DeepEqual(expected, actual)
}

func isNil(object interface{}) bool {
\tif object == nil {
\t\treturn true
\t}
\tvalue := reflect.ValueOf(object)
\tswitch value.Kind() {
\tcase reflect.Chan, reflect.Func, reflect.Interface, reflect.Map, reflect.Ptr, reflect.Slice:
\t\treturn value.IsNil()
\t}
\treturn false
}

func fail(t *testing.T, what string, msg []interface{}) bool {
\tt.Helper()
\tt.Errorf("%s %s", what, fmt.Sprint(msg...))
\treturn false
}

func Equal(t *testing.T, expected, actual interface{}, msg ...interface{}) bool {
\tt.Helper()
\tif !ObjectsAreEqual(expected, actual) {
\t\treturn fail(t, fmt.Sprintf("not equal: expected %#v, actual %#v", expected, actual), msg)
\t}
\treturn true
}

func NotEqual(t *testing.T, expected, actual interface{}, msg ...interface{}) bool {
\tt.Helper()
\tif ObjectsAreEqual(expected, actual) {
\t\treturn fail(t, fmt.Sprintf("should not be %#v", actual), msg)
\t}
\treturn true
}

func True(t *testing.T, value bool, msg ...interface{}) bool {
\tt.Helper()
\tif !value {
\t\treturn fail(t, "should be true", msg)
\t}
\treturn true
}

func False(t *testing.T, value bool, msg ...interface{}) bool {
\tt.Helper()
\tif value {
\t\treturn fail(t, "should be false", msg)
\t}
\treturn true
}

func Nil(t *testing.T, object interface{}, msg ...interface{}) bool {
\tt.Helper()
\tif !isNil(object) {
\t\treturn fail(t, fmt.Sprintf("expected nil, got %#v", object), msg)
\t}
\treturn true
}

func NotNil(t *testing.T, object interface{}, msg ...interface{}) bool {
\tt.Helper()
\tif isNil(object) {
\t\treturn fail(t, "expected a value, got nil", msg)
\t}
\treturn true
}

func (a *Assertions) Equal(expected, actual interface{}, msg ...interface{}) bool {
\ta.t.Helper()
\treturn Equal(a.t, expected, actual, msg...)
}

func (a *Assertions) NotEqual(expected, actual interface{}, msg ...interface{}) bool {
\ta.t.Helper()
\treturn NotEqual(a.t, expected, actual, msg...)
}

func (a *Assertions) True(value bool, msg ...interface{}) bool {
\ta.t.Helper()
\treturn True(a.t, value, msg...)
}

func (a *Assertions) False(value bool, msg ...interface{}) bool {
\ta.t.Helper()
\treturn False(a.t, value, msg...)
}

func (a *Assertions) Nil(object interface{}, msg ...interface{}) bool {
\ta.t.Helper()
\treturn Nil(a.t, object, msg...)
}

func (a *Assertions) NotNil(object interface{}, msg ...interface{}) bool {
\ta.t.Helper()
\treturn NotNil(a.t, object, msg...)
}
"""
GO_DATA_FILES = {".gopath/src/github.com/stretchr/testify/assert/assert.go": _GO_ASSERT}


def trim_to_function(body: str, language: str) -> str:
    """The completion up to where the function it continues ends."""
    if language == "python":
        lines = body.split("\n")
        for i, line in enumerate(lines):
            if i > 0 and line.strip() and not line[0].isspace():
                return "\n".join(lines[:i])
        return body
    depth = 2 if language == "java" else 1  # Java's declaration also opens `class Solution {`
    for i, char in enumerate(body):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return body[: i + 1]
    return body


# Standard packages a Go answer may use without importing them; added when used, as the benchmark does.
_GO_HELPER_PACKAGES = (
    "math",
    "strings",
    "fmt",
    "strconv",
    "time",
    "bytes",
    "regexp",
    "sort",
    "math/rand",
    "crypto/md5",
)


def _go_program(parts: list[str]) -> str:
    """One `package main` file: every import block merged, keeping the packages the code uses."""
    code = "\n".join(parts)
    paths: list[str] = list(_GO_HELPER_PACKAGES)
    for block in re.findall(r"^\s*import\s*\(([^)]*)\)", code, re.M):
        paths += re.findall(r'"([^"]+)"', block)
    paths += re.findall(r'^\s*import\s+"([^"]+)"', code, re.M)
    code = re.sub(r"^\s*import\s*\([^)]*\)|^\s*import\s+\"[^\"]+\"|^\s*package\s+\w+", "", code, flags=re.M)
    uncommented = "\n".join(line for line in code.split("\n") if not line.strip().startswith("//"))
    used, names = [], set()
    for path in dict.fromkeys(paths):
        name = path.split("/")[-1]
        if name not in names and re.search(rf"(?<![\w.]){re.escape(name)}\.", uncommented):
            used.append(path)
            names.add(name)
    imports = "".join(f'\t"{p}"\n' for p in used)
    return f"package main\n\nimport (\n{imports})\n{code}"


def _rust_tests(test: str, where: str) -> str:
    """The `#[cfg(test)]` module made callable, and a `main` that runs each of its tests."""
    names = re.findall(r"#\[test\]\s*fn\s+(\w+)", test)
    if not names:
        raise LingcoderError(f"{where}: Rust tests define no #[test] function")
    test = re.sub(r"#\[cfg\(test\)\]", "", test)
    test = re.sub(r"#\[test\]\s*fn\s+", "pub fn ", test)
    calls = "".join(f"    tests::{name}();\n" for name in names)
    return f"{test}\nfn main() {{\n{calls}}}\n"


def _language(task_id: str, where: str) -> str:
    prefix = task_id.split("/")[0].lower()
    if prefix not in LANGUAGES:
        raise LingcoderError(
            f"{where}: task_id {task_id!r} names no HumanEvalPack language "
            "(Python/, JavaScript/, CPP/, Java/, Go/, Rust/)"
        )
    return LANGUAGES[prefix]


def _problem(row: dict, where: str) -> Problem:
    keys = ("task_id", "declaration", "buggy_solution", "canonical_solution", "test", "entry_point")
    missing = [k for k in keys if k not in row]
    if missing:
        raise LingcoderError(f"{where}: missing field(s) {', '.join(missing)} (has: {', '.join(sorted(row))})")
    task_id, entry_point = str(row["task_id"]), row["entry_point"]
    language = _language(task_id, where)
    declaration, test = row["declaration"], row["test"]
    skip_reason, data_files = "", {}
    if language == "rust":
        declaration = re.sub(r"fn\s+main\s*\(\s*\)\s*\{\s*\}", "", declaration)
        crates = [
            c
            for c in _RUST_CRATES
            if re.search(rf"\b{c}::|\bRegex\b" if c == "regex" else rf"\b{c}::", row["canonical_solution"])
        ]
        declaration = re.sub(rf"^\s*use\s+({'|'.join(_RUST_CRATES)})\b[^;]*;[ \t]*$", "", declaration, flags=re.M)
        if crates:
            skip_reason = f"needs the Rust crate(s) {', '.join(crates)}, which a plain rustc cannot link offline"
        test = _rust_tests(test, where)
    elif language == "go":
        data_files = dict(GO_DATA_FILES)
    elif language == "javascript":
        test = _JS_THROWING_ASSERT + test
    elif language == "python" and not re.search(rf"^check\(\s*{re.escape(entry_point)}\s*\)", test, re.M):
        test = f"{test}\n\ncheck({entry_point})\n"
    instruction = f"Fix bugs in {entry_point}."
    context = f"{declaration}{row['buggy_solution']}\n{test if language != 'rust' else row['test']}"
    prompt = f"{context}\n{instruction}\n\n{declaration}"

    header = next((line.strip() for line in reversed(declaration.splitlines()) if line.strip()), "")

    def make_solution(completion: str) -> str:
        if language == "python" and re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", completion, re.M):
            return _PYTHON_IMPORTS + completion  # a chat answer: the whole fixed function
        if header and header in completion:  # a chat answer repeating the declaration: its body follows
            completion = completion[completion.index(header) + len(header) :]
        source = declaration + trim_to_function(completion, language)
        if language == "python":
            return _PYTHON_IMPORTS + source
        if language == "cpp":
            return _CPP_INCLUDES + source
        if language == "go":
            return _go_program([row.get("test_setup") or "", row.get("import") or "", source, test])
        return source

    return Problem(
        task_id,
        language,
        prompt,
        "" if language == "go" else test,
        prompt_is_code=False,
        reference=row["canonical_solution"],
        entry_point=entry_point,
        instruction=f"{context}\n{instruction} Reply with the whole fixed function.",
        make_solution=make_solution,
        timeout=SECONDS[language],
        skip_reason=skip_reason,
        data_files=data_files,
    )


def load(name: str, path: Path, options: BenchmarkOptions) -> Benchmark:
    return Benchmark(name, collect(name, ((where, _problem(row, where)) for _, where, row in read_rows(path))))
