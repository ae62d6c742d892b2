"""The package's layering (docs/ARCHITECTURE.md): a module never imports a module of a higher
layer, domain packages never import ``engines/`` or the CLI, and the modules of ``sam/`` import
each other without a cycle. Every import counts: module-level, inside functions, under
``TYPE_CHECKING``. Reads the source with :mod:`ast`; imports nothing of the package."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "SAMFewShotLib"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: Layers, lowest first. A module's layer is that of its longest matching prefix
#: (a dotted module name, or a package name ending in ".").
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("volume", "files", "errors", "progress", "memory", "metrics", "prediction",
              "torch_files", "native_output")),
    # __init__: the public API (Volume, SparseAnnotation)
    ("io", ("volume_io", "annotation", "input_checks", "__init__", "overlay", "result_montage")),
    ("propagation/sam", ("propagation.", "sam.")),
    ("domain", ("atlas.", "fewshot.", "meta.", "sfr.", "baselines")),
    ("engines", ("engines.",)),
    ("batch", ("batch.", "bench", "demo", "demo_data", "suggest")),
    ("cli", ("cli", "cli.", "__main__", "slicer_support.")),
)

#: (importer, imported) pairs allowed for now, each with the reason it goes away.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    """``sam/decoder.py`` -> ``sam.decoder``; ``sam/__init__.py`` -> ``sam`` (package-relative)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py")) if "__pycache__" not in p.parts}


def is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def resolve(target: str, modules: dict[str, Path]) -> str | None:
    """The package module a dotted name (package-relative) refers to: the longest known prefix."""
    parts = target.split(".") if target else []
    while parts:
        name = ".".join(parts)
        if name in modules:
            return name
        parts.pop()
    return "__init__" if target == "" else None


def imports_of(name: str, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports anywhere in its source (package-relative names)."""
    tree = ast.parse(modules[name].read_text(encoding="utf-8"))
    here = name.split(".") if is_package(name, modules) else name.split(".")[:-1]
    if name == "__init__":
        here = []
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name[len(PACKAGE) + 1 :] for alias in node.names if alias.name.startswith(PACKAGE + ".")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                base = ".".join(base_parts + ([node.module] if node.module else []))
            elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                base = node.module[len(PACKAGE) + 1 :]
            else:
                continue
            # "from . import x" / "from .pkg import mod": the names may be submodules
            targets = [f"{base}.{alias.name}" if base else alias.name for alias in node.names] or [base]
            targets = [t if resolve(t, modules) != resolve(base, modules) else base for t in targets]
        for target in targets:
            module = resolve(target, modules)
            if module is not None and module != name:
                found.add(module)
    return found


def layer_of(name: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = (name + ".").startswith(prefix) if prefix.endswith(".") else (
                name == prefix or (prefix.endswith("_") and name.startswith(prefix))
            )
            if matches and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"{PACKAGE}.{name} has no layer: add it to LAYERS in {Path(__file__).name}")
    return best


def test_every_module_has_a_layer():
    for name in all_modules():
        layer_of(name)


def test_no_module_imports_a_higher_layer():
    modules = all_modules()
    violations = []
    for name in modules:
        for imported in sorted(imports_of(name, modules)):
            if layer_of(imported) > layer_of(name) and (name, imported) not in KNOWN_EXCEPTIONS:
                violations.append(
                    f"{name} ({LAYERS[layer_of(name)][0]}) imports {imported} ({LAYERS[layer_of(imported)][0]})"
                )
    assert not violations, "Lower layers import higher ones:\n" + "\n".join(violations)


def test_domain_packages_never_import_engines_or_the_cli():
    modules = all_modules()
    domain = [n for n in modules if n.split(".")[0] in ("atlas", "fewshot", "meta", "sfr", "sam", "propagation")]
    bad = [
        f"{name} imports {imported}"
        for name in domain
        if layer_of(name) < layer_of("cli")  # atlas/rrl/cli.py is a CLI module
        for imported in imports_of(name, modules)
        if imported.split(".")[0] == "engines" or layer_of(imported) == layer_of("cli")
    ]
    assert not bad, "\n".join(bad)


def test_known_exceptions_are_still_needed():
    """An exception whose import is gone must leave the list (it would hide a new one)."""
    modules = all_modules()
    stale = [
        f"{a} -> {b}" for a, b in KNOWN_EXCEPTIONS if a not in modules or b not in imports_of(a, modules)
    ]
    assert not stale, "Remove from KNOWN_EXCEPTIONS: " + ", ".join(stale)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_sam_modules_import_each_other_without_a_cycle():
    modules = all_modules()
    sam = [n for n in modules if n.startswith("sam.")]
    graph = {n: {m for m in imports_of(n, modules) if m.startswith("sam.")} for n in sam}
    cycle = find_cycle(graph)
    assert cycle is None, "Import cycle in sam/: " + " -> ".join(cycle)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The parser itself: a function-level relative import of a higher layer is found."""
    package = tmp_path / PACKAGE
    (package / "sam").mkdir(parents=True)
    (package / "engines").mkdir()
    (package / "__init__.py").write_text("")
    (package / "sam" / "__init__.py").write_text("")
    (package / "engines" / "__init__.py").write_text("")
    (package / "engines" / "base.py").write_text("")
    (package / "sam" / "a.py").write_text("def f():\n    from ..engines.base import X\n    from . import b\n")
    (package / "sam" / "b.py").write_text("from .a import f\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", package)
    modules = all_modules()
    assert imports_of("sam.a", modules) == {"engines.base", "sam.b"}
    assert imports_of("sam.b", modules) == {"sam.a"}
    graph = {n: {m for m in imports_of(n, modules) if m.startswith("sam.")} for n in ("sam.a", "sam.b")}
    assert find_cycle(graph) == ["sam.a", "sam.b", "sam.a"]
