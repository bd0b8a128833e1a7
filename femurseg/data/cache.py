"""The preprocessing cache: each subject read, reoriented, resampled and scaled once.

An entry is a folder ``<root>/<subject_id>-<key>/`` holding

- ``image.npy``: the preprocessed image, ``(X, Y, Z)`` in TorchIO's RAS voxel
  order, ``float32`` (or ``float16``), memory-mappable;
- ``label.npy``: the 0/1/2 map on the same grid, ``uint8`` (absent without a reference);
- ``fractions.npy``: with a reference, the periosteal and endosteal partial-volume
  fractions (:func:`~femurseg.data.preprocess.label_fractions`), ``(2, X, Y, Z)``
  ``uint8`` in steps of 1/255;
- ``meta.json``: the 4×4 RAS affine, shape, spacing, optional crop box, settings,
  source files and their fingerprints;
- ``complete``: an empty marker written last.

The ``key`` is a SHA-1 over the cache format, the :class:`Preprocessing` settings
(with the crop margin when the entry is cropped), the stored dtype and a
fingerprint of every source file. A file's fingerprint is its size, its
modification time (ns) and the SHA-1 of three 64 KiB samples (start, middle, end);
for ``.nii.gz`` the end holds gzip's CRC-32 of the whole uncompressed content. A
DICOM folder's fingerprint covers every file in it. A changed file or setting
therefore gives a new key: only the entries that depend on it are recomputed, and
entries for other settings stay valid.

An entry is written into a temporary folder (``.tmp-*``) that is renamed into
place after the marker is written; a reader accepts only folders with the marker,
so an interrupted write is never read and the next run recomputes it.

Examples
--------
>>> cache = SubjectCache("~/.cache/femurseg/preprocessed", Preprocessing(spacing=(1.0, 1.0, 1.0)))  # doctest: +SKIP
>>> subject = cache.get(record).subject()      # lazy: nothing read until the queue loads it  # doctest: +SKIP
>>> subject["image"].shape                      # doctest: +SKIP
(1, 330, 330, 210)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torchio as tio

from femurseg.data.loading import load_preprocessed
from femurseg.data.manifest import ManifestRecord
from femurseg.data.preprocess import Preprocessing

__all__ = ["CacheEntry", "SubjectCache", "file_fingerprint", "read_cached_array"]

CACHE_FORMAT = 2  # 2: fractions.npy
_SAMPLE = 64 * 1024
_MARKER = "complete"
CacheDtype = Literal["float32", "float16"]


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """Fingerprint of a file or a folder's files: size, mtime (ns) and three 64 KiB samples.

    Cheap for any size (three reads), and for ``.nii.gz`` files effectively a
    content hash (gzip stores the CRC-32 of the content in its last 8 bytes).
    """
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha1()
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(path) if path.is_dir() else ''}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
        with file.open("rb") as handle:
            for offset in sorted({0, max(0, stat.st_size // 2 - _SAMPLE // 2), max(0, stat.st_size - _SAMPLE)}):
                handle.seek(offset)
                digest.update(handle.read(_SAMPLE))
    return digest.hexdigest()


def read_cached_array(path: str | os.PathLike[str]) -> tuple[torch.Tensor, np.ndarray]:
    """TorchIO reader of a cache entry's ``image.npy``, ``label.npy`` or ``fractions.npy``.

    Memory-maps the array and copies it into a ``(C, X, Y, Z)`` tensor
    (``float32`` for images, ``uint8`` for labels, ``float32`` in ``[0, 1]`` for the
    two fractions); the affine comes from the entry's ``meta.json``. Only the pages
    read are loaded, and the operating system shares them between processes (DDP
    ranks, queue workers).
    """
    path = Path(path)
    meta = json.loads((path.parent / "meta.json").read_text())
    array = np.load(path, mmap_mode="r")
    affine = np.asarray(meta["affine"], dtype=np.float64)
    if path.stem == "fractions":
        return torch.from_numpy(np.array(array, dtype=np.float32)).div_(255.0), affine
    dtype = np.uint8 if path.stem == "label" else np.float32
    return torch.from_numpy(np.array(array, dtype=dtype))[None], affine


@dataclass(frozen=True)
class CacheEntry:
    """A complete cache entry (see the module docstring for its files)."""

    path: Path
    meta: dict[str, Any]

    @property
    def has_label(self) -> bool:
        return (self.path / "label.npy").exists()

    def subject(self, fractions: bool = False) -> tio.Subject:
        """A lazy ``tio.Subject``: nothing is read yet.

        It holds ``image``, ``label`` if the entry has one, ``subject_id``, and
        with ``fractions`` the two-channel ``fractions`` image (training targets).
        """
        images: dict[str, Any] = {"image": tio.ScalarImage(self.path / "image.npy", reader=read_cached_array)}
        if self.has_label:
            images["label"] = tio.LabelMap(self.path / "label.npy", reader=read_cached_array)
            if fractions:
                images["fractions"] = tio.ScalarImage(self.path / "fractions.npy", reader=read_cached_array)
        return tio.Subject(**images, subject_id=self.meta["subject_id"])


class SubjectCache:
    """Preprocessed subjects stored on disk, keyed by file content and settings.

    Parameters
    ----------
    root
        Cache folder (created on first write). Several processes may share it.
    settings
        Preprocessing settings; ``settings.crop_margin_mm`` is used by entries
        requested with ``crop=True``.
    dtype
        Stored image dtype; ``float16`` halves disk and page-cache use (steps of
        at most 1.5 HU with the default window).
    validated
        Whether the subjects this instance stores have passed validation; recorded
        in ``meta.json`` so that a later run can skip their content checks.

    Attributes
    ----------
    computed
        Number of entries this instance has computed (cache misses).
    """

    def __init__(
        self, root: str | os.PathLike[str], settings: Preprocessing, dtype: CacheDtype = "float32",
        validated: bool = False,
    ) -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"cache dtype must be 'float32' or 'float16', got {dtype!r}")
        self.root = Path(root).expanduser()
        self.settings = settings
        self.dtype = dtype
        self.validated = validated
        self.computed = 0

    def key(self, record: ManifestRecord, crop: bool = False) -> str:
        """The entry key of ``record`` (hex SHA-1; see the module docstring)."""
        settings = self.settings.to_dict()
        settings["crop_margin_mm"] = settings["crop_margin_mm"] if crop else None
        files = {column: file_fingerprint(path) for column, path in sorted(record.files.items())}
        payload = {"format": CACHE_FORMAT, "settings": settings, "dtype": self.dtype, "files": files}
        return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def entry_path(self, record: ManifestRecord, crop: bool = False) -> Path:
        return self.root / f"{record.subject_id}-{self.key(record, crop)[:20]}"

    def lookup(self, record: ManifestRecord, crop: bool = False) -> CacheEntry | None:
        """The complete entry of ``record``, or ``None``."""
        return self._read_entry(self.entry_path(record, crop))

    def is_validated(self, record: ManifestRecord) -> bool:
        """Whether a complete entry of ``record`` (cropped or not) was written after validation."""
        entries = (self.lookup(record, crop) for crop in (False, True))
        return any(entry is not None and entry.meta.get("validated", False) for entry in entries)

    def get(self, record: ManifestRecord, crop: bool = False) -> CacheEntry:
        """The entry of ``record``, computing and storing it if it is missing."""
        path = self.entry_path(record, crop)
        return self._read_entry(path) or self._fill(record, crop, path)

    @staticmethod
    def _read_entry(path: Path) -> CacheEntry | None:
        if not (path / _MARKER).exists():
            return None
        return CacheEntry(path, json.loads((path / "meta.json").read_text()))

    def _fill(self, record: ManifestRecord, crop: bool, path: Path) -> CacheEntry:
        loaded = load_preprocessed(record, self.settings, crop=crop, fractions=True, require_label=False)
        image, label, fractions, box = loaded.image, loaded.label, loaded.fractions, loaded.box
        image_data, affine = tio.io.sitk_to_nib(image)
        meta = {
            "format": CACHE_FORMAT,
            "subject_id": record.subject_id,
            "affine": np.asarray(affine).tolist(),
            "shape": list(image_data.shape[1:]),
            "spacing": list(image.GetSpacing()),
            "crop_box": box,
            "dtype": self.dtype,
            "settings": self.settings.to_dict(),
            "sources": {column: str(p) for column, p in record.files.items()},
            "validated": self.validated,
        }
        arrays = {"image": np.ascontiguousarray(image_data[0], dtype=self.dtype)}
        if label is not None:
            arrays["label"] = np.ascontiguousarray(tio.io.sitk_to_nib(label)[0][0], dtype=np.uint8)
            parts = tio.io.sitk_to_nib(fractions)[0]  # (2, X, Y, Z)
            arrays["fractions"] = np.ascontiguousarray(np.rint(np.clip(parts, 0.0, 1.0) * 255.0), dtype=np.uint8)
        self._write(path, arrays, meta)
        self.computed += 1
        entry = self._read_entry(path)
        assert entry is not None
        return entry

    def _write(self, path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Write into a temporary folder, marker last, then rename it into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            for name, array in arrays.items():
                np.save(tmp / f"{name}.npy", array)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
            (tmp / _MARKER).touch()
            if path.exists() and not (path / _MARKER).exists():
                shutil.rmtree(path)  # an incomplete folder left by an older writer: never read, replace it
            try:
                os.rename(tmp, path)
            except OSError:
                if not (path / _MARKER).exists():
                    raise
                # another process (a DDP rank) finished the same entry first: keep theirs
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
