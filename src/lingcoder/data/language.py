"""Language of a file from its name, extension and shebang, and the keep/drop rule per kind.

Every language belongs to one kind: `code` (kept, analysed), `markup` and `config` (kept by the
rules in `LanguageRules`), `data` (dropped: tabular, lock and binary-like text). Files whose
language is unknown are dropped with reason `unknown_language`, never silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from datatrove.data import Document

from lingcoder.data.steps import CurationFilter

CODE, MARKUP, CONFIG, DATA = "code", "markup", "config", "data"

# name -> (kind, extensions). The first 16 are the paper's main languages.
LANGUAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "Python": (CODE, (".py", ".pyi", ".pyw")),
    "JavaScript": (CODE, (".js", ".mjs", ".cjs", ".jsx")),
    "TypeScript": (CODE, (".ts", ".tsx", ".mts", ".cts")),
    "Java": (CODE, (".java",)),
    "C": (CODE, (".c", ".h")),
    "C++": (CODE, (".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".ipp", ".tpp")),
    "C#": (CODE, (".cs",)),
    "Go": (CODE, (".go",)),
    "Rust": (CODE, (".rs",)),
    "PHP": (CODE, (".php", ".phtml")),
    "Ruby": (CODE, (".rb", ".rake", ".gemspec")),
    "Shell": (CODE, (".sh", ".bash", ".zsh", ".ksh")),
    "Kotlin": (CODE, (".kt", ".kts")),
    "Scala": (CODE, (".scala", ".sc")),
    "Swift": (CODE, (".swift",)),
    "SQL": (CODE, (".sql",)),
    "Objective-C": (CODE, (".m", ".mm")),
    "Lua": (CODE, (".lua",)),
    "Perl": (CODE, (".pl", ".pm")),
    "R": (CODE, (".r", ".R")),
    "Dart": (CODE, (".dart",)),
    "Haskell": (CODE, (".hs",)),
    "Groovy": (CODE, (".groovy", ".gradle")),
    "Cython": (CODE, (".pyx", ".pxd", ".pxi")),
    "PowerShell": (CODE, (".ps1", ".psm1")),
    "Batchfile": (CODE, (".bat", ".cmd")),
    "Assembly": (CODE, (".s", ".S", ".asm")),
    "Markdown": (MARKUP, (".md", ".markdown")),
    "reStructuredText": (MARKUP, (".rst",)),
    "HTML": (MARKUP, (".html", ".htm", ".xhtml")),
    "CSS": (MARKUP, (".css", ".scss", ".less")),
    "XML": (MARKUP, (".xml", ".xsd", ".xsl", ".xslt", ".plist")),
    "TeX": (MARKUP, (".tex",)),
    "JSON": (CONFIG, (".json",)),
    "YAML": (CONFIG, (".yaml", ".yml")),
    "TOML": (CONFIG, (".toml",)),
    "INI": (CONFIG, (".ini", ".cfg", ".conf", ".properties")),
    "Dotenv": (CONFIG, (".env",)),
    "Makefile": (CONFIG, (".mk", ".mak")),
    "Dockerfile": (CONFIG, (".dockerfile",)),
    "CMake": (CONFIG, (".cmake",)),
    "CSV": (DATA, (".csv", ".tsv")),
    "SVG": (DATA, (".svg",)),
    "Text": (DATA, (".txt", ".text")),
    "Lockfile": (DATA, (".lock",)),
}

FILENAMES = {
    "Makefile": "Makefile",
    "GNUmakefile": "Makefile",
    "makefile": "Makefile",
    ".env": "Dotenv",
    ".env.example": "Dotenv",
    ".env.local": "Dotenv",
    ".env.sample": "Dotenv",
    "Dockerfile": "Dockerfile",
    "Containerfile": "Dockerfile",
    "CMakeLists.txt": "CMake",
    "Rakefile": "Ruby",
    "Gemfile": "Ruby",
    "Jenkinsfile": "Groovy",
    "package-lock.json": "Lockfile",
    "yarn.lock": "Lockfile",
    "pnpm-lock.yaml": "Lockfile",
    "poetry.lock": "Lockfile",
    "Cargo.lock": "Lockfile",
    "go.sum": "Lockfile",
}

SHEBANGS = {
    "python": "Python",
    "node": "JavaScript",
    "deno": "TypeScript",
    "bash": "Shell",
    "sh": "Shell",
    "zsh": "Shell",
    "ksh": "Shell",
    "dash": "Shell",
    "ruby": "Ruby",
    "perl": "Perl",
    "php": "PHP",
    "lua": "Lua",
    "Rscript": "R",
}

_EXTENSIONS = {ext: name for name, (_, exts) in LANGUAGES.items() for ext in exts}
_SHEBANG = re.compile(r"^#!\s*(?:/usr/bin/env\s+(?:-\S+\s+)*)?(?:\S*/)?([A-Za-z]+)")


def kind_of(language: str | None) -> str | None:
    """`code`, `markup`, `config` or `data` for a known language, else None."""
    entry = LANGUAGES.get(language or "")
    return entry[0] if entry else None


def detect_language(path: str, head: str = "") -> str | None:
    """Language from file name, then extension, then the shebang line of `head`; None if unknown."""
    name = path.rsplit("/", 1)[-1]
    if name in FILENAMES:
        return FILENAMES[name]
    dot = name.rfind(".")
    if dot > 0:
        ext = name[dot:]
        found = _EXTENSIONS.get(ext) or _EXTENSIONS.get(ext.lower())
        if found:
            return found
    if head.startswith("#!"):
        match = _SHEBANG.match(head)
        if match:
            interpreter = re.sub(r"[\d.]+$", "", match.group(1))
            return SHEBANGS.get(interpreter)
    return None


@dataclass
class LanguageRules:
    """Which kinds are kept; config files are kept only within StarCoder's JSON/YAML size window."""

    keep_markup: bool = True
    keep_config: bool = True
    config_min_chars: int = 50
    config_max_chars: int = 5000


class LanguageFilter(CurationFilter):
    """Tags `language` (if the reader did not) and drops unknown, data and out-of-rule files."""

    step = "language"
    name = "🔤 language"

    def __init__(self, rules: LanguageRules | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rules = rules or LanguageRules()

    def filter(self, doc: Document):
        meta = doc.metadata
        if not meta.get("language"):
            meta["language"] = detect_language(meta["path"], doc.text[:200])
        kind = kind_of(meta["language"])
        if kind is None:
            return self.drop(doc, "unknown_language", meta["path"].rsplit("/", 1)[-1])
        if kind == DATA:
            return self.drop(doc, "data_format", meta["language"])
        if kind == MARKUP and not self.rules.keep_markup:
            return self.drop(doc, "markup_excluded", meta["language"])
        if kind == CONFIG:
            if not self.rules.keep_config:
                return self.drop(doc, "config_excluded", meta["language"])
            if not self.rules.config_min_chars <= len(doc.text) <= self.rules.config_max_chars:
                return self.drop(
                    doc,
                    "config_size",
                    f"{len(doc.text)} chars outside [{self.rules.config_min_chars}, "
                    f"{self.rules.config_max_chars}]",
                )
        return True
