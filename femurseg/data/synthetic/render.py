"""Sampling and rendering of one synthetic hip CT subject.

:func:`sample_subject` draws every parameter from one seeded generator in a
fixed order; :func:`render` turns the parameters into an HU volume, the exact
0/1/2 label and a tissue map on the scan grid. The scene is built for a left
hip (patient's left is ``+x``); a right hip is its exact mirror image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from femurseg.data.synthetic.body import (
    ROD_DENSITIES,
    BodyParams,
    Leg,
    PhantomParams,
    Tissue,
    phantom_fields,
    sample_body,
    sample_phantom,
    soft_tissue,
)
from femurseg.data.synthetic.grid import Box, Grid, banded
from femurseg.data.synthetic.femur import FemurGeometry, FemurParams, sample_femur
from femurseg.data.synthetic.knee import KneeParams, sample_knee
from femurseg.data.synthetic.pelvis import PelvisGeometry, PelvisParams, sample_pelvis
from femurseg.data.synthetic.preset import SynthPreset
from femurseg.data.synthetic.scanner import (
    ScannerParams,
    blur,
    correlated_noise,
    fill_fraction,
    rotation_matrix,
    sample_scanner,
)
from femurseg.data.synthetic.tissues import TissueParams, sample_tissues, trabecular_texture

__all__ = ["SubjectParams", "Rendered", "sample_subject", "render"]


@dataclass(frozen=True)
class SubjectParams:
    """Every sampled parameter of one subject."""

    seed: int
    side: str
    size: float
    habitus: float
    femur: FemurParams
    pelvis: PelvisParams
    body: BodyParams
    phantom: PhantomParams
    tissues: TissueParams
    scanner: ScannerParams
    margins: tuple[float, ...]
    knee: KneeParams | None = None


@dataclass
class Rendered:
    """Arrays ``(Z, Y, X)`` of a rendered left hip and their grid."""

    hu: np.ndarray
    label: np.ndarray
    tissue: np.ndarray
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    rods: list[tuple[float, float]]


def sample_subject(seed: int, preset: SynthPreset) -> SubjectParams:
    """Draw all parameters of subject ``seed`` in a fixed order."""
    rng = np.random.default_rng(seed)
    side = "left" if rng.random() < 0.5 else "right"
    size = float(rng.uniform())
    habitus = float(rng.beta(2.0, 2.5))
    femur = sample_femur(rng, size)
    pelvis = sample_pelvis(rng, femur.head_radius)
    body = sample_body(rng, habitus, pelvis.midline_offset)
    phantom = sample_phantom(rng)
    tissues = sample_tissues(rng)
    scanner = sample_scanner(rng, preset.inplane, preset.slices, preset.noise)
    margins = tuple(float(m) for m in rng.uniform(size=6))
    # its own stream, so presets without a knee keep their bytes
    knee = (sample_knee(np.random.default_rng([seed, 4]), size, body.fat, preset.knee_anatomy)
            if preset.knee > 0 else None)
    return SubjectParams(seed, side, size, habitus, femur, pelvis, body, phantom, tissues, scanner, margins, knee)


def _field(params: SubjectParams, femur: FemurGeometry, preset: SynthPreset) -> tuple[np.ndarray, np.ndarray]:
    """Patient-frame box ``(low, high)`` of the field of view."""
    f, pe, b, m = params.femur, params.pelvis, params.body, params.margins
    r = f.head_radius
    lt_z = float((femur.pose @ femur.lt_centre)[2])
    gt_x = float((femur.pose @ femur.gt_centre)[0]) + 11.0
    if preset.field == "hip":
        low = [-(r + 36.0 + 10.0 * m[2]), -(r + 32.0 + 10.0 * m[4]), lt_z - 20.0 - 10.0 * m[1]]
        high = [gt_x + 14.0 + 10.0 * m[3], r + 40.0 + 10.0 * m[5], r + 16.0 + 8.0 * m[0]]
    else:
        skin_x = b.half_width - pe.midline_offset
        table = b.posterior + params.phantom.thickness + params.phantom.table_gap + params.phantom.table_thickness
        below_lo, below_hi = preset.shaft_below
        low = [-(pe.midline_offset - 10.0 - 20.0 * m[2]), -min(b.anterior + 8.0, 80.0 + 25.0 * m[4]),
               lt_z - below_lo - (below_hi - below_lo) * m[1]]
        high = [max(skin_x, gt_x + 20.0) + 8.0 + 15.0 * m[3], table + 6.0 + 6.0 * m[5],
                r + pe.joint_space + pe.cup_wall + 15.0 + 15.0 * m[0]]
        knee_view = femur.knee is not None and np.random.default_rng([params.seed, 5]).random() < preset.knee
        if knee_view:
            low, high = _knee_field(params, femur, table)
        elif preset.thigh_only > 0.0:
            # its own stream, so presets without thigh scans keep their bytes
            extra = np.random.default_rng([params.seed, 3])
            if extra.random() < preset.thigh_only:
                top = lt_z - float(extra.uniform(-10.0, 220.0))
                low[2], high[2] = top - float(extra.uniform(90.0, 160.0)), top
    return np.asarray(low), np.asarray(high)


def _knee_field(params: SubjectParams, femur: FemurGeometry, table: float) -> tuple[list[float], list[float]]:
    """Patient-frame box of a knee-level field of view: the leg from below the joint to the metaphysis."""
    assert femur.knee is not None and params.knee is not None
    rng = np.random.default_rng([params.seed, 6])
    k = femur.pose @ femur.knee.centre
    r = params.knee.leg_radius
    low = [k[0] - r - float(rng.uniform(5.0, 40.0)), k[1] - r - float(rng.uniform(5.0, 30.0)),
           k[2] - float(rng.uniform(0.0, 70.0))]
    high = [k[0] + r + float(rng.uniform(5.0, 40.0)), max(table, k[1] + r) + 6.0 + 6.0 * params.margins[5],
            k[2] + float(rng.uniform(70.0, 180.0))]
    return low, high


def _leg(params: SubjectParams, femur: FemurGeometry) -> Leg | None:
    """Where the thigh narrows to the knee (patient frame), or None without a knee.

    The leg is centred on the knee and reaches back to the table it rests on
    (at most 30 % deeper than wide: a knee raised further lies on a cushion).
    """
    if femur.knee is None or params.knee is None:
        return None
    k = femur.pose @ femur.knee.centre
    r = params.knee.leg_radius
    front = float(k[1]) - 5.0 - r
    back = float(np.clip(params.body.posterior, front + 2.0 * r, front + 2.6 * r))
    return Leg(float(k[0]), 0.5 * (front + back), float(k[2]), r, 0.5 * (back - front))


def _grid(params: SubjectParams, femur: FemurGeometry, preset: SynthPreset) -> Grid:
    low, high = _field(params, femur, preset)
    spacing = np.asarray(params.scanner.spacing, dtype=np.float64)
    size = np.maximum(np.ceil((high - low) / spacing).astype(int), 8)
    return Grid(origin=low, spacing=spacing, size=size, tilt=rotation_matrix(params.scanner.tilt))


def _soft_tissue(params: SubjectParams, grid: Grid, ramp: float, leg: Leg | None) -> tuple[np.ndarray, np.ndarray]:
    """Soft tissues, rendered every ~4 mm in z and interpolated linearly between."""
    nz = grid.shape[0]
    step = max(1, int(round(4.0 / grid.spacing[2])))
    keys = np.arange(0, nz + step - 1, step)
    keys = np.minimum(keys, nz - 1) if keys[-1] >= nz else keys
    keys = np.unique(np.append(np.minimum(keys, nz - 1), nz - 1))
    box = (slice(0, nz), slice(0, grid.shape[1]), slice(0, grid.shape[2]))
    x, y, z = grid.points(grid.tilt.T, box)
    x, y, z = (np.broadcast_to(c, grid.shape)[keys] for c in (x, y, z))
    hu_k, code_k = soft_tissue((x, y, z), params.body, params.tissues, params.pelvis.midline_offset,
                               params.femur.head_radius, ramp, leg)
    pos = np.interp(np.arange(nz), keys, np.arange(len(keys))).astype(np.float32)
    lo = np.minimum(np.floor(pos).astype(int), len(keys) - 1)
    hi = np.minimum(lo + 1, len(keys) - 1)
    w = (pos - lo)[:, None, None]
    hu = hu_k[lo] * (1.0 - w) + hu_k[hi] * w
    code = code_k[np.where(w[:, 0, 0] < 0.5, lo, hi)]
    return hu.astype(np.float32), code


def render(params: SubjectParams, preset: SynthPreset) -> Rendered:
    """Render the subject as a left hip.

    Returns
    -------
    Rendered
        HU before quantisation (float32), label (uint8 0/1/2), tissue codes
        (:class:`~femurseg.data.synthetic.body.Tissue`), grid and rod centres.
    """
    sc, t = params.scanner, params.tissues
    min_cortex = preset.min_cortex_voxels * float(max(sc.spacing))
    femur = FemurGeometry(params.femur, min_cortex=min_cortex, knee=params.knee)
    grid = _grid(params, femur, preset)
    ramp = float(grid.spacing[:2].mean())
    hu, tissue = _soft_tissue(params, grid, ramp, _leg(params, femur))
    rods = _paint_phantom(params, grid, hu, tissue)
    rng_tex = np.random.default_rng([params.seed, 1])
    label = np.zeros(grid.shape, dtype=np.uint8)
    _render_pelvis(params, grid, hu, tissue, rng_tex)
    if femur.knee is not None:
        _render_knee_bones(params, femur, grid, hu, tissue, np.random.default_rng([params.seed, 7]))
    _render_femur(params, femur, grid, hu, tissue, label, rng_tex)
    rng_noise = np.random.default_rng([params.seed, 2])
    hu = blur(hu, sc.spacing, sc.psf_fwhm)
    hu += correlated_noise(rng_noise, hu.shape, sc.noise_sd, sc.noise_grain)
    hu = np.float32(sc.gain) * hu + np.float32(sc.offset)
    origin = tuple(float(o) for o in grid.origin)
    return Rendered(hu, label, tissue, origin, sc.spacing, rods)  # type: ignore[arg-type]


def _paint_phantom(params: SubjectParams, grid: Grid, hu: np.ndarray, tissue: np.ndarray) -> list[tuple[float, float]]:
    """Calibration phantom and table: fixed to the scanner, constant along z."""
    t, sc = params.tissues, params.scanner
    world2d = (grid.axis(0)[None, :], grid.axis(1)[:, None], np.float32(0.0))
    block, rod_index, table, rods = phantom_fields(world2d, params.phantom, params.body.posterior)
    layer = np.where(block, np.float32(t.phantom_hu), np.float32(np.nan))
    for i, rho in enumerate(ROD_DENSITIES):
        layer = np.where(rod_index == i, np.float32(sc.intercept + sc.slope * rho), layer)
    layer = np.where(table == 1, np.float32(t.table_shell_hu), layer)
    layer = np.where(table == 2, np.float32(t.table_core_hu), layer)
    painted = ~np.isnan(layer)
    hu[:, painted] = layer[painted]
    code = np.where(rod_index >= 0, Tissue.ROD, np.where(block, Tissue.PHANTOM, Tissue.TABLE)).astype(np.uint8)
    tissue[:, painted] = code[painted]
    return rods


def _box_index(box: Box, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole-grid index arrays ``(k, j, i)`` of flat indices into ``box``."""
    shape = tuple(sl.stop - sl.start for sl in box)
    k, j, i = np.unravel_index(flat, shape)
    return k + box[0].start, j + box[1].start, i + box[2].start


def _composite(hu: np.ndarray, box: Box, flat: np.ndarray, outer: np.ndarray, bone: np.ndarray) -> None:
    """Blend ``bone`` HU into ``hu`` at flat box indices with fill fraction ``outer``."""
    index = _box_index(box, flat)
    values = hu[index]
    hu[index] = values + (bone - values) * outer


def _render_pelvis(params: SubjectParams, grid: Grid, hu: np.ndarray, tissue: np.ndarray,
                   rng: np.random.Generator) -> None:
    t, sc = params.tissues, params.scanner
    pelvis = PelvisGeometry(params.pelvis, params.femur.head_radius)
    box = grid.box(*pelvis.bounds())
    frame = grid.tilt.T
    d, band, width = banded(pelvis.periosteal, grid, frame, box, band=6.0)
    flat = np.flatnonzero(d < 2.0 * float(grid.spacing.max()))
    q = grid.points(frame, box, flat)
    dd = d.ravel()[flat]
    w = _width_at(flat, band, width, float(grid.spacing.mean()))
    outer = fill_fraction(dd, w)
    inner = fill_fraction(dd + pelvis.cortex(q), w)
    tex = trabecular_texture(rng, d.shape, tuple(grid.spacing), t.texture_scale * 1.2, (1.0, 1.0, 1.0)).ravel()[flat]
    cort = np.float32(sc.intercept + sc.slope * t.cortical_density * 0.95)
    trab = np.float32(t.marrow_hu) + np.float32(sc.slope * t.pelvis_density) * (1.0 + np.float32(t.texture_amplitude) * tex)
    _composite(hu, box, flat, outer, cort + (trab - cort) * inner)
    tissue[_box_index(box, flat[dd < 0])] = Tissue.PELVIS


def _render_knee_bones(params: SubjectParams, femur: FemurGeometry, grid: Grid, hu: np.ndarray, tissue: np.ndarray,
                       rng: np.random.Generator) -> None:
    """Patella, tibia and fibula: cortex and cancellous bone like the femur's, labelled background."""
    knee, t, sc = femur.knee, params.tissues, params.scanner
    assert knee is not None
    corners = knee.bone_corners() @ femur.pose.T
    box = grid.box(corners.min(axis=0) - 6.0, corners.max(axis=0) + 6.0)
    if any(sl.stop <= sl.start for sl in box):
        return
    frame = femur.frame(grid.tilt)
    d, band, width = banded(knee.other_bones, grid, frame, box, band=6.0)
    flat = np.flatnonzero(d < 2.0 * float(grid.spacing.max()))
    if flat.size == 0:
        return
    dd = d.ravel()[flat]
    w = _width_at(flat, band, width, float(grid.spacing.mean()))
    outer = fill_fraction(dd, w)
    inner = fill_fraction(dd + np.float32(knee.p.cortex + 0.3), w)
    tex = trabecular_texture(rng, d.shape, tuple(grid.spacing), t.texture_scale, (1.0, 1.0, 1.0)).ravel()[flat]
    cort = np.float32(sc.intercept + sc.slope * t.cortical_density * 0.95)
    rho = np.float32(t.trabecular_density * knee.p.bone_density)
    trab = np.float32(t.marrow_hu) + np.float32(sc.slope) * rho * (1.0 + np.float32(t.texture_amplitude) * tex)
    _composite(hu, box, flat, outer, cort + (trab - cort) * inner)
    tissue[_box_index(box, flat[dd < 0])] = Tissue.BONE


def _width_at(flat: np.ndarray, band: np.ndarray, width: np.ndarray, default: float) -> np.ndarray:
    """Normal widths at ``flat`` (sorted), taken from the band where available."""
    pos = np.searchsorted(band, flat)
    pos = np.minimum(pos, len(band) - 1)
    found = band[pos] == flat if len(band) else np.zeros(len(flat), bool)
    return np.where(found, width[pos] if len(band) else np.float32(default), np.float32(default))


def _render_femur(params: SubjectParams, femur: FemurGeometry, grid: Grid, hu: np.ndarray, tissue: np.ndarray,
                  label: np.ndarray, rng: np.random.Generator) -> None:
    t, sc = params.tissues, params.scanner
    box = grid.box(*femur.bounds(float(grid.origin[2]) - 20.0))
    frame = femur.frame(grid.tilt)
    band_mm = max(params.femur.cortex_shaft, femur.min_cortex) + 3.0 * float(grid.spacing.max())
    d, band, width = banded(femur.periosteal, grid, frame, box, band=band_mm)
    flat = np.flatnonzero(d < 2.0 * float(grid.spacing.max()))
    q = grid.points(frame, box, flat)
    dd = d.ravel()[flat]
    f = femur.fields(q)
    w = _width_at(flat, band, width, float(grid.spacing.mean()))
    d_endo = dd + f["cortex"]
    outer = fill_fraction(dd, w)
    inner = fill_fraction(d_endo, w)
    tex = trabecular_texture(rng, d.shape, tuple(grid.spacing), t.texture_scale).ravel()[flat]
    marrow = f["marrow"]
    rho = np.float32(t.trabecular_density) * f["density"] * (1.0 + np.float32(t.texture_amplitude) * tex * (1.0 - marrow))
    base = np.float32(t.marrow_hu) + np.float32(t.canal_hu - t.marrow_hu) * marrow
    trab = base + np.float32(sc.slope) * np.maximum(rho, 0.0)
    cort = np.float32(sc.intercept + sc.slope * t.cortical_density)
    _composite(hu, box, flat, outer, cort + (trab - cort) * inner)
    periosteal = np.zeros(d.shape, dtype=bool)
    periosteal.ravel()[flat[dd < 0]] = True
    endosteal = np.zeros(d.shape, dtype=bool)
    endosteal.ravel()[flat[d_endo < 0]] = True
    if femur.min_cortex > 0:
        # Coarse presets promise a cortex at least one voxel thick: keep the
        # endosteal region one voxel (6-connected) inside the periosteal one.
        endosteal &= ndimage.binary_erosion(periosteal, border_value=1)
    lab = np.where(endosteal, np.uint8(2), np.where(periosteal, np.uint8(1), np.uint8(0)))
    label[box] = lab
    is_marrow = np.zeros(d.shape, dtype=bool)
    is_marrow.ravel()[flat[marrow > 0.9]] = True
    code = np.where(lab == 1, np.uint8(Tissue.CORTICAL),
                    np.where(is_marrow, np.uint8(Tissue.MARROW), np.uint8(Tissue.TRABECULAR)))
    tissue[box] = np.where(lab > 0, code, tissue[box])
