"""Blank / comment / code classification of lines, from each language's comment syntax.

Written here rather than taken from a library because the rule filters need it for every file
of every language at lexer speed: a line is a comment line when it starts with a line-comment
marker or lies inside a block comment (Python docstring blocks count as comments). A line with
code and a trailing comment counts as code. Good enough for ratios; the quality step uses real
parsers (ast, tree-sitter) for the signals that need structure.
"""

from __future__ import annotations

from dataclasses import dataclass

_HASH = (("#",), ())
_C_LIKE = (("//",), (("/*", "*/"),))
COMMENT_SYNTAX: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "Python": (("#",), (('"""', '"""'), ("'''", "'''"))),
    "Cython": (("#",), (('"""', '"""'), ("'''", "'''"))),
    "Shell": _HASH,
    "Ruby": (("#",), (("=begin", "=end"),)),
    "Perl": _HASH,
    "R": _HASH,
    "Makefile": _HASH,
    "YAML": _HASH,
    "TOML": _HASH,
    "INI": (("#", ";"), ()),
    "Dotenv": _HASH,
    "Dockerfile": _HASH,
    "CMake": _HASH,
    "PowerShell": (("#",), (("<#", "#>"),)),
    "C": _C_LIKE,
    "C++": _C_LIKE,
    "C#": _C_LIKE,
    "Java": _C_LIKE,
    "JavaScript": _C_LIKE,
    "TypeScript": _C_LIKE,
    "Go": _C_LIKE,
    "Rust": _C_LIKE,
    "Kotlin": _C_LIKE,
    "Scala": _C_LIKE,
    "Swift": _C_LIKE,
    "Dart": _C_LIKE,
    "Groovy": _C_LIKE,
    "Objective-C": _C_LIKE,
    "PHP": (("//", "#"), (("/*", "*/"),)),
    "CSS": ((), (("/*", "*/"),)),
    "SQL": (("--",), (("/*", "*/"),)),
    "Lua": (("--",), (("--[[", "]]"),)),
    "Haskell": (("--",), (("{-", "-}"),)),
    "Batchfile": (("REM", "rem", "::"), ()),
    "Assembly": ((";", "#"), ()),
    "HTML": ((), (("<!--", "-->"),)),
    "XML": ((), (("<!--", "-->"),)),
    "Markdown": ((), (("<!--", "-->"),)),
}


@dataclass
class LineCounts:
    blank: int = 0
    comment: int = 0
    code: int = 0

    @property
    def non_blank(self) -> int:
        return self.comment + self.code

    @property
    def comment_ratio(self) -> float:
        """Comment lines over non-blank lines (0 for a file of blank lines)."""
        return self.comment / self.non_blank if self.non_blank else 0.0


def count_lines(text: str, language: str | None) -> LineCounts:
    line_markers, blocks = COMMENT_SYNTAX.get(language or "", ((), ()))
    counts = LineCounts()
    closing: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if closing is not None:
            counts.comment += 1
            if closing in stripped:
                closing = None
            continue
        if not stripped:
            counts.blank += 1
            continue
        if line_markers and stripped.startswith(line_markers):
            counts.comment += 1
            continue
        for start, end in blocks:
            if stripped.startswith(start):
                counts.comment += 1
                if end not in stripped[len(start) :]:
                    closing = end
                break
        else:
            counts.code += 1
    return counts
