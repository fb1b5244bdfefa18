"""The embedded default corpus: this interpreter's standard library and installed packages.

`lingcoder curate --out DIR` with no SOURCE reads them as repositories, one per top-level
package (`stdlib/asyncio`, `site-packages/numpy`, ...; loose top-level modules form the
repositories `stdlib` and `site-packages`), so the whole pipeline runs on any machine without a
download. To keep the default run short (about a minute on 2 cores) and deterministic, packages
are taken in sorted order (stdlib first) under these caps, all changeable in `DefaultCorpus`:

- `max_package_bytes` (5 MiB): a package whose files add up to more is skipped (this leaves out
  giants such as torch, numpy and the stdlib's own test suite);
- `max_total_bytes` (24 MiB): a package that would take the total past this is skipped (smaller
  ones after it may still fit);
- `exclude`: top-level names never read (the interpreter's and this project's own packages).

Skipped packages are not inputs; `skipped_packages()` lists them with the cap that skipped them
and `stats.json` reports them under `sources.skipped`.
"""

from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from lingcoder.data.sources import IGNORED_DIRS, Unit


@dataclass
class DefaultCorpus:
    """Caps of the embedded default corpus (see the module docstring)."""

    max_package_bytes: int = 5 * 2**20
    max_total_bytes: int = 24 * 2**20
    include_stdlib: bool = True
    include_site_packages: bool = True
    exclude: list[str] = field(default_factory=lambda: ["lingcoder", "_distutils_hack", "pip", "setuptools"])


@dataclass
class _Candidate:
    unit: Unit
    size: int


def default_units(caps: DefaultCorpus) -> tuple[list[Unit], list[dict]]:
    """(units to read, skipped packages with the reason) for this interpreter, deterministic."""
    roots: list[tuple[str, Path]] = []
    if caps.include_stdlib:
        roots.append(("stdlib", Path(sysconfig.get_paths()["stdlib"])))
    if caps.include_site_packages:
        seen = set()
        for key in ("purelib", "platlib"):
            path = Path(sysconfig.get_paths()[key])
            if path.is_dir() and path.resolve() not in seen:
                seen.add(path.resolve())
                roots.append(("site-packages", path))
    units, skipped, total = [], [], 0
    for label, root in roots:
        for cand in _candidates(label, root, set(caps.exclude)):
            if cand.size > caps.max_package_bytes:
                skipped.append({"repo": cand.unit.repo, "bytes": cand.size, "reason": "max_package_bytes"})
            elif total + cand.size > caps.max_total_bytes:
                skipped.append({"repo": cand.unit.repo, "bytes": cand.size, "reason": "max_total_bytes"})
            else:
                total += cand.size
                units.append(cand.unit)
    return units, skipped


def _candidates(label: str, root: Path, exclude: set[str]) -> list[_Candidate]:
    packages, modules = [], []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name in exclude or entry.name in IGNORED_DIRS or entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False) and os.path.isfile(os.path.join(entry.path, "__init__.py")):
            packages.append(entry.name)
        elif entry.is_file(follow_symlinks=False) and entry.name.endswith(".py"):
            modules.append(entry.name)
    license = "PSF-2.0" if label == "stdlib" else ""
    out = []
    if modules:
        unit = Unit("dir", str(root), label, base=str(root), files=tuple(modules), license=license)
        out.append(_Candidate(unit, sum(os.path.getsize(root / m) for m in modules)))
    for name in packages:
        unit = Unit("dir", str(root), f"{label}/{name}", base=str(root), files=(name,), license=license)
        out.append(_Candidate(unit, _tree_size(root / name)))
    return out


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        dirnames[:] = [d for d in dirnames if d not in IGNORED_DIRS]
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total
