"""Program mutations: plausible wrong answers made from a verified solution, for preference pairs.

Operators (on the target function's body only, never on its imports or helpers):
`flip_comparison` (`<` -> `>=`, `==` -> `!=`, `in` -> `not in`, ...), `off_by_one` (an integer
literal n -> n + 1), `swap_operands` (`a - b` -> `b - a`), `swap_boolean` (`and` <-> `or`),
`negate_condition` (`if c:` -> `if not (c):`), `drop_statement` (a statement -> `pass`).
Each mutant is the original text with one node's span replaced, so comments and layout stay and
the pair differs only by the bug. A mutant is only a candidate: the sandbox decides whether it fails.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass

_FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
         ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_SIMPLE_STATEMENTS = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Return, ast.Raise, ast.Delete)


@dataclass(frozen=True)
class Mutant:
    operator: str
    line: int  # in the solution program
    code: str


def mutants(solution: str, function_name: str | None = None) -> list[Mutant]:
    """Every single-edit mutant of the function named `function_name` (default: the last module-level
    function) that still parses and differs from the original, in source order."""
    tree = ast.parse(solution)
    functions = [s for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)]
    target = next((f for f in functions if f.name == function_name), functions[-1] if functions else None)
    if target is None:
        return []
    original = ast.dump(tree)
    found: dict[str, Mutant] = {}
    for operator, node, replacement in _sites(target):
        code = _splice(solution, node, replacement)
        try:
            changed = ast.dump(ast.parse(code)) != original
        except SyntaxError:
            continue
        if changed and code not in found:
            found[code] = Mutant(operator, node.lineno, code)
    return list(found.values())


def _sites(function):
    """(operator, node, replacement text) for every mutation site in a function's body."""
    in_fstring = {id(n) for j in ast.walk(function) if isinstance(j, ast.JoinedStr) for n in ast.walk(j)}
    for node in (n for stmt in function.body for n in ast.walk(stmt)):
        if id(node) in in_fstring or not hasattr(node, "end_col_offset"):
            continue
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _FLIP:
            yield "flip_comparison", node, _paren(_with(node, ops=[_FLIP[type(node.ops[0])]()]))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            yield "off_by_one", node, repr(node.value + 1)
        elif isinstance(node, ast.BinOp) and ast.dump(node.left) != ast.dump(node.right):
            yield "swap_operands", node, _paren(_with(node, left=node.right, right=node.left))
        elif isinstance(node, ast.BoolOp):
            yield "swap_boolean", node, _paren(_with(node, op=ast.Or() if isinstance(node.op, ast.And) else ast.And()))
        if isinstance(node, ast.If | ast.While | ast.IfExp):
            yield "negate_condition", node.test, f"not ({ast.unparse(node.test)})"
        if isinstance(node, _SIMPLE_STATEMENTS) and node.lineno == node.end_lineno:
            yield "drop_statement", node, "pass"


def _with(node: ast.AST, **fields) -> ast.AST:
    changed = copy.copy(node)
    for key, value in fields.items():
        setattr(changed, key, value)
    return changed


def _paren(node: ast.AST) -> str:
    return f"({ast.unparse(node)})"


def _splice(source: str, node: ast.AST, replacement: str) -> str:
    """`source` with `node`'s span replaced (AST columns are UTF-8 byte offsets)."""
    lines = source.encode().splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    data = source.encode()
    begin = starts[node.lineno - 1] + node.col_offset
    end = starts[node.end_lineno - 1] + node.end_col_offset
    return (data[:begin] + replacement.encode() + data[end:]).decode()
