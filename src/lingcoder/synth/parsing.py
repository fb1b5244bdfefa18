"""Parsing teacher replies: problem, solution and tests out of free text, robustly, with reasons.

The teacher is asked for `### Problem` / `### Solution` / `### Tests` sections with fenced code
(`reply_format`). Replies that drift are still read where the intent is clear: other heading
styles (`**Solution:**`, `Tests:`), blocks without headings (the last block with an `assert` is the
tests, the first other block the solution), a single block mixing code and top-level asserts
(split), a missing closing fence, tests that import the solution from a module (`from solution
import f`: dropped, the tests run next to the solution). What cannot be read raises `ParseError`
with a short reason slug, counted in the funnel: `no_code_block`, `no_solution`, `no_tests`,
`solution_syntax_error`, `tests_syntax_error`, `tests_without_assert`, `solution_defines_nothing`,
`tests_do_not_call_solution`, `no_problem`, `bad_question`, `bad_knowledge_point`.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_HEADING = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*(problem|question|task|solution|answer|code|"
    r"tests?|test cases|unit tests)[ \t]*:?[ \t]*(?:\*\*|__)?[ \t]*:?[ \t]*$",
    re.I | re.M,
)
_SECTION = {"problem": "problem", "question": "problem", "task": "problem", "solution": "solution",
            "answer": "solution", "code": "solution"}
_PYTHON_TAGS = {"", "python", "py", "python3"}
_KNOWLEDGE_POINT = re.compile(r"knowledge point\s*[:：-]\s*(.+)", re.I)
MAX_QUESTION_CHARS = 4000
MAX_KNOWLEDGE_POINT_CHARS = 200


class ParseError(Exception):
    """A reply that cannot be used; `reason` is a slug for the funnel, the message says more."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ParsedProblem:
    problem: str
    solution: str
    tests: str
    entry_point: str


def reply_format(with_problem: bool) -> str:
    """The exact layout the teacher is asked to answer in."""
    problem = "### Problem\n<the problem statement, self-contained>\n\n" if with_problem else ""
    return (
        "Answer in exactly this format and nothing else:\n\n"
        f"{problem}### Solution\n```python\n<a complete, self-contained Python solution>\n```\n\n"
        "### Tests\n```python\n<assert statements that call the solution and check its results>\n```"
    )


def parse_problem_reply(text: str, problem: str | None = None) -> ParsedProblem:
    """Problem, solution and tests from a reply; `problem` given when the question came first (Magpie)."""
    sections = _sections(text)
    if "solution" in sections or "tests" in sections:
        solution = _code(sections.get("solution", ""))
        tests = _code(sections.get("tests", ""))
    else:
        solution, tests = _unlabelled(text)
    if not solution.strip():
        raise ParseError("no_solution", "no solution code")
    if not tests.strip():
        raise ParseError("no_tests", "no test code")
    solution_tree = _parse(solution, "solution_syntax_error", "solution")
    tests_tree = _parse(tests, "tests_syntax_error", "tests")
    definitions = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    defined = {s.name for s in solution_tree.body if isinstance(s, definitions)}
    if not defined:
        raise ParseError("solution_defines_nothing", "the solution defines no function or class")
    tests, tests_tree = _without_solution_imports(tests, tests_tree, defined)
    if not any(isinstance(n, ast.Assert) for n in ast.walk(tests_tree)):
        raise ParseError("tests_without_assert", "the tests contain no assert")
    called = [n.func.id for n in ast.walk(tests_tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    entry = next((name for name in called if name in defined), None)
    if entry is None:
        raise ParseError("tests_do_not_call_solution", "the tests call nothing the solution defines")
    if problem is None:
        problem = sections.get("problem", "").strip() or _FENCE.split(_HEADING.split(text)[0])[0].strip()
    if not problem:
        raise ParseError("no_problem", "no problem statement")
    return ParsedProblem(problem.strip(), solution.strip() + "\n", tests.strip() + "\n", entry)


def parse_question(text: str) -> str:
    """A Magpie question: the teacher's user turn, stripped; refused when empty or runaway."""
    question = text.strip()
    if len(question) < 15:
        raise ParseError("bad_question", f"question too short ({len(question)} characters)")
    if len(question) > MAX_QUESTION_CHARS:
        raise ParseError("bad_question", f"question over {MAX_QUESTION_CHARS} characters")
    return question


def parse_knowledge_point(text: str) -> str:
    """The knowledge point of a reply (`Knowledge point: ...`, else its first line)."""
    match = _KNOWLEDGE_POINT.search(text)
    line = match.group(1) if match else next((x for x in text.splitlines() if x.strip()), "")
    point = line.strip().strip("`*_ ").strip()
    if len(point) < 3 or len(point) > MAX_KNOWLEDGE_POINT_CHARS:
        raise ParseError("bad_knowledge_point", f"no usable knowledge point in {text[:80]!r}")
    return point


def _sections(text: str) -> dict[str, str]:
    """Heading name -> the text under it (first occurrence of each)."""
    found: dict[str, str] = {}
    headings = list(_HEADING.finditer(text))
    for index, heading in enumerate(headings):
        end = headings[index + 1].start() if index + 1 < len(headings) else len(text)
        name = heading.group(1).lower()
        name = _SECTION.get(name, "tests" if name.startswith(("test", "unit")) else name)
        found.setdefault(name, text[heading.end() : end])
    return found


def _code(section: str) -> str:
    """The first fenced block of a section, else the section itself when it is bare code."""
    blocks = _FENCE.findall(section)
    if blocks:
        python = [code for tag, code in blocks if tag.lower() in _PYTHON_TAGS]
        return (python or [blocks[0][1]])[0]
    return section.strip()


def _unlabelled(text: str) -> tuple[str, str]:
    """(solution, tests) from fenced blocks without headings."""
    blocks = [code for tag, code in _FENCE.findall(text) if tag.lower() in _PYTHON_TAGS]
    if not blocks:
        raise ParseError("no_code_block", "no fenced Python code block")
    with_asserts = [i for i, code in enumerate(blocks) if re.search(r"^\s*assert\b", code, re.M)]
    if len(blocks) >= 2 and with_asserts:
        tests_index = with_asserts[-1]
        return next(code for i, code in enumerate(blocks) if i != tests_index), blocks[tests_index]
    tree = _parse(blocks[0], "solution_syntax_error", "code")
    lines = blocks[0].splitlines()
    asserts = [s for s in tree.body if isinstance(s, ast.Assert)]
    if not asserts:
        raise ParseError("no_tests", "one code block and no asserts in it")
    test_lines = {i for s in asserts for i in range(s.lineno - 1, s.end_lineno)}
    solution = "\n".join(line for i, line in enumerate(lines) if i not in test_lines)
    return solution, "\n".join(lines[i] for i in sorted(test_lines))


def _parse(code: str, reason: str, what: str) -> ast.Module:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError) as exc:
        raise ParseError(reason, f"the {what} does not parse: {getattr(exc, 'msg', exc)}") from None


def _without_solution_imports(tests: str, tree: ast.Module, defined: set[str]) -> tuple[str, ast.Module]:
    """Tests minus top-level `from X import names` whose names the solution defines."""
    drop = {i for s in tree.body if isinstance(s, ast.ImportFrom) and s.module != "__future__"
            and {a.name for a in s.names} <= defined for i in range(s.lineno - 1, s.end_lineno)}
    if not drop:
        return tests, tree
    kept = "\n".join(line for i, line in enumerate(tests.splitlines()) if i not in drop)
    return kept, ast.parse(kept)
