"""The package's layers, checked on every import (an import-linter contract, in a test).

A file travels inbox → intake → work folder → batches → providers → publish; the layers
below say who may import whom, so that a module never reaches up:

    commands → service → intake / batches → publish → providers / store / signing / work → core

Siblings of one layer may depend on each other only in the directions listed in
``SIBLINGS``. Imports inside functions and under ``TYPE_CHECKING`` count too: a
dependency is a dependency, whenever it is loaded.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import folderseal

ROOT = Path(folderseal.__file__).parent

# Top to bottom; a module may import its own package and any package in a lower layer.
LAYERS: list[set[str]] = [
    {"commands", "__main__"},
    {"service"},
    {"intake", "batches"},
    {"publish"},
    {"providers", "store", "signing", "work"},
    {"core", "__init__"},
]
# Within one layer: (importer, imported) pairs allowed, with why.
SIBLINGS: set[tuple[str, str]] = {
    ("__main__", "commands"),  # ``python -m folderseal`` is the command line
    ("batches", "intake"),     # a batch's first step finishes moving its files in (batching)
    ("providers", "signing"),  # the local provider signs with the embedded signer
}


def _package(module: str) -> str:
    """``folderseal.batches.machine`` → ``batches``; ``folderseal.work`` → ``work``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(package: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if package in layer)


def _module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every folderseal module ``path`` imports, absolute or relative."""
    tree = ast.parse(path.read_text(), str(path))
    here = _module_name(path, root).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("folderseal"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module == "folderseal":
                found.update(f"folderseal.{a.name}" for a in node.names
                             if not a.name.startswith("__"))  # __version__
            elif module.startswith("folderseal."):
                found.add(module)
    return found


def violations(root: Path = ROOT) -> list[str]:
    broken = []
    for path in sorted(root.rglob("*.py")):
        importer = _module_name(path, root)
        mine = _package(importer)
        for imported in sorted(_imports(path, root)):
            theirs = _package(imported)
            if theirs == mine or imported == "folderseal":
                continue
            below = _layer(theirs) > _layer(mine)
            if not below and (mine, theirs) not in SIBLINGS:
                broken.append(f"{importer} imports {imported} ({mine} may not use {theirs})")
    return broken


def test_every_layer_list_names_real_packages() -> None:
    """The contract names the packages that exist, and every package is in a layer."""
    named = set().union(*LAYERS) - {"__init__", "__main__"}
    present = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    present |= {p.stem for p in ROOT.glob("*.py")} - {"__init__", "__main__"}
    assert named == present


def test_every_allowed_sibling_import_is_used() -> None:
    """No exception in SIBLINGS outlives the import it was made for."""
    used = {(_package(_module_name(p)), _package(i))
            for p in ROOT.rglob("*.py") for i in _imports(p)}
    assert used >= SIBLINGS, SIBLINGS - used


def test_no_module_imports_a_layer_above_it() -> None:
    """commands → service → intake / batches → publish → providers / store / signing / work
    → core, and siblings only as SIBLINGS allows."""
    assert violations() == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: an import of the service layer from core is found (in a copy
    of the package, so tests running beside this one never see the probe)."""
    copy = tmp_path / "folderseal"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert violations(copy) == violations()
    (copy / "core" / "_layer_probe.py").write_text("from folderseal.service import daemon\n")
    assert any("core._layer_probe imports folderseal.service" in v for v in violations(copy))
