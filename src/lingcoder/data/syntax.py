"""Program analysis per file: Python with `ast`, the other languages with tree-sitter grammars from PyPI.

`analyse(text, language, path)` parses the file once and returns `Structure`: whether it parses,
how many functions and classes it defines, how many of those are documented (a Python docstring,
elsewhere a comment right before the definition), the deepest nesting of blocks, the lines that
are comments (Python docstrings included) and the file's import specifiers. The quality score
(quality.py) and the repository import graph (repo_graph.py) both use this one parse.

Python keeps CPython's own parser (the only exact judge of Python syntax; tree-sitter's grammar
accepts Python 2 `print` statements) and walks statements only. For the other languages, queries
name the node kinds; they run in tree-sitter's C code, so a file costs one parse and a few
captures, not a Python walk over every node. JavaScript, TypeScript, Java, Go, C, C++ and Rust
have hand-written queries (imports included); the other grammars get queries derived from their
node-kind names. Languages without an installed grammar get `syntax_valid=None` and zero
structure, never a guess.

Import specifiers (`Structure.imports`), resolved to files by repo_graph.py:
- Python: dotted module names, relative ones with their leading dots; `from m import a` gives
  `m` and `m.a`;
- JavaScript/TypeScript: the module string of `import`/`export ... from`, `require()`, `import()`;
- Java: `a.b.C` or `a.b.*`; Go: the import path; C/C++: `#include "x.h"` paths (not `<x.h>`);
- Rust: `mod:NAME` for `mod NAME;` and `use:PATH` for `use crate::/self::/super::` paths.
"""

from __future__ import annotations

import ast
import importlib
import re
import warnings
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Kinds:
    """The node kinds of one grammar that the analysis counts."""

    functions: tuple[str, ...]
    classes: tuple[str, ...]
    blocks: tuple[str, ...]
    comments: tuple[str, ...] = ("comment",)
    imports: str = ""  # a query capturing import specifiers as @import (Rust's `mod x;` as @mod)
    documented: str = ""  # more patterns capturing documented definitions as @documented


_JS_IMPORTS = """
(import_statement source: (string (string_fragment) @import))
(export_statement source: (string (string_fragment) @import))
(call_expression function: (identifier) @_require arguments: (arguments . (string (string_fragment) @import))
  (#eq? @_require "require"))
(call_expression function: (import) arguments: (arguments . (string (string_fragment) @import)))
"""
_JS = Kinds(
    functions=("function_declaration", "function_expression", "generator_function_declaration",
               "generator_function", "arrow_function", "method_definition"),
    classes=("class_declaration", "class"),
    blocks=("statement_block", "class_body", "switch_body"),
    imports=_JS_IMPORTS,
)
_TS = Kinds(
    functions=_JS.functions,
    classes=(*_JS.classes, "abstract_class_declaration", "interface_declaration", "enum_declaration"),
    blocks=(*_JS.blocks, "interface_body", "enum_body"),
    imports=_JS_IMPORTS,
)
_C_INCLUDE = "(preproc_include path: (string_literal) @import)"
KINDS: dict[str, Kinds] = {
    "JavaScript": _JS,
    "TypeScript": _TS,
    "TSX": _TS,
    "Java": Kinds(
        functions=("method_declaration", "constructor_declaration", "compact_constructor_declaration"),
        classes=("class_declaration", "interface_declaration", "enum_declaration", "record_declaration",
                 "annotation_type_declaration"),
        blocks=("block", "class_body", "interface_body", "enum_body", "constructor_body", "switch_block"),
        comments=("line_comment", "block_comment"),
        imports="(import_declaration) @import",
    ),
    "Go": Kinds(
        functions=("function_declaration", "method_declaration", "func_literal"),
        classes=("type_spec",),
        blocks=("block",),
        imports="(import_spec path: (_) @import)",
        documented="((comment) . (type_declaration (type_spec) @documented))",  # the comment is before `type`
    ),
    "C": Kinds(
        functions=("function_definition",),
        classes=("struct_specifier", "union_specifier", "enum_specifier"),
        blocks=("compound_statement", "field_declaration_list"),
        imports=_C_INCLUDE,
    ),
    "C++": Kinds(
        functions=("function_definition", "lambda_expression"),
        classes=("class_specifier", "struct_specifier", "union_specifier", "enum_specifier"),
        blocks=("compound_statement", "field_declaration_list", "declaration_list"),
        imports=_C_INCLUDE,
    ),
    "Rust": Kinds(
        functions=("function_item", "closure_expression"),
        classes=("struct_item", "enum_item", "union_item", "trait_item", "impl_item"),
        blocks=("block", "declaration_list", "field_declaration_list", "match_block"),
        comments=("line_comment", "block_comment"),
        imports="""
            (mod_item name: (identifier) @mod !body)
            (use_declaration argument: (_) @import)
        """,
    ),
}
# Kinds whose definition only counts with a body (a forward declaration `struct x;` is no class).
NEEDS_BODY = {"struct_specifier", "union_specifier", "enum_specifier", "class_specifier"}
GO_TYPES = ("struct_type", "interface_type")

# For the other grammars: node kinds chosen by name.
FUNCTION_KIND = re.compile(r"^(?:function|method|constructor|lambda|func_literal|closure)|"
                           r"(?:function|method|constructor)_(?:declaration|definition|item)$")
NOT_FUNCTION = ("declarator", "type", "signature", "call", "invocation", "parameter", "reference", "modifier",
                "name", "identifier", "list", "argument", "body", "clause", "specifier", "expression_statement")
CLASS_KINDS = ("class_declaration", "class_definition", "class_specifier", "struct_specifier", "struct_item",
               "interface_declaration", "trait_item", "impl_item", "enum_declaration", "object_declaration",
               "class", "module", "protocol_declaration")
BLOCK_SUFFIXES = ("block", "body", "compound_statement", "statement_block", "declaration_list", "do_group")
RUST_PATH = re.compile(r"^(?:crate|self|super)(?:::\w+)+")
PY_IMPORT_LINE = re.compile(r"^[ \t]*(?:from[ \t]+[\w.]+[ \t]+import\b|import[ \t]+\w)[^\n]*", re.MULTILINE)
PY_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
PY_BLOCKS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try, ast.TryStar, ast.Match,
             *PY_DEFS)


@dataclass
class Structure:
    syntax_valid: bool | None = None
    functions: int = 0
    classes: int = 0
    documented: int = 0
    max_nesting: int = 0
    comment_lines: int | None = None  # lines whose first non-blank character starts or continues a comment
    imports: list[str] = field(default_factory=list)

    @property
    def docstring_coverage(self) -> float | None:
        defs = self.functions + self.classes
        return self.documented / defs if defs else None


@dataclass
class Analyser:
    parser: object
    query: object  # tree_sitter.Query over the kinds below
    kinds: Kinds


def _derived_kinds(language) -> Kinds:
    names = {
        language.node_kind_for_id(i)
        for i in range(language.node_kind_count)
        if language.node_kind_is_named(i) and language.node_kind_is_visible(i)
    }
    return Kinds(
        functions=tuple(sorted(k for k in names if FUNCTION_KIND.search(k) and not any(w in k for w in NOT_FUNCTION))),
        classes=tuple(sorted(k for k in names if k in CLASS_KINDS)),
        blocks=tuple(sorted(k for k in names if k.endswith(BLOCK_SUFFIXES))),
        comments=tuple(sorted(k for k in names if "comment" in k)),
    )


def _query_source(kinds: Kinds) -> str:
    def either(names):
        return "[" + " ".join(f"({name})" for name in names) + "]"

    parts = []
    if kinds.functions:
        parts.append(f"{either(kinds.functions)} @function")
    if kinds.classes:
        parts.append(f"{either(kinds.classes)} @class")
    if kinds.blocks:
        parts.append(f"{either(kinds.blocks)} @block")
    if kinds.comments:
        parts.append(f"{either(kinds.comments)} @comment")
        if kinds.functions or kinds.classes:
            parts.append(f"({either(kinds.comments)} . {either(kinds.functions + kinds.classes)} @documented)")
    return "\n".join(parts + [kinds.imports, kinds.documented])


@cache
def analyser_for(language: str) -> Analyser | None:
    """Parser and query for `language`, or None when no grammar package is installed."""
    entry = GRAMMARS.get(language)
    if entry is None:
        return None
    try:
        import tree_sitter

        module = importlib.import_module(entry[0])
        grammar = tree_sitter.Language(getattr(module, entry[1])())
    except (ImportError, AttributeError, ValueError):
        return None
    kinds = KINDS.get(language) or _derived_kinds(grammar)
    return Analyser(tree_sitter.Parser(grammar), tree_sitter.Query(grammar, _query_source(kinds)), kinds)


def parser_for(language: str):
    """A tree-sitter parser for `language`, or None when no grammar package is installed."""
    analyser = analyser_for(language)
    return analyser.parser if analyser else None


def grammar_name(language: str | None, path: str = "") -> str:
    """The grammar of a file: TypeScript files ending in .tsx use the TSX grammar."""
    return "TSX" if language == "TypeScript" and path.endswith(".tsx") else language or ""


def analyse(text: str, language: str | None, path: str = "") -> Structure:
    if language == "Python":
        return _analyse_python(text)
    language = grammar_name(language, path)
    analyser = analyser_for(language)
    if analyser is None:
        return Structure()
    import tree_sitter

    data = text.encode("utf-8", "surrogatepass")
    tree = analyser.parser.parse(data)
    captures = tree_sitter.QueryCursor(analyser.query).captures(tree.root_node)
    out = Structure(syntax_valid=not tree.root_node.has_error)
    functions, classes = captures.get("function", []), captures.get("class", [])
    out.functions = len(functions)
    out.classes = sum(_is_definition(node) for node in classes if node not in functions)
    out.documented = len({(n.start_byte, n.end_byte) for n in captures.get("documented", []) if _is_definition(n)})
    out.max_nesting = _max_depth(captures.get("block", []))
    out.comment_lines = _comment_lines(data, captures.get("comment", []))
    out.imports = _import_specs(language, captures)
    return out


def _is_definition(node) -> bool:
    if node.type in NEEDS_BODY:
        return node.child_by_field_name("body") is not None
    if node.type == "type_spec":  # Go: only struct and interface types are classes
        kind = node.child_by_field_name("type")
        return kind is not None and kind.type in GO_TYPES
    return True


def _max_depth(blocks) -> int:
    """Deepest nesting of the block nodes, from their byte spans (a stack of enclosing ends)."""
    spans = sorted((node.start_byte, -node.end_byte) for node in blocks)
    ends: list[int] = []
    deepest = 0
    for start, negative_end in spans:
        while ends and ends[-1] <= start:
            ends.pop()
        ends.append(-negative_end)
        deepest = max(deepest, len(ends))
    return deepest


def _comment_lines(data: bytes, comments) -> int:
    """Lines holding nothing but comments (a line with code and a comment counts as code)."""
    rows: set[int] = set()
    for node in comments:
        (start_row, start_col), (end_row, end_col) = node.start_point, node.end_point
        if end_col == 0 and end_row > start_row:
            end_row -= 1  # a line comment that ends with its newline
        elif data[node.end_byte : _line_end(data, node.end_byte)].strip():
            end_row -= 1  # code after the comment on its last line
        if data[node.start_byte - start_col : node.start_byte].strip():
            start_row += 1  # code before the comment on its first line
        rows.update(range(start_row, end_row + 1))
    return len(rows)


def _line_end(data: bytes, position: int) -> int:
    end = data.find(b"\n", position)
    return len(data) if end == -1 else end


def _text(node) -> str:
    return node.text.decode("utf-8", "replace")


def _import_specs(language: str, captures: dict) -> list[str]:
    specs = []
    for node in captures.get("import", []):
        text = _text(node)
        if language == "Java":
            text = re.sub(r"^import\s+(?:static\s+)?|\s|;", "", text)
        elif language in ("Go", "C", "C++"):
            text = text.strip('"`')
        elif language == "Rust":
            match = RUST_PATH.match(text)
            if not match:
                continue
            text = f"use:{match.group(0)}"
        specs.append(text)
    specs += [f"mod:{_text(node)}" for node in captures.get("mod", [])]
    return specs


def _import_statements(text: str) -> str:
    """Only the import statements of a Python file (dedented; parenthesised ones whole): what an
    unparsable file still tells about its imports."""
    chunks = []
    for match in PY_IMPORT_LINE.finditer(text):
        end = match.end()
        if "(" in match.group(0) and ")" not in match.group(0):
            close = text.find(")", end)
            end = close + 1 if close != -1 else end
        chunks.append(text[match.start() : end].strip().split(";")[0])
    return "\n".join(chunks)


def _analyse_python(text: str, salvage_imports: bool = True) -> Structure:
    """One `ast` parse; walks statements only (expressions hold no definitions, blocks or imports)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        imports = _analyse_python(_import_statements(text), False).imports if salvage_imports else []
        return Structure(syntax_valid=False, imports=imports)
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
                out.documented += ast.get_docstring(node, clean=False) is not None
        elif isinstance(node, ast.Import):
            out.imports += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            joiner = "" if module.endswith(".") else "."
            out.imports += [module] + [f"{module}{joiner}{alias.name}" for alias in node.names if alias.name != "*"]
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, name, None)
            if children:
                stack.extend((child, depth) for child in children)
    out.imports = list(dict.fromkeys(out.imports))
    return out
