"""Program analysis per file with tree-sitter grammars from PyPI (one package per language).

`analyse(text, language, path)` parses the file once and returns `Structure`: whether it parses,
how many functions and classes it defines, how many of those are documented (a Python docstring,
elsewhere a comment right before the definition), the deepest nesting of blocks, the lines that
are comments (Python docstrings included) and the file's import specifiers. The quality score
(quality.py) and the repository import graph (repo_graph.py) both use this one parse.

Queries name the node kinds per language; they run in tree-sitter's C code, so a file costs one
parse and a few captures, not a Python walk over every node (for Python this is about half the
time of `ast.parse`, which builds a Python object per node). Python, JavaScript, TypeScript,
Java, Go, C, C++ and Rust have hand-written queries (imports included); the other grammars get
queries derived from their node-kind names. A Python file is valid when it parses with no error
node and no Python 2 `print`/`exec` statement (the grammar accepts those; CPython does not).
Python docstrings count as comment lines, as in code_lines.py. Languages without an installed
grammar get `syntax_valid=None` and zero structure, never a guess.

Import specifiers (`Structure.imports`), resolved to files by repo_graph.py:
- Python: dotted module names, relative ones with their leading dots; `from m import a` gives
  `m` and `m.a`;
- JavaScript/TypeScript: the module string of `import`/`export ... from`, `require()`, `import()`;
- Java: `a.b.C` or `a.b.*`; Go: the import path; C/C++: `#include "x.h"` paths (not `<x.h>`);
- Rust: `mod:NAME` for `mod NAME;` and `use:PATH` for `use crate::/self::/super::` paths.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from functools import cache

# language -> (module, function returning the grammar)
GRAMMARS = {
    "Python": ("tree_sitter_python", "language"),
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
    documented: str = ""  # more patterns: documented definitions (@documented), docstrings (@doc), Python 2 (@py2)


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
    "Python": Kinds(
        functions=("function_definition",),
        classes=("class_definition",),
        blocks=("block",),
        imports="""
            (import_statement name: (dotted_name) @import)
            (import_statement name: (aliased_import name: (dotted_name) @import))
            (import_from_statement) @from
        """,
        documented="""
            (module . (expression_statement (string) @doc))
            (function_definition body: (block . (expression_statement (string) @doc))) @documented
            (class_definition body: (block . (expression_statement (string) @doc))) @documented
            [(print_statement) (exec_statement)] @py2
        """,
    ),
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
    language = grammar_name(language, path)
    analyser = analyser_for(language)
    if analyser is None:
        return Structure()
    import tree_sitter

    data = text.encode("utf-8", "surrogatepass")
    tree = analyser.parser.parse(data)
    captures = tree_sitter.QueryCursor(analyser.query).captures(tree.root_node)
    out = Structure(syntax_valid=not tree.root_node.has_error and not captures.get("py2"))
    functions, classes = captures.get("function", []), captures.get("class", [])
    out.functions = len(functions)
    out.classes = sum(_is_definition(node) for node in classes if node not in functions)
    out.documented = len({(n.start_byte, n.end_byte) for n in captures.get("documented", []) if _is_definition(n)})
    out.max_nesting = _max_depth(captures.get("block", []))
    out.comment_lines = _comment_lines(data, captures.get("comment", []) + captures.get("doc", []))
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
    for node in captures.get("from", []):  # Python: from MODULE import NAME, ...
        module_node = node.child_by_field_name("module_name")
        if module_node is None:
            continue
        module = _text(module_node)
        specs.append(module)
        for name in node.children_by_field_name("name"):
            if name.type == "aliased_import":
                name = name.child_by_field_name("name")
            specs.append(module + _text(name) if module.endswith(".") else f"{module}.{_text(name)}")
    return list(dict.fromkeys(specs))
