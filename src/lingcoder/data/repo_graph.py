"""Step 7 (analysis): resolve each file's imports to files of the same repository and order the
files with the paper's cycle-tolerant lexicographic topological sort.

Python imports come from the AST (absolute, relative and `from x import y` submodules). For
JavaScript/TypeScript (`import ... from`, `require`, dynamic `import()`, `export ... from`), Java
(`import a.b.C;`, `a.b.*`), Go (`import "mod/pkg"` -> the package directory), C/C++
(`#include "x.h"`) and Rust (`mod x;`, `use crate::a::b`) the import statements are lexically
simple, so regexes read them at lexer speed; only paths that exist in the repository count.
"""

from __future__ import annotations

import ast
import heapq
import posixpath
import re
from collections import defaultdict

JS_IMPORT = re.compile(r"""(?:\bfrom\s*|\brequire\s*\(\s*|\bimport\s*\(\s*|\bimport\s+)["']([^"']+)["']""")
JAVA_IMPORT = re.compile(r"^\s*import\s+(?:static\s+)?([\w.]+(?:\.\*)?)\s*;", re.MULTILINE)
GO_IMPORT_BLOCK = re.compile(r"^\s*import\s*(?:\(([^)]*)\)|([^\n]*))", re.MULTILINE)
GO_PATH = re.compile(r'"([^"]+)"')
C_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.MULTILINE)
RUST_MOD = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.MULTILINE)
RUST_USE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+((?:crate|self|super)(?:::\w+)+)", re.MULTILINE)
JS_EXTENSIONS = ("", ".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".d.ts")


def python_modules(paths: list[str]) -> dict[str, str]:
    """Dotted module name -> path, for every suffix of the path (src layouts, nested roots)."""
    modules = {}
    for path in sorted(paths, key=lambda p: (p.count("/"), p)):
        if not path.endswith(".py"):
            continue
        parts = path[:-3].split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        for start in range(len(parts)):
            modules.setdefault(".".join(parts[start:]), path)
    return modules


PY_IMPORT_LINE = re.compile(r"^[ \t]*(?:from[ \t]+[\w.]+[ \t]+import\b|import[ \t]+\w)[^\n]*", re.MULTILINE)


def _import_statements(text: str) -> str:
    """Only the import statements of a Python file (dedented; parenthesised ones whole), for a fast parse."""
    chunks = []
    for match in PY_IMPORT_LINE.finditer(text):
        end = match.end()
        if "(" in match.group(0) and ")" not in match.group(0):
            close = text.find(")", end)
            end = close + 1 if close != -1 else end
        chunks.append(text[match.start() : end].strip().split(";")[0])
    return "\n".join(chunks)


def _parse_imports(text: str):
    for source in (_import_statements(text), text):  # the whole file if the extract does not parse
        try:
            return ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
    return None


def _python_imports(path: str, text: str, modules: dict[str, str]) -> set[str]:
    tree = _parse_imports(text)
    if tree is None:
        return set()
    package = path[:-3].split("/")[:-1] if not path.endswith("__init__.py") else path.split("/")[:-1]
    found = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] if node.level > 1 else package
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [prefix] + [f"{prefix}.{alias.name}" if prefix else alias.name for alias in node.names]
        for name in names:
            target = modules.get(name)
            while target is None and "." in name:
                name = name.rsplit(".", 1)[0]
                target = modules.get(name)
            if target:
                found.add(target)
    return found


def _js_imports(path: str, text: str, files: set[str]) -> set[str]:
    found = set()
    for spec in JS_IMPORT.findall(text):
        if not spec.startswith("."):
            continue
        base = posixpath.normpath(posixpath.join(posixpath.dirname(path), spec))
        for candidate in [base + ext for ext in JS_EXTENSIONS] + [
            f"{base}/index{ext}" for ext in JS_EXTENSIONS[1:]
        ]:
            if candidate in files:
                found.add(candidate)
                break
    return found


def _by_suffix(files: set[str], suffix: str) -> set[str]:
    return {f for f in files if f == suffix or f.endswith("/" + suffix)}


def _java_imports(text: str, files: set[str], dirs: dict[str, list[str]]) -> set[str]:
    found = set()
    for name in JAVA_IMPORT.findall(text):
        if name.endswith(".*"):
            package = name[:-2].replace(".", "/")
            found |= {
                f
                for d, fs in dirs.items()
                if d == package or d.endswith("/" + package)
                for f in fs
                if f.endswith(".java")
            }
        else:
            parts = name.split(".")
            for cut in (len(parts), len(parts) - 1):  # a class, or a static member of one
                hits = _by_suffix(files, "/".join(parts[:cut]) + ".java")
                if hits:
                    found |= hits
                    break
    return found


def _go_imports(text: str, dirs: dict[str, list[str]]) -> set[str]:
    found = set()
    for block, single in GO_IMPORT_BLOCK.findall(text):
        for spec in GO_PATH.findall(block or single):
            for d, fs in dirs.items():
                if d and (spec == d or spec.endswith("/" + d)):
                    found |= {f for f in fs if f.endswith(".go") and not f.endswith("_test.go")}
    return found


def _c_includes(path: str, text: str, files: set[str]) -> set[str]:
    found = set()
    for spec in C_INCLUDE.findall(text):
        local = posixpath.normpath(posixpath.join(posixpath.dirname(path), spec))
        hits = {local} if local in files else _by_suffix(files, spec)
        found |= hits
    return found


def _rust_imports(path: str, text: str, files: set[str]) -> set[str]:
    found = set()
    directory, stem = posixpath.dirname(path), posixpath.basename(path)[:-3]
    module_dir = directory if stem in ("lib", "main", "mod") else posixpath.join(directory, stem)
    for name in RUST_MOD.findall(text):
        for candidate in (
            posixpath.join(module_dir, name + ".rs"),
            posixpath.join(module_dir, name, "mod.rs"),
        ):
            if candidate in files:
                found.add(candidate)
    crate_root = (
        path.split("/src/")[0] + "/src" if "/src/" in path else ("src" if path.startswith("src/") else "")
    )
    for use in RUST_USE.findall(text):
        parts = use.split("::")
        root = {"crate": crate_root, "self": module_dir, "super": posixpath.dirname(module_dir)}[parts[0]]
        for cut in range(len(parts), 1, -1):
            base = posixpath.join(root, *parts[1:cut])
            hit = next((c for c in (base + ".rs", base + "/mod.rs") if c in files), None)
            if hit:
                found.add(hit)
                break
    return found


def resolve_imports(files: dict[str, tuple[str, str]]) -> dict[str, set[str]]:
    """{path: (language, text)} -> {path: paths it imports}, self-imports removed."""
    paths = set(files)
    dirs: dict[str, list[str]] = defaultdict(list)
    for path in sorted(paths):
        dirs[posixpath.dirname(path)].append(path)
    modules = python_modules(sorted(paths))
    deps = {}
    for path, (language, text) in files.items():
        if language == "Python":
            found = _python_imports(path, text, modules)
        elif language in ("JavaScript", "TypeScript"):
            found = _js_imports(path, text, paths)
        elif language == "Java":
            found = _java_imports(text, paths, dirs)
        elif language == "Go":
            found = _go_imports(text, dirs) - {p for p in dirs.get(posixpath.dirname(path), [])}
        elif language in ("C", "C++"):
            found = _c_includes(path, text, paths)
        elif language == "Rust":
            found = _rust_imports(path, text, paths)
        else:
            found = set()
        deps[path] = found - {path}
    return deps


def dependency_order(deps: dict[str, set[str]]) -> tuple[list[str], int]:
    """(files ordered dependencies-first, cycles broken) by the paper's cycle-tolerant sort.

    In-degree of a file = number of its unplaced dependencies. Repeatedly take the file of
    minimum in-degree, ties broken by path; if that minimum is above 0 the file breaks a cycle.
    Then decrement the in-degree of the files that depend on it.
    """
    indegree = {path: len(targets & deps.keys()) for path, targets in deps.items()}
    dependents: dict[str, list[str]] = defaultdict(list)
    for path, targets in deps.items():
        for target in targets & deps.keys():
            dependents[target].append(path)
    heap = [(d, path) for path, d in indegree.items()]
    heapq.heapify(heap)
    order, placed, cycles = [], set(), 0
    while heap:
        d, path = heapq.heappop(heap)
        if path in placed or d != indegree[path]:
            continue  # stale entry
        placed.add(path)
        order.append(path)
        cycles += d > 0
        for dependent in dependents[path]:
            if dependent not in placed:
                indegree[dependent] -= 1
                heapq.heappush(heap, (indegree[dependent], dependent))
    return order, cycles
