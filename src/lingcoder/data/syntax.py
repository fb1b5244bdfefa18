"""Program analysis per file: Python with `ast`, other languages with tree-sitter grammars from PyPI.

`analyse(text, language)` returns `Structure`: whether the file parses, how many functions and
classes it defines, how many of those are documented (a docstring in Python, a comment right
before the definition elsewhere) and the deepest nesting of blocks. Languages without an
installed grammar get `syntax_valid=None` and zero structure, never a guess.
"""

from __future__ import annotations

import ast
import importlib
import warnings
from dataclasses import dataclass
from functools import cache

# language -> (module, function returning the grammar)
GRAMMARS = {
    "JavaScript": ("tree_sitter_javascript", "language"),
    "TypeScript": ("tree_sitter_typescript", "language_typescript"),
    "TSX": ("tree_sitter_typescript", "language_tsx"),  # TypeScript files ending in .tsx (JSX syntax)
    "Java": ("tree_sitter_java", "language"),
    "C": ("tree_sitter_c", "language"),
    "C++": ("tree_sitter_cpp", "language"),
    "C#": ("tree_sitter_c_sharp", "language"),
    "Go": ("tree_sitter_go", "language"),
    "Rust": ("tree_sitter_rust", "language"),
    "PHP": ("tree_sitter_php", "language_php"),
    "Ruby": ("tree_sitter_ruby", "language"),
    "Shell": ("tree_sitter_bash", "language"),
    "Kotlin": ("tree_sitter_kotlin", "language"),
    "Scala": ("tree_sitter_scala", "language"),
    "Swift": ("tree_sitter_swift", "language"),
    "SQL": ("tree_sitter_sql", "language"),
}
FUNCTION_WORDS = ("function", "method", "constructor", "lambda", "func_literal", "closure")
CLASS_WORDS = (
    "class_declaration",
    "class_definition",
    "class_specifier",
    "struct_specifier",
    "struct_item",
    "interface_declaration",
    "trait_item",
    "impl_item",
    "enum_declaration",
    "object_declaration",
    "class",
    "module",
    "type_declaration",
    "protocol_declaration",
)
BLOCK_WORDS = ("block", "body", "compound_statement", "statement_block", "declaration_list", "do_group")
PY_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
PY_BLOCKS = (
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.With,
    ast.AsyncWith,
    ast.Try,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Match,
    getattr(ast, "TryStar", ast.Try),
)


@dataclass
class Structure:
    syntax_valid: bool | None = None
    functions: int = 0
    classes: int = 0
    documented: int = 0
    max_nesting: int = 0

    @property
    def docstring_coverage(self) -> float | None:
        defs = self.functions + self.classes
        return self.documented / defs if defs else None


@cache
def parser_for(language: str):
    """A tree-sitter parser for `language`, or None when no grammar package is installed."""
    entry = GRAMMARS.get(language)
    if entry is None:
        return None
    try:
        import tree_sitter

        module = importlib.import_module(entry[0])
        return tree_sitter.Parser(tree_sitter.Language(getattr(module, entry[1])()))
    except (ImportError, AttributeError, ValueError):
        return None


def analyse(text: str, language: str | None, path: str = "") -> Structure:
    if language == "TypeScript" and path.endswith(".tsx"):
        language = "TSX"
    if language == "Python":
        return _analyse_python(text)
    parser = parser_for(language or "")
    if parser is None:
        return Structure()
    return _analyse_tree(parser.parse(text.encode("utf-8", "surrogatepass")))


def _analyse_python(text: str) -> Structure:
    """Walks statements only (expressions hold no definitions or blocks we count), for speed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return Structure(syntax_valid=False)
    out = Structure(syntax_valid=True)
    stack = [(statement, 0) for statement in tree.body]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, PY_BLOCKS):
            depth += 1
            out.max_nesting = max(out.max_nesting, depth)
            if isinstance(node, PY_DEFS):
                out.classes += isinstance(node, ast.ClassDef)
                out.functions += not isinstance(node, ast.ClassDef)
                body = node.body
                out.documented += (
                    bool(body)
                    and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)
                )
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, field, None)
            if children:
                stack.extend((child, depth) for child in children)
    return out


def _analyse_tree(tree) -> Structure:
    out = Structure(syntax_valid=not tree.root_node.has_error)
    stack = [(tree.root_node, 0)]
    while stack:
        node, depth = stack.pop()
        kind = node.type
        is_function = any(word in kind for word in FUNCTION_WORDS) and node.is_named and node.child_count > 2
        is_class = kind in CLASS_WORDS and node.child_count > 1
        if is_function or is_class:
            out.functions += is_function
            out.classes += is_class and not is_function
            previous = node.prev_named_sibling
            out.documented += previous is not None and "comment" in previous.type
        if kind.endswith(BLOCK_WORDS):
            depth += 1
            out.max_nesting = max(out.max_nesting, depth)
        stack.extend((child, depth) for child in node.named_children)
    return out
