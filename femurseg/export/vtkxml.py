"""VTK XML files written as plain XML, without VTK: PolyData (``.vtp``) and UnstructuredGrid (``.vtu``).

Arrays are inline ``binary`` data arrays (VTK's base64 encoding of a ``UInt64``
byte count followed by the little-endian values, encoded as one stream), which
VTK, ParaView, 3D Slicer, PyVista and meshio read. A ``<FieldData>`` block
carries small metadata (the coordinate frame, units, the source) as
``String`` arrays, and the same text is repeated in an XML comment for people.

Examples
--------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "triangle.vtp"
>>> points = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float)
>>> write_vtp(path, points, np.array([[0, 1, 2]]), field={"frame": "LPS"}).suffix
'.vtp'
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from femurseg.atomic import atomic_write_bytes

__all__ = ["write_vtp", "write_vtu", "VTK_TETRA", "VTK_HEXAHEDRON", "VTK_TRIANGLE"]

VTK_TRIANGLE, VTK_TETRA, VTK_HEXAHEDRON = 5, 10, 12
_TYPES = {
    np.dtype("float32"): "Float32", np.dtype("float64"): "Float64", np.dtype("int8"): "Int8",
    np.dtype("uint8"): "UInt8", np.dtype("int32"): "Int32", np.dtype("int64"): "Int64",
    np.dtype("uint32"): "UInt32", np.dtype("uint64"): "UInt64", np.dtype("int16"): "Int16",
}


def _encode(values: np.ndarray) -> str:
    data = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<"), copy=False).tobytes()
    return base64.b64encode(np.uint64(len(data)).tobytes() + data).decode("ascii")


def _array(name: str, values: np.ndarray, components: int | None = None) -> str:
    values = np.asarray(values)
    if values.dtype == bool:
        values = values.astype(np.uint8)
    if values.dtype not in _TYPES:
        raise TypeError(f"array {name!r}: dtype {values.dtype} has no VTK type")
    components = components or (values.shape[1] if values.ndim == 2 else 1)
    return (f'<DataArray type="{_TYPES[values.dtype]}" Name={quoteattr(name)} NumberOfComponents="{components}" '
            f'format="binary">{_encode(values.reshape(-1))}</DataArray>\n')


def _string_array(name: str, text: str) -> str:
    # VTK's binary String arrays: the strings' bytes, each followed by a NUL
    data = _encode(np.frombuffer(text.encode() + b"\0", np.uint8))
    return f'<Array type="String" Name={quoteattr(name)} NumberOfTuples="1" format="binary">{data}</Array>\n'


def _index_array(values: np.ndarray) -> np.ndarray:
    """Indices as Int32 where they fit (half the size of Int64), else Int64."""
    values = np.asarray(values)
    fits = values.size == 0 or int(values.max()) < np.iinfo(np.int32).max
    return values.astype(np.int32 if fits else np.int64, copy=False)


def _field(field: Mapping[str, str]) -> str:
    if not field:
        return ""
    return "<FieldData>\n" + "".join(_string_array(k, str(v)) for k, v in field.items()) + "</FieldData>\n"


def _attributes(tag: str, arrays: Mapping[str, np.ndarray]) -> str:
    if not arrays:
        return ""
    return f"<{tag}>\n" + "".join(_array(k, v) for k, v in arrays.items()) + f"</{tag}>\n"


def _document(kind: str, body: str, field: Mapping[str, str]) -> bytes:
    comment = "".join(f"  {k}: {v}\n" for k, v in field.items()).replace("--", "- -")
    head = (f'<?xml version="1.0"?>\n<!--\n{escape(comment)}-->\n'
            f'<VTKFile type="{kind}" version="1.0" byte_order="LittleEndian" header_type="UInt64">\n'
            f"<{kind}>\n{_field(field)}")
    return (head + body + f"</{kind}>\n</VTKFile>\n").encode("utf-8")


def write_vtp(
    path: str | os.PathLike[str],
    points: np.ndarray,
    triangles: np.ndarray,
    point_data: Mapping[str, np.ndarray] | None = None,
    cell_data: Mapping[str, np.ndarray] | None = None,
    field: Mapping[str, str] | None = None,
) -> Path:
    """Write a triangle surface as VTK XML PolyData, atomically.

    Parameters
    ----------
    points
        ``(N, 3)`` vertex coordinates.
    triangles
        ``(M, 3)`` vertex indices.
    point_data, cell_data
        Arrays per vertex / per triangle.
    field
        Metadata strings (``FieldData``).
    """
    points = np.asarray(points, np.float64)
    triangles = np.asarray(triangles, np.int64)
    body = (f'<Piece NumberOfPoints="{len(points)}" NumberOfVerts="0" NumberOfLines="0" NumberOfStrips="0" '
            f'NumberOfPolys="{len(triangles)}">\n'
            f"<Points>\n{_array('Points', points, 3)}</Points>\n"
            f"{_attributes('PointData', point_data or {})}{_attributes('CellData', cell_data or {})}"
            f"<Polys>\n{_array('connectivity', triangles.reshape(-1), 1)}"
            f"{_array('offsets', np.arange(3, 3 * len(triangles) + 1, 3, dtype=np.int64), 1)}</Polys>\n</Piece>\n")
    return atomic_write_bytes(path, _document("PolyData", body, field or {}))


def write_vtu(
    path: str | os.PathLike[str],
    points: np.ndarray,
    cells: np.ndarray,
    cell_type: int,
    point_data: Mapping[str, np.ndarray] | None = None,
    cell_data: Mapping[str, np.ndarray] | None = None,
    field: Mapping[str, str] | None = None,
) -> Path:
    """Write cells of one type (e.g. :data:`VTK_TETRA`) as VTK XML UnstructuredGrid, atomically.

    Parameters
    ----------
    points
        ``(N, 3)`` node coordinates.
    cells
        ``(M, K)`` node indices per cell, in VTK's node order for ``cell_type``.
    cell_type
        VTK cell type id.
    point_data, cell_data, field
        As :func:`write_vtp`.
    """
    points = np.asarray(points, np.float64)
    cells = _index_array(cells)
    k = cells.shape[1]
    body = (f'<Piece NumberOfPoints="{len(points)}" NumberOfCells="{len(cells)}">\n'
            f"<Points>\n{_array('Points', points, 3)}</Points>\n"
            f"{_attributes('PointData', point_data or {})}{_attributes('CellData', cell_data or {})}"
            f"<Cells>\n{_array('connectivity', cells.reshape(-1), 1)}"
            f"{_array('offsets', _index_array(np.arange(k, k * len(cells) + 1, k)), 1)}"
            f"{_array('types', np.full(len(cells), cell_type, np.uint8), 1)}</Cells>\n</Piece>\n")
    return atomic_write_bytes(path, _document("UnstructuredGrid", body, field or {}))
