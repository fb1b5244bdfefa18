"""Mining the curated corpus without any model: documented functions -> instruction/solution/tests.

Every function definition in every Python document is looked at and either becomes a candidate or
is dropped with its reason (stage `mine`): `method`, `nested_function`, `conditional_definition`
(not at module level), `no_docstring`, `no_body` (only a docstring), `no_tests`,
`docstring_not_separable`, `not_self_contained` (extract.py). A candidate's task is its signature
and docstring; its answer is the function (docstring removed) with the module context it needs; its
tests are
- the docstring's doctest examples, when one that is not skipped calls the function, run by the
  standard `doctest` runner (so directives, output matching and expected exceptions behave as they
  do for the module's authors);
- asserts mined from the corpus: `assert` statements anywhere in the same repository that call the
  function and read no other non-builtin name, used only when the function's name is defined once
  at module level in that repository (else the call is ambiguous).

Large corpora are parsed in worker processes (parsing is most of the cost); what each file yields is
small and assembled in order, so the result does not depend on the worker count. As for curation,
a script that runs this with several workers needs an `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import ast
import doctest
import multiprocessing
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lingcoder.errors import LingcoderError
from lingcoder.synth.extract import BUILTIN_NAMES, ModuleContext, NotSelfContained, free_names
from lingcoder.synth.samples import REPLY_FORMAT, Drop, Origin, Sample, SourceOutput

if TYPE_CHECKING:
    from lingcoder.synth.corpus import CorpusFile

MAX_ASSERTS = 20  # mined asserts kept per function
FILES_PER_PROCESS = 100  # below this many files per worker, starting processes costs more than it saves
NOT_MODULE_LEVEL = {"ClassDef": "method", "FunctionDef": "nested_function", "AsyncFunctionDef": "nested_function"}


@dataclass
class DocumentCounts:
    """What happened to the documents mined (functions are counted in the samples' funnel)."""

    read: int = 0
    python: int = 0
    not_python: dict[str, int] = field(default_factory=dict)
    syntax_error: int = 0


@dataclass(frozen=True)
class Seed:
    """A documented module-level function: inspiration for the teacher, tested or not."""

    origin: Origin
    code: str


@dataclass(frozen=True)
class FunctionFacts:
    """What one function offers, before the corpus-wide asserts are known."""

    name: str
    where: str
    early_drop: tuple[str, str] | None = None  # (reason, detail) that no test can change
    prompt: str = ""
    doctests: str = ""  # test code, empty without a calling, non-skipped doctest example
    program: str = ""
    not_self_contained: tuple[str, str] | None = None
    seed: str = ""


@dataclass(frozen=True)
class FileFacts:
    """One document's functions, module-level names and self-contained asserts (text, called name)."""

    repo: str
    syntax_error: bool = False
    functions: tuple[FunctionFacts, ...] = ()
    module_functions: tuple[str, ...] = ()
    asserts: tuple[tuple[str, str], ...] = ()


def mine(files: list[CorpusFile], workers: int = 1) -> tuple[SourceOutput, DocumentCounts, list[Seed]]:
    """Candidates from every function of every Python document, the document counts, and seeds."""
    counts = DocumentCounts(read=len(files))
    python = []
    for file in files:
        if file.is_python:
            python.append(file)
        else:
            counts.not_python[file.language] = counts.not_python.get(file.language, 0) + 1
    if workers > 1 and len(python) >= FILES_PER_PROCESS * 2:
        context = multiprocessing.get_context("spawn")  # forking a process that runs threads can deadlock
        try:
            with ProcessPoolExecutor(min(workers, len(python) // FILES_PER_PROCESS), mp_context=context) as pool:
                facts = list(pool.map(file_facts, python, chunksize=max(1, len(python) // (workers * 8))))
        except BrokenProcessPool:
            raise LingcoderError("mining: a worker process died; a script that calls synth() with workers > 1 "
                                 "needs an `if __name__ == \"__main__\":` guard (workers re-import it)") from None
    else:
        facts = [file_facts(f) for f in python]
    counts.syntax_error = sum(f.syntax_error for f in facts)
    counts.python = len(facts) - counts.syntax_error
    batch, seeds = assemble(facts)
    return batch, counts, seeds


def assemble(facts: list[FileFacts]) -> tuple[SourceOutput, list[Seed]]:
    """Decide every function's fate now that the asserts of the whole corpus are known."""
    defined: dict[tuple[str, str], int] = defaultdict(int)
    for file in facts:
        for name in file.module_functions:
            defined[(file.repo, name)] += 1
    asserts: dict[tuple[str, str], list[str]] = defaultdict(list)
    for file in facts:
        for text, name in file.asserts:
            found = asserts[(file.repo, name)]
            if defined[(file.repo, name)] == 1 and text not in found and len(found) < MAX_ASSERTS:
                found.append(text)
    batch, seeds = SourceOutput(), []
    for file in facts:
        for fn in file.functions:
            origin = Origin("mined", fn.where)
            batch.seen["mined"] = batch.seen.get("mined", 0) + 1
            if fn.seed:
                seeds.append(Seed(origin, fn.seed))
            mined_asserts = asserts.get((file.repo, fn.name), [])
            if fn.early_drop:
                reason, detail = fn.early_drop
            elif not fn.doctests and not mined_asserts:
                reason, detail = "no_tests", "no doctest example calls it and no assert in the repository does"
            elif fn.not_self_contained:
                reason, detail = fn.not_self_contained
            else:
                tests = "\n\n".join(p for p in (fn.doctests, "\n".join(mined_asserts)) if p) + "\n"
                tags = ("synthetic", "mined", *(["doctest"] if fn.doctests else []),
                        *(["mined_asserts"] if mined_asserts else []))
                batch.samples.append(Sample(origin, fn.prompt, fn.program, tests, tags, fn.name))
                continue
            batch.drops.append(Drop(origin, "mine", reason, detail))
    return batch, seeds


def file_facts(file: CorpusFile) -> FileFacts:
    """Parse one document and describe its functions and asserts."""
    try:
        tree = ast.parse(file.content)
    except (SyntaxError, ValueError):  # ValueError: NUL bytes
        return FileFacts(file.repo, syntax_error=True)
    context = ModuleContext(file.content, tree)
    functions, asserts = [], []
    for node, parent in statements_with_parents(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            where = f"{file.repo}/{file.path}:{node.lineno} {node.name}"
            functions.append(((node.lineno, node.col_offset), function_facts(context, node, parent, where)))
        elif isinstance(node, ast.Assert):
            asserts += self_contained_assert(node)
    functions = [facts for _, facts in sorted(functions, key=lambda pair: pair[0])]
    module_functions = tuple(s.name for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef))
    return FileFacts(file.repo, False, tuple(functions), module_functions, tuple(asserts))


def function_facts(context: ModuleContext, function, parent, where: str) -> FunctionFacts:
    name = function.name
    if not isinstance(parent, ast.Module):
        return FunctionFacts(name, where, (NOT_MODULE_LEVEL.get(type(parent).__name__, "conditional_definition"), ""))
    docstring = ast.get_docstring(function)
    if not docstring or not docstring.strip():
        return FunctionFacts(name, where, ("no_docstring", ""))
    seed = context.statement_text(function)
    if len(function.body) == 1:
        return FunctionFacts(name, where, ("no_body", "the body is only the docstring"), seed=seed)
    examples = doctest.DocTestParser().get_examples(docstring)
    calling = any(name in called_names(e.source) and not e.options.get(doctest.SKIP) for e in examples)
    facts = {"prompt": instruction(function, docstring), "seed": seed,
             "doctests": doctest_program(docstring, name) if calling else ""}
    function_text = without_docstring(context, function)
    if function_text is None:
        return FunctionFacts(name, where, ("docstring_not_separable", "the docstring shares a line with code"), **facts)
    try:
        return FunctionFacts(name, where, program=context.program(function, function_text), **facts)
    except NotSelfContained as exc:
        return FunctionFacts(name, where, not_self_contained=("not_self_contained", str(exc)), **facts)


def statements_with_parents(tree: ast.Module):
    """(statement, the node whose body holds it) for every statement, expressions not entered
    (definitions and asserts are statements, so this finds them all at a fraction of `ast.walk`)."""
    stack: list[tuple[ast.AST, ast.AST]] = [(tree, tree)]
    while stack:
        node, parent = stack.pop()
        if node is not tree:
            yield node, parent
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, name, None)
            if isinstance(children, list):
                owner = parent if isinstance(node, ast.ExceptHandler | ast.match_case) else node
                stack.extend((child, owner) for child in reversed(children) if isinstance(child, ast.AST))


def instruction(function, docstring: str) -> str:
    """The task a documented function answers: its signature and its docstring."""
    prefix = "async def" if isinstance(function, ast.AsyncFunctionDef) else "def"
    signature = f"{prefix} {function.name}({ast.unparse(function.args)})"
    if function.returns is not None:
        signature += f" -> {ast.unparse(function.returns)}"
    return f"Write a Python function `{signature}`.\n\n{docstring.strip()}\n\n{REPLY_FORMAT}"


def without_docstring(context: ModuleContext, function) -> str | None:
    """The function's source (decorators included) without its docstring lines, or None when the
    docstring shares a line with other code."""
    text = context.statement_text(function)
    first = min([function.lineno, *(d.lineno for d in function.decorator_list)])
    doc = function.body[0]
    lines = text.splitlines()
    start, end = doc.lineno - first, doc.end_lineno - first
    head = lines[start].encode()[: doc.col_offset].decode(errors="replace")
    tail = lines[end].encode()[doc.end_col_offset :].decode(errors="replace").strip()
    if head.strip() or (tail and not tail.startswith("#")) or function.body[1].lineno <= doc.end_lineno:
        return None
    return "\n".join(lines[:start] + lines[end + 1 :])


def doctest_program(docstring: str, name: str) -> str:
    """Test code that runs the docstring's examples with `doctest` against the solution's globals."""
    return (
        "import doctest as _doctest\n"
        f"_examples = {docstring!r}\n"
        f"_test = _doctest.DocTestParser().get_doctest(_examples, dict(globals()), {name!r}, None, 0)\n"
        "_report = []\n"
        "_result = _doctest.DocTestRunner(verbose=False).run(_test, out=_report.append)\n"
        "assert _result.attempted > 0, 'no doctest example ran'\n"
        "assert _result.failed == 0, 'doctest failed:\\n' + ''.join(_report)"
    )


def called_names(source: str) -> set[str]:
    """Names called directly (`name(...)`) in a piece of code; empty when it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    return {c.func.id for c in ast.walk(tree) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}


def self_contained_assert(node: ast.Assert) -> list[tuple[str, str]]:
    """[(assert text, the one name it calls)] when the assert reads nothing but that name and builtins."""
    text = ast.unparse(node)
    try:
        needed = free_names(text) - BUILTIN_NAMES
    except NotSelfContained:
        return []
    called = called_names(text) & needed
    return [(text, called.pop())] if len(needed) == 1 and len(called) == 1 else []
