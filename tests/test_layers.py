"""The package's layers (DESIGN.md §2, docs/architecture.md), checked on the source.

Floors, each importing only the floors below it or its own: 1 primitives (registry,
lazy re-exports, labels, sliding window, atomic writes, errors, signals, voxel sizes and boxes, device
capabilities), 2 ``data`` and ``models``, 3
``inference``, ``metrics``, ``analysis`` and ``export``, 4 the commands (``cli``,
``commands``, ``lightning_cli``, ``cv``). ``analysis`` and ``export`` never import
``inference``: they serve label maps from any source. No import cycle among modules
(package ``__init__`` files, which only re-export, are left out of the cycle check).
Every import counts, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "femurseg"

FLOORS = {
    "femurseg.registry": 1, "femurseg.lazy": 1, "femurseg.labels": 1, "femurseg.sliding": 1, "femurseg.atomic": 1,
    "femurseg.errors": 1, "femurseg.signals": 1, "femurseg.voxels": 1, "femurseg.devices": 1,
    "femurseg.data": 2, "femurseg.models": 2,
    "femurseg.inference": 3, "femurseg.metrics": 3, "femurseg.analysis": 3, "femurseg.export": 3,
    "femurseg.cli": 4, "femurseg.commands": 4, "femurseg.lightning_cli": 4, "femurseg.cv": 4,
    "femurseg.__main__": 4, "femurseg": 4,
}
#: modules that live in a domain package but are commands (argument parsing and wiring only)
COMMAND_MODULES: set[str] = set()


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n for n in names if n in modules}
    return found


def _floor(module: str) -> int:
    if module in COMMAND_MODULES:
        return 4
    parts = module.split(".")
    for length in range(len(parts), 0, -1):
        prefix = ".".join(parts[:length])
        if prefix in FLOORS:
            return FLOORS[prefix]
    raise AssertionError(f"{module} is on no floor: add it to FLOORS and docs/architecture.md")


MODULES = _modules()
GRAPH = {name: _imports(path, MODULES) for name, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_floors(module: str):
    upward = sorted(t for t in GRAPH[module] if _floor(t) > _floor(module))
    assert not upward, f"{module} (floor {_floor(module)}) imports {upward} from a higher floor"
    if module.startswith(("femurseg.analysis", "femurseg.export")):
        assert not [t for t in GRAPH[module] if t.startswith(("femurseg.inference", "femurseg.commands"))]


def test_no_import_cycles():
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    graph = {m: {t for t in targets if t not in packages} for m, targets in GRAPH.items() if m not in packages}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, f"import cycles: {cycles}"


def test_the_label_numbers_live_in_labels_py():
    """Library code names label values through femurseg.labels, never as bare ``== 2`` / ``>= 1`` on labels."""
    offenders = []
    for name, path in MODULES.items():
        if name == "femurseg.labels" or name.startswith("femurseg.data.synthetic"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            if "``" in code or code.strip().startswith((">>>", '"""')):
                continue  # documentation
            if "label" in code and any(p in code for p in ("== 2", ">= 1)", "== 1)", ">= 1 ", "== 2)")):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
