"""The plain commands of ``femurseg``, one module per command (floor 4 of docs/architecture.md).

Each module holds a ``main(argv) -> int`` that parses its options and wires the
library's functions; no logic lives here. ``fit``, ``validate``, ``test`` and
``predict`` go through :mod:`femurseg.lightning_cli`, and ``cv`` through
:mod:`femurseg.cv`. :mod:`femurseg.cli` dispatches by name, importing only the
command that runs.
"""
