"""Step 7 (analysis): resolve each file's imports to files of the same repository and order the
files with the paper's cycle-tolerant lexicographic topological sort.

The import specifiers come from the file's one parse (syntax.py: `ast` for Python, tree-sitter for
JavaScript/TypeScript, Java, Go, C/C++ and Rust), which the quality step keeps in the document's
metadata (`imports`), so building a repository sample parses nothing again. Resolution: Python
absolute, relative and `from x import y` submodules; JS/TS relative module paths with their
extensions and `index` files; Java classes and `a.b.*` packages; Go import paths -> the package
directory; C/C++ `#include "x.h"` (next to the file, else by path suffix); Rust `mod x;` and
`use crate::/self::/super::` paths. Only paths that exist in the repository count.
"""

from __future__ import annotations

import heapq
import posixpath
from collections import defaultdict

from lingcoder.data.syntax import analyse

JS_EXTENSIONS = ("", ".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".d.ts")
IMPORTING_LANGUAGES = ("Python", "JavaScript", "TypeScript", "Java", "Go", "C", "C++", "Rust")


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


def _python_imports(path: str, specs: list[str], modules: dict[str, str]) -> set[str]:
    package = path[:-3].split("/")[:-1] if not path.endswith("__init__.py") else path.split("/")[:-1]
    found = set()
    for spec in specs:
        module = spec.lstrip(".")
        level = len(spec) - len(module)
        if level:
            base = package[: len(package) - level + 1] if level > 1 else package
            name = ".".join(base + ([module] if module else []))
        else:
            name = module
        target = modules.get(name)
        while target is None and "." in name:
            name = name.rsplit(".", 1)[0]
            target = modules.get(name)
        if target:
            found.add(target)
    return found


def _js_imports(path: str, specs: list[str], files: set[str]) -> set[str]:
    found = set()
    for spec in specs:
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


def _java_imports(specs: list[str], files: set[str], dirs: dict[str, list[str]]) -> set[str]:
    found = set()
    for name in specs:
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


def _go_imports(specs: list[str], dirs: dict[str, list[str]]) -> set[str]:
    found = set()
    for spec in specs:
        for d, fs in dirs.items():
            if d and (spec == d or spec.endswith("/" + d)):
                found |= {f for f in fs if f.endswith(".go") and not f.endswith("_test.go")}
    return found


def _c_includes(path: str, specs: list[str], files: set[str]) -> set[str]:
    found = set()
    for spec in specs:
        local = posixpath.normpath(posixpath.join(posixpath.dirname(path), spec))
        hits = {local} if local in files else _by_suffix(files, spec)
        found |= hits
    return found


def _rust_imports(path: str, specs: list[str], files: set[str]) -> set[str]:
    found = set()
    directory, stem = posixpath.dirname(path), posixpath.basename(path)[:-3]
    module_dir = directory if stem in ("lib", "main", "mod") else posixpath.join(directory, stem)
    for name in (spec[4:] for spec in specs if spec.startswith("mod:")):
        for candidate in (
            posixpath.join(module_dir, name + ".rs"),
            posixpath.join(module_dir, name, "mod.rs"),
        ):
            if candidate in files:
                found.add(candidate)
    crate_root = (
        path.split("/src/")[0] + "/src" if "/src/" in path else ("src" if path.startswith("src/") else "")
    )
    for use in (spec[4:] for spec in specs if spec.startswith("use:")):
        parts = use.split("::")
        root = {"crate": crate_root, "self": module_dir, "super": posixpath.dirname(module_dir)}[parts[0]]
        for cut in range(len(parts), 1, -1):
            base = posixpath.join(root, *parts[1:cut])
            hit = next((c for c in (base + ".rs", base + "/mod.rs") if c in files), None)
            if hit:
                found.add(hit)
                break
    return found


def resolve_imports(files: dict[str, tuple[str, str]], specs: dict[str, list[str]] | None = None
                    ) -> dict[str, set[str]]:
    """{path: (language, text)} -> {path: paths it imports}, self-imports removed.

    `specs` gives files' import specifiers already known (`Structure.imports`); the others are parsed.
    """
    specs = specs or {}
    paths = set(files)
    dirs: dict[str, list[str]] = defaultdict(list)
    for path in sorted(paths):
        dirs[posixpath.dirname(path)].append(path)
    modules = python_modules(sorted(paths))
    deps = {}
    for path, (language, text) in files.items():
        if language not in IMPORTING_LANGUAGES:
            deps[path] = set()
            continue
        known = specs.get(path)
        imports = known if known is not None else analyse(text, language, path).imports
        if language == "Python":
            found = _python_imports(path, imports, modules)
        elif language in ("JavaScript", "TypeScript"):
            found = _js_imports(path, imports, paths)
        elif language == "Java":
            found = _java_imports(imports, paths, dirs)
        elif language == "Go":
            found = _go_imports(imports, dirs) - set(dirs.get(posixpath.dirname(path), []))
        elif language in ("C", "C++"):
            found = _c_includes(path, imports, paths)
        else:
            found = _rust_imports(path, imports, paths)
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
