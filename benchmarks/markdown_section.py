"""Replace one benchmark's section of a Markdown file (``docs/benchmarks.md``), keeping the others."""

from __future__ import annotations

import os
import re
from pathlib import Path


def replace_section(path: Path, title: str, text: str) -> None:
    """Put ``text`` (starting with the ``## title`` line) in place of that section, or add it at the end.

    A section runs from its title line to the next ``## `` heading or the end of the file.
    The file is written to a temporary name and renamed, so it is never half-written.
    """
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    block = text.rstrip("\n") + "\n"
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda match: block + ("\n" if match.end() < len(old) else ""), old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + block
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)
