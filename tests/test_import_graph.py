"""The module import graph of each package (read from the source with ``ast``): no cycles, the
dependency rules of docs/ARCHITECTURE.md, and which wing of the app may import which.

Every ``import`` statement counts, also those inside functions: a cycle hidden behind a lazy import
is still two modules that need each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "flame_core": ROOT / "packages" / "flame-core" / "src" / "flame_core",
    "rigged_gaussians": ROOT / "packages" / "rigged-gaussians" / "src" / "rigged_gaussians",
    "fsds_guidance": ROOT / "packages" / "fsds-guidance" / "src" / "fsds_guidance",
    "headstudio": ROOT / "packages" / "headstudio-app" / "src" / "headstudio",
}
#: Which of our packages each package may import (docs/ARCHITECTURE.md, "Dependency rules").
ALLOWED = {
    "flame_core": set(),
    "rigged_gaussians": set(),
    "fsds_guidance": set(),
    "headstudio": {"flame_core", "rigged_gaussians", "fsds_guidance"},
}

#: The app's core: the modules at the top of ``headstudio`` that every wing reads (docs/ARCHITECTURE.md,
#: "The app's wings"). A new module goes into a wing; one that every wing needs is added here.
CORE = {
    "headstudio",
    "headstudio._atomic",
    "headstudio._signals",
    "headstudio._typed_values",
    "headstudio.avatar",
    "headstudio.avatar_head",
    "headstudio.avatar_init",
    "headstudio.avatar_io",
    "headstudio.avatar_types",
    "headstudio.cameras",
    "headstudio.config",
    "headstudio.config_sections",
    "headstudio.errors",
    "headstudio.head_motion",
    "headstudio.video",
}
#: Which wings each wing of the app may import (itself included). Below the commands, the use cases
#: stand side by side: ``animate`` and ``train`` never import each other, and ``output`` (rendering,
#: export, the viewer) imports neither. ``batch`` runs ``commands.generate`` in its workers, so the
#: two may import each other's modules; a cycle between two modules is still refused above.
WINGS = {
    "core": {"core"},
    "output": {"core", "output"},
    "animate": {"core", "output", "animate"},
    "train": {"core", "output", "train"},
    "demo": {"core", "output", "train", "demo"},
    "batch": {"core", "output", "train", "batch", "commands"},
    "commands": {"core", "output", "animate", "train", "demo", "batch", "commands"},
    "cli": {"core", "output", "animate", "train", "demo", "batch", "commands", "cli"},
}

#: Single modules a wing may import from a wing it may not import otherwise, each a leaf of
#: ``animate`` that imports only the core (and its own split-out siblings): the glb's morph
#: targets are the ARKit-52 basis, and the photo fit reads the photo's face with the same
#: MediaPipe tracking as video driving.
ALSO_ALLOWED = {"output": {"headstudio.animate.arkit"}, "train": {"headstudio.animate.face_track"}}


def wing(module: str) -> str:
    """The wing of an app module: its first package under ``headstudio``, ``cli`` for the CLI, else
    ``core``."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in WINGS and parts[1] != "core":
        return parts[1]
    return "core"


def _modules(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package."""
    root = PACKAGES[package]
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute name of ``from <...> import``'s module."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if path.name == "__init__.py" else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _top_level_names(path: Path) -> set[str]:
    """Names a module binds at its top level (what ``from module import name`` can read)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``module`` imports. ``from pkg import name`` imports the
    submodule ``pkg.name`` when there is one, else reads ``name`` from ``pkg`` (an edge to ``pkg``
    only if ``pkg`` binds it: ``from rigged_gaussians import _C`` loads a compiled extension)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                found = [
                    ".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in modules
                ]
                out.update(found[:1])
        elif isinstance(node, ast.ImportFrom):
            prefix = _resolve(module, path, node)
            for alias in node.names:
                if f"{prefix}.{alias.name}" in modules:
                    out.add(f"{prefix}.{alias.name}")
                elif prefix in modules and (
                    alias.name == "*" or alias.name in _top_level_names(modules[prefix])
                ):
                    out.add(prefix)
    out.discard(module)
    return out


def _imported_packages(package: str) -> set[str]:
    """The top-level packages the modules of ``package`` import."""
    found: set[str] = set()
    for path in _modules(package).values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module.split(".")[0])
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    """Edges ``module -> modules of the same package it imports``."""
    modules = _modules(package)
    return {module: _imports(module, path, modules) for module, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycle(package: str) -> None:
    graph = import_graph(package)
    assert len(graph) > 3, graph  # the graph was read
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle in {package}: {' -> '.join(cycle or [])}"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_packages_import_downwards_only(package: str) -> None:
    used = _imported_packages(package) & (set(PACKAGES) - {package})
    assert used <= ALLOWED[package], f"{package} imports {sorted(used - ALLOWED[package])}"


def test_wing_of_a_module() -> None:
    assert wing("headstudio.train.trainer") == "train"
    assert wing("headstudio.output.viewer.server") == "output"
    assert wing("headstudio.cli") == "cli"
    assert wing("headstudio.avatar") == "core"


def test_top_level_modules_are_the_core() -> None:
    top = {m for m in import_graph("headstudio") if m.count(".") <= 1 and wing(m) == "core"}
    stray = sorted(top - CORE)
    assert not stray, (
        f"{stray} sit at the top of headstudio: move them into a wing (docs/ARCHITECTURE.md, "
        "'The app's wings'), or add them to CORE in this test if every wing needs them"
    )


def test_wings_import_only_what_they_may() -> None:
    graph = import_graph("headstudio")
    bad = sorted(
        f"{m} ({wing(m)}) imports {t} ({wing(t)})"
        for m, targets in graph.items()
        for t in targets
        if wing(t) not in WINGS[wing(m)] and t not in ALSO_ALLOWED.get(wing(m), set())
    )
    assert not bad, "\n".join(bad)


def test_nothing_imports_the_cli() -> None:
    """Nothing outside ``headstudio.cli`` imports it (its ``__main__`` runs it)."""
    graph = import_graph("headstudio")

    def in_cli(module: str) -> bool:
        return module.split(".")[:2] == ["headstudio", "cli"]

    users = sorted(m for m, targets in graph.items() if not in_cli(m) and any(in_cli(t) for t in targets))
    assert users == [], users
