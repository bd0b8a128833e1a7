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

from femurseg.data.synthetic_body import (
    BodyParams,
    PhantomParams,
    Tissue,
    body_distance,
    fat_thickness,
    phantom_fields,
    sample_body,
    sample_phantom,
    septa,
)
from femurseg.data.synthetic_femur import FemurGeometry, FemurParams, sample_femur
from femurseg.data.synthetic_pelvis import PelvisGeometry, PelvisParams, sample_pelvis
from femurseg.data.synthetic_preset import SynthPreset
from femurseg.data.synthetic_scanner import (
    ScannerParams,
    blur,
    correlated_noise,
    fill_fraction,
    rotation_matrix,
    sample_scanner,
)
from femurseg.data.synthetic_sdf import normalise
from femurseg.data.synthetic_tissues import TissueParams, sample_tissues, trabecular_texture

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
    return SubjectParams(seed, side, size, habitus, femur, pelvis, body, phantom, tissues, scanner, margins)


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
        low = [-(pe.midline_offset - 10.0 - 20.0 * m[2]), -min(b.anterior + 8.0, 80.0 + 25.0 * m[4]),
               lt_z - 35.0 - 15.0 * m[1]]
        high = [max(skin_x, gt_x + 20.0) + 8.0 + 15.0 * m[3], table + 6.0 + 6.0 * m[5],
                r + pe.joint_space + pe.cup_wall + 15.0 + 15.0 * m[0]]
    return np.asarray(low), np.asarray(high)


def _index_box(
    low: np.ndarray, high: np.ndarray, tilt: np.ndarray, origin: np.ndarray, spacing: np.ndarray, size: np.ndarray
) -> tuple[slice, slice, slice]:
    """Voxel slices ``(z, y, x)`` covering a patient-frame box after the tilt."""
    corners = np.array([[a, b, c] for a in (low[0], high[0]) for b in (low[1], high[1]) for c in (low[2], high[2])])
    world = corners @ tilt.T
    lo = np.clip(np.floor((world.min(axis=0) - origin) / spacing).astype(int) - 1, 0, size)
    hi = np.clip(np.ceil((world.max(axis=0) - origin) / spacing).astype(int) + 2, 0, size)
    return slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0])


def _patient_points(
    axes: tuple[np.ndarray, np.ndarray, np.ndarray], tilt: np.ndarray, box: tuple[slice, slice, slice]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patient-frame coordinates of the voxels of ``box`` (full arrays)."""
    x = axes[0][box[2]][None, None, :]
    y = axes[1][box[1]][None, :, None]
    z = axes[2][box[0]][:, None, None]
    m = tilt.T.astype(np.float32)  # world -> patient
    return (m[0, 0] * x + m[0, 1] * y + m[0, 2] * z,
            m[1, 0] * x + m[1, 1] * y + m[1, 2] * z,
            m[2, 0] * x + m[2, 1] * y + m[2, 2] * z)


def _soft_tissue(params: SubjectParams, p: tuple[np.ndarray, ...], ramp: float) -> tuple[np.ndarray, np.ndarray]:
    """HU and tissue code of air, skin, fat and muscle."""
    t, b = params.tissues, params.body
    d = body_distance(p, b, params.pelvis.midline_offset)
    inside = fill_fraction(d, ramp)
    muscle = fill_fraction(d + np.float32(b.skin) + fat_thickness(p, b), ramp)
    fat_plane = septa(p, b)
    muscle = np.where(fat_plane, muscle * np.float32(0.15), muscle)
    skin = inside - fill_fraction(d + np.float32(b.skin), ramp)
    soft = np.float32(t.fat_hu) + np.float32(t.muscle_hu - t.fat_hu) * muscle
    soft = soft + (np.float32(t.skin_hu) - soft) * skin
    hu = np.float32(t.air_hu) + (soft - np.float32(t.air_hu)) * inside
    code = np.where(d < 0, np.uint8(Tissue.FAT), np.uint8(Tissue.AIR))
    code = np.where((muscle > 0.5) & (d < 0), np.uint8(Tissue.MUSCLE), code)
    code = np.where((skin > 0.5) & (d < 0), np.uint8(Tissue.SKIN), code)
    return hu.astype(np.float32), code


def render(params: SubjectParams, preset: SynthPreset) -> Rendered:
    """Render the subject as a left hip.

    Returns
    -------
    Rendered
        HU before quantisation (float32), label (uint8 0/1/2), tissue codes
        (:class:`~femurseg.data.synthetic_body.Tissue`), grid and rod centres.
    """
    sc, t = params.scanner, params.tissues
    femur = FemurGeometry(params.femur)
    low, high = _field(params, femur, preset)
    spacing = np.asarray(sc.spacing)
    size = np.maximum(np.ceil((high - low) / spacing).astype(int), 8)
    origin = low
    axes = tuple((origin[i] + spacing[i] * np.arange(size[i])).astype(np.float32) for i in range(3))
    tilt = rotation_matrix(sc.tilt)
    min_cortex = preset.min_cortex_voxels * float(spacing.max())
    femur = FemurGeometry(params.femur, min_cortex=min_cortex)
    ramp = float(spacing[:2].mean())
    full = (slice(None),) * 3
    pts = _patient_points(axes, tilt, full)  # type: ignore[arg-type]
    hu, tissue = _soft_tissue(params, pts, ramp)
    del pts

    # Calibration phantom and table: fixed to the scanner, constant along z.
    world2d = (axes[0][None, :], axes[1][:, None], np.float32(0.0))
    block, rod_index, table, rods = phantom_fields(world2d, params.phantom, params.body.posterior)
    slope_true, intercept_true = sc.slope, sc.intercept
    layer = np.where(block, np.float32(t.phantom_hu), np.float32(np.nan))
    for i, rho in enumerate((0.0, 50.0, 100.0, 200.0)):
        layer = np.where(rod_index == i, np.float32(intercept_true + slope_true * rho), layer)
    layer = np.where(table == 1, np.float32(t.table_shell_hu), layer)
    layer = np.where(table == 2, np.float32(t.table_core_hu), layer)
    painted = ~np.isnan(layer)
    hu[:, painted] = layer[painted]
    code2d = np.where(rod_index >= 0, Tissue.ROD, np.where(block, Tissue.PHANTOM, Tissue.TABLE)).astype(np.uint8)
    tissue[:, painted] = code2d[painted]

    rng_tex = np.random.default_rng([params.seed, 1])
    label = np.zeros(tuple(size[::-1]), dtype=np.uint8)
    _render_pelvis(params, axes, tilt, origin, spacing, size, hu, tissue, ramp, rng_tex)
    _render_femur(params, femur, axes, tilt, origin, spacing, size, hu, tissue, label, ramp, rng_tex)

    rng_noise = np.random.default_rng([params.seed, 2])
    hu = blur(hu, sc.spacing, sc.psf_fwhm)
    hu += correlated_noise(rng_noise, hu.shape, sc.noise_sd, sc.noise_grain)
    hu = np.float32(sc.gain) * hu + np.float32(sc.offset)
    return Rendered(hu, label, tissue, tuple(float(o) for o in origin), sc.spacing, rods)  # type: ignore[arg-type]


def _bone_hu(t: TissueParams, sc: ScannerParams, cortical: float) -> np.float32:
    return np.float32(sc.intercept + sc.slope * cortical)


def _render_pelvis(params: SubjectParams, axes, tilt, origin, spacing, size, hu, tissue, ramp, rng) -> None:  # type: ignore[no-untyped-def]
    t, sc = params.tissues, params.scanner
    pelvis = PelvisGeometry(params.pelvis, params.femur.head_radius)
    box = _index_box(*pelvis.bounds(), tilt, origin, spacing, size)
    q = _patient_points(axes, tilt, box)
    d, width = normalise(pelvis.periosteal(q), tuple(spacing))
    outer = fill_fraction(d, width)
    inner = fill_fraction(d + np.float32(params.pelvis.cortex), width)
    tex = trabecular_texture(rng, outer.shape, tuple(spacing), t.texture_scale * 1.2, (1.0, 1.0, 1.0))
    trab = np.float32(t.marrow_hu) + np.float32(sc.slope * t.pelvis_density) * (1.0 + np.float32(t.texture_amplitude) * tex)
    bone = _bone_hu(t, sc, t.cortical_density) + (trab - _bone_hu(t, sc, t.cortical_density)) * inner
    region = hu[box]
    hu[box] = region + (bone - region) * outer
    tissue[box] = np.where(d < 0, np.uint8(Tissue.PELVIS), tissue[box])


def _render_femur(params: SubjectParams, femur: FemurGeometry, axes, tilt, origin, spacing, size, hu, tissue,  # type: ignore[no-untyped-def]
                  label, ramp, rng) -> None:
    t, sc = params.tissues, params.scanner
    box = _index_box(*femur.bounds(float(axes[2][0]) - 20.0), tilt, origin, spacing, size)
    q = femur.to_femur(_patient_points(axes, tilt, box))
    d, width = normalise(femur.periosteal(q), tuple(spacing))
    cortex = femur.cortex(q)
    d_endo = d + cortex
    outer = fill_fraction(d, width)
    inner = fill_fraction(d_endo, width)
    tex = trabecular_texture(rng, outer.shape, tuple(spacing), t.texture_scale)
    marrow = femur.marrow(q)
    rho = np.float32(t.trabecular_density) * femur.density(q) * (1.0 + np.float32(t.texture_amplitude) * tex * (1.0 - marrow))
    base = np.float32(t.marrow_hu) + (np.float32(t.canal_hu - t.marrow_hu)) * marrow
    trab = base + np.float32(sc.slope) * np.maximum(rho, 0.0)
    cort = _bone_hu(t, sc, t.cortical_density)
    bone = cort + (trab - cort) * inner
    region = hu[box]
    hu[box] = region + (bone - region) * outer
    periosteal = d < 0
    endosteal = d_endo < 0
    if femur.min_cortex > 0:
        # Coarse presets promise a cortex at least one voxel thick: keep the
        # endosteal region one voxel (6-connected) inside the periosteal one.
        endosteal &= ndimage.binary_erosion(periosteal, border_value=1)
    lab = np.where(endosteal, np.uint8(2), np.where(periosteal, np.uint8(1), np.uint8(0)))
    label[box] = lab
    code = np.where(lab == 1, np.uint8(Tissue.CORTICAL),
                    np.where(marrow > 0.5, np.uint8(Tissue.MARROW), np.uint8(Tissue.TRABECULAR)))
    tissue[box] = np.where(lab > 0, code, tissue[box])
