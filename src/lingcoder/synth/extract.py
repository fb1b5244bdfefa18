"""Self-contained programs: a module-level function plus exactly the module context it needs.

The names a function reads from its module are found with `symtable` (the compiler's own scope
analysis, so comprehensions, nested functions, classes and `global` are scoped as Python scopes
them). Each is resolved to the top-level statement that binds it: imports are kept alias by alias,
constants, helper functions and classes whole, and their own needs are resolved in turn. Builtins
need nothing. A name bound nowhere (`__file__`, a star import), a relative import, or a closure that
grows past the limits makes the function not self-contained, with the reason.
"""

from __future__ import annotations

import ast
import builtins
import symtable

BUILTIN_NAMES = frozenset(dir(builtins)) | {"__name__"}
MAX_DEPENDENCIES = 8  # top-level statements other than imports pulled in with the function
MAX_PROGRAM_LINES = 120
MAX_BLOCK_LINES = 15  # an `if`/`try` block that binds a needed name is kept whole up to this size


class NotSelfContained(Exception):
    """The function cannot be cut out of its module; the message says why."""


def free_names(source: str) -> set[str]:
    """Global names that `source` (complete top-level statements) reads but does not bind itself."""
    try:
        top = symtable.symtable(source, "<snippet>", "exec")
    except SyntaxError as exc:
        raise NotSelfContained(f"snippet does not compile alone: {exc.msg}") from None
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    names = set()
    tables = [top]
    while tables:
        table = tables.pop()
        names |= {s.get_name() for s in table.get_symbols() if s.is_referenced() and s.is_global()}
        tables.extend(table.get_children())
    return names - bound


class ModuleContext:
    """The top-level statements of one parsed module and the names each binds."""

    def __init__(self, source: str, tree: ast.Module) -> None:
        self.lines = source.splitlines()
        self.tree = tree
        self.bindings: dict[str, list[int]] = {}
        for index, stmt in enumerate(tree.body):
            for name in bound_names(stmt):
                self.bindings.setdefault(name, []).append(index)
        self.future = [s for s in tree.body if isinstance(s, ast.ImportFrom) and s.module == "__future__"]

    def statement_text(self, stmt: ast.stmt) -> str:
        first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))])
        return "\n".join(self.lines[first - 1 : stmt.end_lineno])

    def program(self, function: ast.FunctionDef | ast.AsyncFunctionDef, function_text: str) -> str:
        """`function_text` (the function's source, possibly edited) preceded by what it needs."""
        index = self.tree.body.index(function)
        included: dict[int, None] = {index: None}
        aliases: dict[int, set[str]] = {}  # import statement -> the names it must still bind
        pending = [(name, function.lineno) for name in sorted(free_names(function_text))]
        while pending:
            name, line = pending.pop()
            if name not in self.bindings:
                if name in BUILTIN_NAMES:
                    continue
                raise NotSelfContained(f"name {name!r} is bound nowhere in the module")
            position = self._binding_for(name, line)
            stmt = self.tree.body[position]
            if isinstance(stmt, ast.Import | ast.ImportFrom):
                if isinstance(stmt, ast.ImportFrom) and stmt.level:
                    raise NotSelfContained(f"{name!r} comes from a relative import (repository context)")
                aliases.setdefault(position, set()).add(name)
                continue
            if position in included:
                continue
            text = self.statement_text(stmt)
            if isinstance(stmt, ast.If | ast.Try | ast.With | ast.For | ast.While) and (
                text.count("\n") + 1 > MAX_BLOCK_LINES
            ):
                raise NotSelfContained(f"{name!r} is bound inside a long top-level block")
            included[position] = None
            if len(included) - 1 > MAX_DEPENDENCIES:
                raise NotSelfContained(f"needs more than {MAX_DEPENDENCIES} other top-level definitions")
            pending += [(n, stmt.lineno) for n in sorted(free_names(text))]
        imports = [render_import(self.tree.body[p], names) for p, names in sorted(aliases.items())]
        future = [self.statement_text(s) for s in self.future]
        body = [function_text if p == index else self.statement_text(self.tree.body[p]) for p in sorted(included)]
        head = "\n".join(dict.fromkeys(future + imports))
        program = (head + "\n\n\n" if head else "") + "\n\n\n".join(body) + "\n"
        if program.count("\n") > MAX_PROGRAM_LINES:
            raise NotSelfContained(f"the program with its context is over {MAX_PROGRAM_LINES} lines")
        return program

    def _binding_for(self, name: str, line: int) -> int:
        """The last binding of `name` before `line`, else its first binding (read at call time)."""
        positions = self.bindings[name]
        before = [p for p in positions if self.tree.body[p].lineno < line]
        return before[-1] if before else positions[0]


def bound_names(stmt: ast.stmt) -> set[str]:
    """Names a top-level statement binds in its module."""
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names if a.name != "*"}
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {stmt.name}
    names = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node is not stmt:
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= bound_names(node)
    return names


def render_import(stmt: ast.Import | ast.ImportFrom, names: set[str]) -> str:
    """The import statement reduced to the aliases that bind `names`."""
    kept = [a for a in stmt.names if (a.asname or a.name).split(".")[0] in names]
    return ast.unparse(type(stmt)(names=kept, **({"module": stmt.module, "level": 0}
                                                   if isinstance(stmt, ast.ImportFrom) else {})))
