"""femurseg uses the public API of Lightning and TorchIO only (issue 16, STYLE rule 16).

Checked on the source: no private attribute (``_name``) reached through
``torchio``/``tio``, ``lightning``/``pl`` or a trainer, and none of the private members
femurseg once used (``_accelerator_connector``, LightningCLI's ``_get``, oneDNN's bf16
query). PyTorch's private CPU-feature queries are wrapped in one adapter,
:mod:`femurseg.devices`, which calls them by name (never as attributes).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "femurseg"
ROOTS = {"tio", "torchio", "pl", "lightning", "trainer"}
NAMED = {"_accelerator_connector", "_data_connector", "_checkpoint_connector", "_logger_connector", "_get",
         "_results", "_is_mkldnn_bf16_supported"}


def _chain(node: ast.Attribute) -> tuple[str | None, list[str]]:
    """The base name and attribute names of ``a.b.c`` (``("a", ["b", "c"])``)."""
    attributes = []
    while isinstance(node, ast.Attribute):
        attributes.append(node.attr)
        node = node.value
    return (node.id if isinstance(node, ast.Name) else None), attributes[::-1]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_framework_attributes(path: Path):
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Attribute) or isinstance(node.ctx, ast.Store):
            continue
        base, attributes = _chain(node)
        through_framework = base in ROOTS or "trainer" in attributes[:-1]
        if node.attr in NAMED or (through_framework and _private(node.attr)):
            found.append(f"line {node.lineno}: {base}.{'.'.join(attributes)}")
    assert not found, f"{path.relative_to(PACKAGE.parent)} uses private framework API: {sorted(set(found))}"
