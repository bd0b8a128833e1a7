"""Synthetic quantitative CT of the proximal femur, with exact ground truth.

A subject is a one-hip CT with a proximal femur (head, neck, trochanters,
shaft with medullary canal, regional cortical thickness), the acetabulum,
ischium and pubis next to it (never labelled), muscle, fat, skin, air, a
patient table and a calibration phantom with K2HPO4 rods, rendered with
partial volume, blur, correlated noise and scanner gain/offset. Everything is
drawn from one seed, so the same seed gives the same files byte for byte.

Modules: anatomy in :mod:`~femurseg.data.synthetic.femur` and
:mod:`~femurseg.data.synthetic.pelvis`, soft tissues and phantom in
:mod:`~femurseg.data.synthetic.body`, intensities in
:mod:`~femurseg.data.synthetic.tissues`, acquisition in
:mod:`~femurseg.data.synthetic.scanner`, assembly in
:mod:`~femurseg.data.synthetic.render`. See ``docs/synthetic.md``.

Examples
--------
>>> case = generate_subject(3, preset="tiny")
>>> case.subject_id
'phantom_00003'
>>> sorted(case.meta["volumes_cm3"])
['cortical', 'periosteal', 'trabecular']
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk

from femurseg.atomic import atomic_write_bytes
from femurseg.data.manifest import ManifestRecord, write_manifest
from femurseg.data.synthetic.body import ROD_DENSITIES, Tissue
from femurseg.data.synthetic.preset import PRESETS, SynthPreset
from femurseg.data.synthetic.render import Rendered, render, sample_subject

__all__ = ["SyntheticCase", "SynthPreset", "PRESETS", "GENERATOR_VERSION", "generate_subject", "write_cohort", "Tissue"]

#: Bumped whenever the same seed and preset would give different files; part of the
#: name of the cached cohort that ``fit`` generates, so an old cohort is never reused.
#: 2: the ``quick`` preset renders the clinical field of view (skin, air, table, phantom).
GENERATOR_VERSION = 2

Side = Literal["left", "right"]


@dataclass
class SyntheticCase:
    """One synthetic subject.

    Attributes
    ----------
    subject_id
        ``phantom_<seed:05d>``.
    image
        ``int16`` CT in HU, 3D.
    label
        ``uint8`` 0 background / 1 cortical / 2 trabecular (incl. the medullary
        canal), on the image's grid.
    meta
        JSON-serialisable parameters, volumes, side, spacing and calibration.
    tissue
        ``(Z, Y, X)`` ``uint8`` tissue codes (:class:`Tissue`) by voxel centre,
        in the image's array order; for tests and measurements, not written.
    """

    subject_id: str
    image: sitk.Image
    label: sitk.Image
    meta: dict[str, Any]
    tissue: np.ndarray


def _resolve(preset: str | SynthPreset) -> SynthPreset:
    if isinstance(preset, SynthPreset):
        return preset
    if preset not in PRESETS:
        raise KeyError(f"unknown synthetic preset {preset!r}; valid presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[preset]


def _mirror(rendered: Rendered) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Mirror a left hip into a right hip: flip x and negate x coordinates."""
    nx = rendered.hu.shape[2]
    ox, oy, oz = rendered.origin
    origin = (-(ox + (nx - 1) * rendered.spacing[0]), oy, oz)
    return rendered.hu[:, :, ::-1], rendered.label[:, :, ::-1], rendered.tissue[:, :, ::-1], origin


def _to_image(array: np.ndarray, origin: tuple[float, float, float], spacing: tuple[float, float, float]) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetSpacing(tuple(float(s) for s in spacing))
    return image


def _plain(value: Any) -> Any:
    """Make dataclass dicts JSON-friendly (tuples to lists, numpy scalars to floats)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def generate_subject(seed: int, preset: str | SynthPreset = "quick", side: Side | None = None) -> SyntheticCase:
    """Generate one synthetic hip CT with its exact label.

    Parameters
    ----------
    seed
        Non-negative subject seed; every parameter is drawn from it.
    preset
        Name in :data:`PRESETS` (``"tiny"``, ``"quick"``, ``"full"``) or a
        :class:`SynthPreset`.
    side
        Force the hip side; by default it is drawn from the seed. The other
        parameters do not depend on it, so the two sides of one seed are
        mirror images.

    Returns
    -------
    SyntheticCase
        Image (``int16`` HU), label (``uint8`` 0/1/2), meta and tissue map.

    Raises
    ------
    KeyError
        Unknown preset name.
    ValueError
        Negative seed or invalid side.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if side not in (None, "left", "right"):
        raise ValueError(f"side must be 'left', 'right' or None, got {side!r}")
    spec = _resolve(preset)
    params = sample_subject(seed, spec)
    chosen: str = side or params.side
    rendered = render(params, spec)
    if chosen == "right":
        hu, label, tissue, origin = _mirror(rendered)
    else:
        hu, label, tissue, origin = rendered.hu, rendered.label, rendered.tissue, rendered.origin
    hu16 = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    subject_id = f"phantom_{seed:05d}"
    image = _to_image(hu16, origin, rendered.spacing)
    label_image = _to_image(label, origin, rendered.spacing)
    meta = _meta(subject_id, params, spec, chosen, rendered, label, origin)
    return SyntheticCase(subject_id, image, label_image, meta, np.ascontiguousarray(tissue))


def _meta(subject_id: str, params: Any, spec: SynthPreset, side: str, rendered: Rendered,
          label: np.ndarray, origin: tuple[float, float, float]) -> dict[str, Any]:
    sc = params.scanner
    voxel_cm3 = float(np.prod(rendered.spacing)) / 1000.0
    counts = np.bincount(label.ravel(), minlength=3)
    slope = sc.gain * sc.slope
    intercept = sc.gain * sc.intercept + sc.offset
    sign = -1.0 if side == "right" else 1.0
    rods = [{"density_mg_cm3": rho, "x_mm": sign * x, "y_mm": y, "radius_mm": params.phantom.rod_radius,
             "hu": intercept + slope * rho} for rho, (x, y) in zip(ROD_DENSITIES, rendered.rods)]
    knee = {} if params.knee is None else {"knee": asdict(params.knee)}
    return _plain({
        "subject_id": subject_id,
        "seed": params.seed,
        "preset": spec.name,
        "side": side,
        "group": params.tissues.group,
        "spacing": list(rendered.spacing),
        "size": [int(s) for s in rendered.hu.shape[::-1]],
        "origin": list(origin),
        "head_centre_mm": [0.0, 0.0, 0.0],
        "volumes_cm3": {
            "periosteal": float(counts[1] + counts[2]) * voxel_cm3,
            "cortical": float(counts[1]) * voxel_cm3,
            "trabecular": float(counts[2]) * voxel_cm3,
        },
        "calibration": {"slope": slope, "intercept": intercept, "rods": rods},
        "size_factor": params.size,
        "habitus": params.habitus,
        "femur": asdict(params.femur),
        "pelvis": asdict(params.pelvis),
        "body": asdict(params.body),
        "phantom": asdict(params.phantom),
        "tissues": asdict(params.tissues),
        "scanner": asdict(params.scanner),
        "field_margins": list(params.margins),
        "generator_version": GENERATOR_VERSION,
        "preset_spec": asdict(spec),
        **knee,
    })


# ----------------------------------------------------------------------------- writing
def _nifti_gz_bytes(image: sitk.Image, folder: Path) -> bytes:
    """Deterministic ``.nii.gz`` bytes: uncompressed NIfTI, gzip with mtime 0 and no name."""
    handle, tmp = tempfile.mkstemp(prefix=".synth.", suffix=".tmp.nii", dir=folder)
    os.close(handle)
    try:
        sitk.WriteImage(image, tmp, useCompression=False)
        raw = Path(tmp).read_bytes()
    finally:
        Path(tmp).unlink(missing_ok=True)
    return gzip.compress(raw, compresslevel=6, mtime=0)


def _write_one(args: tuple[Path, int, str | SynthPreset]) -> tuple[str, str, str]:
    out, seed, preset = args
    case = generate_subject(seed, preset)
    sid = case.subject_id
    atomic_write_bytes(out / "images" / f"{sid}.nii.gz", _nifti_gz_bytes(case.image, out / "images"))
    atomic_write_bytes(out / "labels" / f"{sid}.nii.gz", _nifti_gz_bytes(case.label, out / "labels"))
    text = json.dumps(case.meta, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(out / "meta" / f"{sid}.json", text.encode())
    return sid, case.meta["side"], case.meta["group"]


def write_cohort(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int = 0,
    preset: str | SynthPreset = "quick",
    workers: int = 1,
) -> Path:
    """Write ``n`` subjects (seeds ``seed .. seed+n-1``) and their ``manifest.csv``.

    Layout: ``images/<id>.nii.gz``, ``labels/<id>.nii.gz``, ``meta/<id>.json``
    and ``manifest.csv`` (``subject_id,image,label,side,group``, paths relative
    to the manifest's folder). Each file is written to a temporary name and
    renamed when complete; gzip headers carry no time stamp, so the same seeds
    give byte-identical files, with any number of workers.

    Parameters
    ----------
    out_dir
        Output folder (created).
    n
        Number of subjects (>= 1).
    seed
        First seed.
    preset
        Preset name or :class:`SynthPreset`.
    workers
        Processes; 1 generates in this process.

    Returns
    -------
    pathlib.Path
        Path of ``manifest.csv``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    spec = _resolve(preset)
    out = Path(out_dir)
    for sub in ("images", "labels", "meta"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    jobs = [(out, s, spec) for s in range(seed, seed + n)]
    if workers == 1:
        rows = [_write_one(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(_write_one, jobs))
    records = [ManifestRecord(sid, Path(f"images/{sid}.nii.gz"), Path(f"labels/{sid}.nii.gz"), side=side or None,
                              group=group or None) for sid, side, group in rows]
    return write_manifest(out / "manifest.csv", records)
