"""The package's layering, read from the source with `ast` (every import, module level or inside a function;
not those under `if TYPE_CHECKING:`, which never run).

Rules enforced here:

1. Shared modules (`lingcoder.errors`, `lingcoder.config`: top-level modules with no stage behind them)
   import nothing else of lingcoder but each other.
2. The model (`lingcoder.model`) imports nothing of lingcoder but itself and the shared modules: a
   checkpoint is weights and config; whoever saves one saves its tokenizer.
3. No module imports `lingcoder.serve` except `serve` itself and the command line (`cli`): generation
   shared by eval, synth, training and the report lives in `lingcoder.generation`.
4. `lingcoder.generation` imports only itself, the model, the tokenizer's special tokens
   (`data.tokenizer`) and the shared modules; its sampling settings and chat template reach no torch
   module, so an HTTP client of an OpenAI-compatible endpoint runs without torch.

5. The report (`lingcoder.report`) and the run-file readers it shares with training (`lingcoder.runfiles`)
   reach no torch module through any chain of imports: building the page only reads files. (Names that
   `lingcoder.model` loads lazily are invisible here; `test_report` builds a page with torch unimportable.)
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import lingcoder

PACKAGE_ROOT = Path(lingcoder.__file__).parent
SHARED = {"lingcoder.errors", "lingcoder.config"}


@cache
def modules() -> dict[str, Path]:
    """Every lingcoder module name -> its file (a package by its `__init__.py`)."""
    found = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


@cache
def imports(module: str) -> frozenset[str]:
    """The absolute names `module` imports, with `from X import Y` read as X.Y where Y is a module."""
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in walk_run_time(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules())
    return frozenset(names)


def walk_run_time(tree: ast.AST):
    """`ast.walk` without the bodies of `if TYPE_CHECKING:` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def lingcoder_imports(module: str) -> set[str]:
    """The lingcoder modules `module` imports, each with the packages whose `__init__` that runs."""
    found = set()
    for name in imports(module):
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(2, len(parts) + 1) if ".".join(parts[:i]) in modules())
    return found


def reaches_torch(module: str) -> list[str]:
    """An import chain from `module` to a torch module, or [] when there is none."""
    seen, stack = {module}, [[module]]
    while stack:
        chain = stack.pop()
        if any(name == "torch" or name.startswith("torch.") for name in imports(chain[-1])):
            return [*chain, "torch"]
        for name in sorted(lingcoder_imports(chain[-1]) - seen):
            seen.add(name)
            stack.append([*chain, name])
    return []


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_walk_sees_imports_at_module_level_and_inside_functions():
    assert "lingcoder.model.checkpoint" in lingcoder_imports("lingcoder.model.transformer")  # inside a method
    assert "lingcoder.model.config" in lingcoder_imports("lingcoder.model.transformer")
    assert reaches_torch("lingcoder.model.config") == []
    assert reaches_torch("lingcoder.model.transformer")[-1] == "torch"
    assert "lingcoder.model.transformer" not in lingcoder_imports("lingcoder.model")  # under TYPE_CHECKING only


def test_shared_modules_import_no_stage():
    for module in SHARED:
        assert lingcoder_imports(module) <= SHARED | {"lingcoder"}, module


def test_the_model_imports_no_other_stage():
    for module in modules():
        if in_package(module, "lingcoder.model"):
            outside = {m for m in lingcoder_imports(module) if not in_package(m, "lingcoder.model")} - SHARED
            assert not outside, f"{module} imports {sorted(outside)}"


def test_only_the_command_line_imports_serve():
    for module in modules():
        if in_package(module, "lingcoder.serve") or module in {"lingcoder.cli", "lingcoder.__main__"}:
            continue
        serving = {m for m in lingcoder_imports(module) if in_package(m, "lingcoder.serve")}
        assert not serving, f"{module} imports {sorted(serving)}: generation lives in lingcoder.generation"


def test_generation_sits_below_the_stages_that_use_it():
    allowed = ("lingcoder.generation", "lingcoder.model", "lingcoder.data.tokenizer", *SHARED)
    for module in modules():
        if in_package(module, "lingcoder.generation"):
            outside = {m for m in lingcoder_imports(module) if not any(in_package(m, a) for a in allowed)}
            assert outside <= {"lingcoder.data"}, f"{module} imports {sorted(outside - {'lingcoder.data'})}"
    for module in ("lingcoder.generation.sampling", "lingcoder.generation.chat_template"):
        assert reaches_torch(module) == [], " -> ".join(reaches_torch(module))


def test_the_report_and_run_files_reach_no_torch():
    for module in modules():
        if in_package(module, "lingcoder.report") or module == "lingcoder.runfiles":
            assert reaches_torch(module) == [], " -> ".join(reaches_torch(module))
