"""The layer order of the package, proved on its import graph, so that a back-edge fails CI.

Every module of ``featurekit`` belongs to one layer of :data:`LAYERS` (a new top-level module or
package must be placed here, or this test fails). A module may import its own layer and the layers
below it, never one above: not at module level, not inside a function, not through
``importlib.import_module("...")`` with a literal name. README.md's "Architecture" section shows this
table.
"""

from __future__ import annotations

import ast
from pathlib import Path

import featurekit

#: Layers, bottom first: (name, top-level modules/packages of ``featurekit``).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("_version", "registry", "parameters", "defaults", "extras")),
    ("executor", ("executor",)),  # where tasks run (serial, joblib, Dask): imports no other layer
    ("audio", ("audio", "corpora")),
    ("extractors", ("extractors", "featureset", "augmentation")),
    ("store", ("store", "store_maintenance", "extraction")),
    ("evaluation", ("evaluation", "audit", "heads")),
    ("report/deploy", ("report", "deploy", "api", "demo", "")),  # "": the package's lazy facade
    ("cli", ("cli", "commands", "__main__")),
)

PACKAGE = Path(featurekit.__file__).parent


def module_name(path: Path, root: Path, package: str) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str) -> set[str]:
    """Every module name ``path`` imports: statements anywhere (also in functions), relative imports
    resolved, ``from a import b`` as both ``a`` and ``a.b``, and ``import_module("literal")``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) == "import_module"):
            out.add(node.args[0].value)
    return out


def layer_of(module: str, package: str) -> int | None:
    top = module.split(".")[1] if "." in module else ""
    return next((i for i, (_, members) in enumerate(LAYERS) if top in members), None)


def violations(root: Path, package: str) -> tuple[list[str], list[str]]:
    """``(back-edges, unplaced modules)`` of the package at ``root``."""
    modules = {module_name(p, root, package): p for p in sorted(root.rglob("*.py"))}
    back, unplaced = [], []
    for name, path in modules.items():
        mine = layer_of(name, package)
        if mine is None:
            unplaced.append(name)
            continue
        for target in sorted(imports(path, name)):
            if target not in modules or not target.startswith(package):
                continue
            theirs = layer_of(target, package)
            if theirs is not None and theirs > mine:
                back.append(f"{name} ({LAYERS[mine][0]}) imports {target} ({LAYERS[theirs][0]})")
    return back, unplaced


def test_every_module_imports_only_its_layer_and_those_below():
    back, unplaced = violations(PACKAGE, "featurekit")
    assert not unplaced, f"modules in no layer (add them to LAYERS in {__file__}): {unplaced}"
    assert not back, "imports against the layer order:\n" + "\n".join(back)


def test_the_check_sees_function_level_and_importlib_back_edges(tmp_path):
    pkg = tmp_path / "featurekit"
    (pkg / "deploy").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text("def helper():\n    pass\n")
    (pkg / "audio.py").write_text("import numpy\n")
    (pkg / "deploy" / "__init__.py").write_text("")
    (pkg / "deploy" / "commands.py").write_text("def f():\n    from ..cli import helper\n")
    (pkg / "store.py").write_text("import importlib\nimportlib.import_module('featurekit.cli')\n")
    (pkg / "newthing.py").write_text("from featurekit import audio\n")
    back, unplaced = violations(pkg, "featurekit")
    assert unplaced == ["featurekit.newthing"]
    assert back == ["featurekit.deploy.commands (report/deploy) imports featurekit.cli (cli)",
                    "featurekit.store (store) imports featurekit.cli (cli)"]
