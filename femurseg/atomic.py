"""Atomic file writes: a reader sees the old file or the complete new one, never half of it.

Every writer in femurseg goes through here. The data is written to a temporary
name in the destination folder (``.<name>.<pid>.*.tmp``, never mistaken for output)
and renamed over the destination, which is atomic on POSIX file systems; on any
error the temporary file is removed and the destination is left as it was. Files
and folders get the permissions the umask gives (``0666 & ~umask``), not the
owner-only ones of :mod:`tempfile`. A process killed with SIGKILL cannot clean up:
its temporaries carry its process id, and :func:`remove_stale_temporaries` removes
those whose process is gone.

Examples
--------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_text(folder / "report.json", "{}").read_text()
'{}'
>>> print(atomic_write_csv(folder / "rows.csv", [{"id": "a", "dice": 0.5}, {"id": "b"}], ["id", "dice"]).read_text())
id,dice
a,0.5
b,
<BLANKLINE>
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_csv", "atomic_write_json", "csv_text",
    "temporary_folder", "honour_umask", "remove_stale_temporaries",
]

#: temporaries of this module and of femurseg's folder writers: ``.<name>.<pid>.<random>.tmp*``
#: (files) and ``.<name>.tmp-<pid>-<random>``, ``.<name>.old-<pid>-<random>``, ``.parts-<pid>-<n>`` (folders)
_TEMPORARY = re.compile(r"^\.(?:.+\.(?P<pid>\d+)\.[^.]+\.tmp.*|.*\.(?:tmp|old)-(?P<dpid>\d+)?-?.*|parts-(?P<ppid>\d+)-.*)$")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: str | os.PathLike[str]) -> None:
    """Give a file ``0666 & ~umask`` and a folder ``0777 & ~umask`` (what ``open``/``mkdir`` would)."""
    mode = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, mode & ~_umask())


def temporary_folder(folder: str | os.PathLike[str], name: str, kind: str = "tmp") -> Path:
    """Create ``<folder>/.<name>.<kind>-<pid>-<random>/`` with the umask's permissions."""
    path = Path(tempfile.mkdtemp(prefix=f".{name}.{kind}-{os.getpid()}-", dir=folder))
    honour_umask(path)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries in ``folder`` left by processes that no longer run; return them.

    Temporaries of a running process (another ``segment`` writing into the same
    folder, another DDP rank) are kept. Ones without a process id (older versions)
    count as stale.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match is None:
            continue
        pid = next((int(v) for v in match.groupdict().values() if v), None)
        if pid is not None and (pid == os.getpid() or _alive(pid)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    Parameters
    ----------
    path
        Destination; its folder is created if needed.
    suffix
        Ending of the temporary name, for writers that choose a format by
        extension (``".tmp.nii.gz"``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        yield Path(tmp)
        if Path(tmp).exists():
            honour_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (no newline translation) and return ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], float_format: str | None = None) -> str:
    """A CSV table as text: a header of ``columns``, then one line per row (``\\n`` line ends).

    Parameters
    ----------
    rows
        Mappings from column name to value; a missing key or ``None`` is an empty
        field, keys that are not columns are ignored.
    columns
        The header, in order.
    float_format
        Format spec for ``float`` values (``".8g"``); ``None`` writes them as Python does.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        if float_format is not None:
            row = {k: format(v, float_format) if isinstance(v, float) else v for k, v in row.items()}
        writer.writerow(row)
    return buffer.getvalue()


def atomic_write_csv(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]], columns: Sequence[str],
                     float_format: str | None = None) -> Path:
    """Write a CSV table (:func:`csv_text`) to ``path`` atomically and return ``path``."""
    return atomic_write_text(path, csv_text(rows, columns, float_format))


def atomic_write_json(path: str | os.PathLike[str], data: Any, indent: int = 2, *, sort_keys: bool = False,
                      allow_nan: bool = False, default: Callable[[Any], Any] | None = None) -> Path:
    """Write ``data`` as indented JSON with a final newline, atomically; return ``path``.

    NaN and infinity are refused unless ``allow_nan`` (they are not JSON); ``default``
    converts values ``json`` cannot (as in :func:`json.dumps`).
    """
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan, default=default)
    return atomic_write_text(path, text + "\n")
