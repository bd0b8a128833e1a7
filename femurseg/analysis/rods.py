"""Finding and measuring the rods of an in-scan calibration phantom.

A calibration phantom lies under the patient and is fixed to the scanner: its rods
are cylinders along the scan's z axis, in one row, evenly spaced, inside a
water-equivalent block. Everything that moves with z (the patient) blurs when the
slices are averaged, while the phantom stays sharp and its voxels vary along z by
noise only. The search works on two 2D maps of the whole scan:

- ``mean``: the average of the slices (the phantom, sharp, with noise divided by
  about the square root of the number of slices);
- ``zsd``: each pixel's standard deviation along z (noise only where the scan is
  constant along z: the phantom, the table, air).

1. **Static material**: pixels with ``zsd`` below 1.5 times the noise level (the
   5th percentile of ``zsd`` in water-like pixels) and a mean in -250..1500 HU.
2. **Candidates**: at each trial radius ``r``, the mean over a disc of radius
   ``0.7 r`` minus the mean over the static pixels of a ring ``1.15-1.45 r``; local
   extrema of this contrast whose disc is static and uniform are candidates.
3. **Row**: the largest set of candidates on one line at integer multiples of one
   pitch (consensus over candidate pairs); rods of too little contrast to be seen
   (a 0 mg/cm³ rod in a water-equivalent block) are placed at the row's free
   positions, on static material, and flagged ``inferred``.
4. **Measurement**: the mean and SD of HU over each rod's core (radius ``r`` less
   1.5 voxels, at least half of ``r``) in every slice but the two at each end.

Errors (:class:`~femurseg.errors.CalibrationError`) say what failed: no row of
rods, fewer rods than the definition has, or a rod cut by the edge of the field
of view.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import combinations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, signal

from femurseg.analysis.phantoms import PhantomDefinition
from femurseg.errors import CalibrationError

__all__ = ["Rod", "RodRow", "find_rods", "slice_statistics", "match_densities"]

_DEFAULT_RADII = (4.0, 6.0, 8.0, 10.0, 12.0)
_STATIC_RANGE = (-250.0, 1500.0)


@dataclass
class Rod:
    """One measured rod (physical LPS millimetres, HU)."""

    position: int
    centre_mm: tuple[float, float]
    radius_mm: float
    core_radius_mm: float
    mean_hu: float
    sd_hu: float
    n_voxels: int
    contrast_hu: float
    inferred: bool
    density_mg_cm3: float | None = None
    water_mg_cm3: float | None = None

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["centre_mm"] = [round(float(c), 3) for c in self.centre_mm]
        for key in ("radius_mm", "core_radius_mm", "mean_hu", "sd_hu", "contrast_hu"):
            out[key] = round(float(out[key]), 3)
        return out


@dataclass
class RodRow:
    """The rods found, in their order along the row, and the search's by-products."""

    rods: list[Rod]
    pitch_mm: float
    block_hu: float
    noise_hu: float
    slices: tuple[int, int]
    centres_index: list[tuple[float, float]]
    n_expected: int
    warnings: list[str]


def slice_statistics(array: np.ndarray, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation along z of a ``(Z, Y, X)`` array, slice by slice (float64 sums)."""
    stop = array.shape[0] if stop is None else stop
    total = np.zeros(array.shape[1:], np.float64)
    squares = np.zeros(array.shape[1:], np.float64)
    for k in range(start, stop):
        plane = array[k].astype(np.float64)
        total += plane
        squares += plane * plane
    n = max(stop - start, 1)
    mean = total / n
    return mean.astype(np.float32), np.sqrt(np.maximum(squares / n - mean * mean, 0.0)).astype(np.float32)


def _kernel(inner_mm: float, outer_mm: float, spacing: tuple[float, float]) -> np.ndarray:
    sx, sy = spacing
    ry, rx = int(np.ceil(outer_mm / sy)), int(np.ceil(outer_mm / sx))
    yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    d = np.hypot(yy * sy, xx * sx)
    return ((d >= inner_mm) & (d <= outer_mm)).astype(np.float32)


def _conv(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return signal.fftconvolve(image, kernel[::-1, ::-1], mode="same")


@dataclass
class _Maps:
    mean: np.ndarray
    static: np.ndarray
    noise: float
    noise_mean: float


def _candidates(maps: _Maps, radius: float,
                spacing: tuple[float, float]) -> tuple[list[tuple[float, float, float]], np.ndarray]:
    """Local contrast extrema ``(row, col, contrast)`` of rods of ``radius`` mm, and the contrast map."""
    m, s = maps.mean, maps.static.astype(np.float32)
    disc = _kernel(0.0, 0.7 * radius, spacing)
    ring = _kernel(1.15 * radius, 1.45 * radius, spacing)
    nd, nr = float(disc.sum()), float(ring.sum())
    disc_static = _conv(s, disc) / nd
    ring_static = _conv(s, ring) / nr
    disc_mean = _conv(m, disc) / nd
    disc_var = _conv(m * m, disc) / nd - disc_mean ** 2
    ring_weight = np.maximum(_conv(s, ring), 1e-3)
    ring_mean = _conv(m * s, ring) / ring_weight
    ring_var = _conv(m * m * s, ring) / ring_weight - ring_mean ** 2
    contrast = disc_mean - ring_mean
    limit = (4.0 * maps.noise_mean + 4.0) ** 2
    uniform = (disc_var < limit) & (ring_var < limit)
    ok = (disc_static > 0.98) & (ring_static > 0.75) & uniform
    strength = np.where(ok, np.abs(contrast), 0.0)
    size = (max(3, int(1.5 * radius / spacing[1])) | 1, max(3, int(1.5 * radius / spacing[0])) | 1)
    peaks = (strength == ndimage.maximum_filter(strength, size=size)) & (strength > 6.0 * maps.noise_mean + 3.0)
    rows, cols = np.nonzero(peaks)
    order = np.argsort(-strength[rows, cols])[:40]
    return [(float(rows[i]), float(cols[i]), float(contrast[rows[i], cols[i]])) for i in order], contrast


def _best_row(points: np.ndarray, weights: np.ndarray, n_rods: int,
              radius: float) -> tuple[list[int], list[int], np.ndarray, float]:
    """Consensus row: indices of the inlier candidates, their slots, origin and step (mm).

    The row with the most candidates wins, ties going to the larger sum of ``weights``
    (the candidates' absolute contrast).
    """
    best: tuple[int, float, list[int], list[int], np.ndarray, np.ndarray] | None = None
    tolerance = max(0.35 * radius, 1.5)
    for i, j in combinations(range(len(points)), 2):
        delta = points[j] - points[i]
        distance = float(np.hypot(*delta))
        for k in range(1, n_rods):
            pitch = distance / k
            if pitch < 2.8 * radius:  # rods at least about one diameter apart
                break
            step = delta / k
            rel = points - points[i]
            t = rel @ step / (pitch * pitch)
            slots = np.rint(t).astype(int)
            error = np.hypot(*(rel - slots[:, None] * step[None, :]).T)
            inliers = [int(q) for q in np.flatnonzero(error < tolerance)]
            used: dict[int, int] = {}
            for q in sorted(inliers, key=lambda q: error[q]):
                used.setdefault(int(slots[q]), q)
            members = sorted(used.values(), key=lambda q: slots[q])
            span = int(slots[members[-1]] - slots[members[0]]) + 1
            if span > n_rods:
                continue
            # most rods first, then the most contrast; on a tie (two rods seen) the denser row,
            # because pitch / k is tried in increasing k
            score = (len(members), float(np.sum(weights[members])))
            if best is None or score >= (best[0], best[1]):
                best = (score[0], score[1], members, [int(slots[q]) for q in members], points[i], step)
    if best is None:
        return [], [], np.zeros(2), 0.0
    members, slots, origin, step = best[2], best[3], best[4], best[5]
    # refine origin and step by least squares over the inliers
    design = np.column_stack([np.ones(len(slots)), slots])
    coef, *_ = np.linalg.lstsq(design, points[members], rcond=None)
    return members, slots, coef, float(np.hypot(*coef[1]))


def find_rods(image: sitk.Image, definition: PhantomDefinition, min_seen: int = 2) -> RodRow:
    """Find the row of rods of ``definition`` in ``image`` and measure them.

    Parameters
    ----------
    image
        The scan in HU (any 3D grid whose third axis is the scan's z).
    definition
        How many rods to find and their nominal radius.
    min_seen
        Rods that must stand out from the block (the others may be inferred from the
        row's pitch); at least 2.

    Returns
    -------
    RodRow
        Rods in row order, not yet matched to densities. Rods cut by the edge of the
        field of view are left out (and named in ``warnings``) as long as 3 remain.

    Raises
    ------
    CalibrationError
        No phantom, fewer rods than the definition, or too many rods cut by the field
        of view.
    """
    array = sitk.GetArrayViewFromImage(image)
    if array.ndim != 3 or array.shape[0] < 3:
        raise CalibrationError(f"rods not found: a phantom search needs a 3D scan of at least 3 slices, "
                               f"got shape {array.shape}")
    nz = array.shape[0]
    trim = 2 if nz > 8 else 0
    start, stop = trim, nz - trim
    mean, zsd = slice_statistics(array, start, stop)
    spacing = (float(image.GetSpacing()[0]), float(image.GetSpacing()[1]))
    water = (mean > -200) & (mean < 400)
    # the 5th percentile of the z-SD over water-like pixels, scaled to the noise SD (a sample
    # SD over n slices spreads by about 1 / sqrt(2 (n - 1)) around it)
    spread = 1.0 / np.sqrt(2.0 * max(stop - start - 1, 1))
    low = float(np.percentile(zsd[water], 5)) if water.sum() > 100 else float(np.median(zsd))
    noise = max(low / max(1.0 - 1.645 * spread, 0.3), 0.5)
    static = (zsd < noise * max(1.5, 1.0 + 3.5 * spread)) & (mean > _STATIC_RANGE[0]) & (mean < _STATIC_RANGE[1])
    # opening drops isolated pixels; erosion drops the partial-volume rim of the block
    static = ndimage.binary_erosion(ndimage.binary_opening(static, iterations=1), iterations=1)
    maps = _Maps(mean, static, noise, noise / np.sqrt(stop - start))
    nominal = definition.rod_radius_mm
    radii = (0.85 * nominal, nominal, 1.15 * nominal) if nominal else _DEFAULT_RADII
    best: tuple[int, float] | None = None
    chosen = None
    for radius in radii:
        cands, contrast = _candidates(maps, radius, spacing)
        if len(cands) < 2:
            continue
        points = np.array([[c[1] * spacing[0], c[0] * spacing[1]] for c in cands])  # (x, y) mm in the slice
        weights = np.abs([c[2] for c in cands])
        members, slots, _, _ = _best_row(points, weights, definition.n_rods, radius)
        if len(members) < 2:
            continue
        score = (len(members), float(weights[members].sum()))
        if best is None or score > best:
            best, chosen = score, (radius, points[members], slots, contrast)
    if chosen is None or best is None or best[0] < max(min_seen, 2):
        seen = 0 if best is None else best[0]
        raise CalibrationError(f"rods not found: no row of {definition.n_rods} evenly spaced rods in a static block "
                               f"under the patient (best row: {seen} rod(s) standing out from the block)")
    radius, points, slots, contrast = chosen
    refined = [_refine(maps.mean, point, radius, spacing) for point in points]
    centres = np.array([c for c, _ in refined])
    radius = float(np.median([r for _, r in refined]))
    design = np.column_stack([np.ones(len(slots)), slots])
    coef, *_ = np.linalg.lstsq(design, centres, rcond=None)
    return _complete_row(array, image, definition, maps, radius, slots, coef, contrast, spacing, (start, stop))


def _refine(mean: np.ndarray, point: np.ndarray, radius: float,
            spacing: tuple[float, float]) -> tuple[np.ndarray, float]:
    """Centre (x, y mm) and radius of a seen rod: centroid and area of its half-contrast disc."""
    ny, nx = mean.shape
    centre, estimate = np.asarray(point, float), float(radius)
    for _ in range(3):
        col, row = centre[0] / spacing[0], centre[1] / spacing[1]
        reach = 1.6 * radius
        r0, r1 = max(int(row - reach / spacing[1]), 0), min(int(row + reach / spacing[1]) + 2, ny)
        c0, c1 = max(int(col - reach / spacing[0]), 0), min(int(col + reach / spacing[0]) + 2, nx)
        yy, xx = np.mgrid[r0:r1, c0:c1]
        d = np.hypot(xx * spacing[0] - centre[0], yy * spacing[1] - centre[1])
        values = mean[r0:r1, c0:c1]
        inner = float(values[d < 0.5 * estimate].mean())
        ring = (d > 1.2 * radius) & (d < 1.55 * radius)
        outer = float(np.median(values[ring])) if ring.any() else inner
        if abs(inner - outer) < 5.0:
            break
        frac = (values - outer) / (inner - outer)
        disc = (frac > 0.5) & (d < 1.3 * max(radius, estimate))
        if disc.sum() < 5:
            break
        weight = np.clip(frac, 0.0, 1.0) * (d < 1.3 * max(radius, estimate))
        centre = np.array([(xx * spacing[0] * weight).sum(), (yy * spacing[1] * weight).sum()]) / weight.sum()
        estimate = float(np.sqrt(weight.sum() * spacing[0] * spacing[1] / np.pi))
    return centre, estimate


def _complete_row(array: np.ndarray, image: sitk.Image, definition: PhantomDefinition, maps: _Maps, radius: float,
                  slots: list[int], coef: np.ndarray, contrast: np.ndarray, spacing: tuple[float, float],
                  zrange: tuple[int, int]) -> RodRow:
    """Place the unseen rods at the row's free positions, drop those cut by the image edge, measure."""
    n = definition.n_rods
    seen = set(slots)
    low, high = min(slots), max(slots)
    free = n - (high - low + 1)
    ny, nx = maps.mean.shape
    pitch = float(np.hypot(*coef[1]))
    core = max(0.4 * radius, min(0.65 * radius, radius - 1.5 * max(spacing) - 0.5))

    def centre(slot: int) -> np.ndarray:
        return coef[0] + slot * coef[1]

    def inside(point: np.ndarray, r: float) -> bool:
        col, row = point[0] / spacing[0], point[1] / spacing[1]
        return (col - r / spacing[0] >= -0.5 and col + r / spacing[0] <= nx - 0.5
                and row - r / spacing[1] >= -0.5 and row + r / spacing[1] <= ny - 0.5)

    def disc_mean(field: np.ndarray, point: np.ndarray, r: float) -> float:
        yy, xx = np.mgrid[0:ny, 0:nx]
        disc = np.hypot(xx * spacing[0] - point[0], yy * spacing[1] - point[1]) <= r
        return float(field[disc].mean()) if disc.any() else 0.0

    # The unseen rods go before the first or after the last seen one, on phantom material.
    # Among the ways to place them, keep the one whose rods (HU read on the mean map) best
    # fit a line against the definition's densities; the contrast map breaks ties.
    static_map = maps.static.astype(np.float32)
    options = []
    for before in range(free + 1):
        chosen = list(range(low - before, high + (free - before) + 1))
        hu, evidence, valid, cut = [], 0.0, True, 0
        for s in chosen:
            p = centre(s)
            if not inside(p, core + max(spacing)):
                cut += 1  # cut by the field of view: possible, but a placement inside the image is preferred
                continue
            if s not in seen and not low < s < high:  # a gap inside the row is where a rod must be
                if disc_mean(static_map, p, 0.7 * radius) < 0.9:
                    valid = False
                    break
                evidence += abs(disc_mean(contrast, p, 0.3 * radius)) / (6.0 * maps.noise_mean + 3.0)
            hu.append(disc_mean(maps.mean, p, core))
        if valid and len(hu) >= 2:
            options.append((cut, best_fit_residual(hu, definition), -evidence, chosen))
    if not options:
        raise CalibrationError(f"rods not found: {len(seen)} of {n} rods stand out from the block and the row "
                               f"has no room for the other {n - len(seen)} on phantom material (pitch {pitch:.1f} mm)")
    chosen = min(options, key=lambda option: option[:3])[3]
    warnings: list[str] = []
    usable = []
    for number, s in enumerate(chosen, 1):
        p = centre(s)
        if not inside(p, core + max(spacing)):
            warnings.append(f"rod {number} of {n} at ({p[0]:.0f}, {p[1]:.0f}) mm in the slice is cut by the edge of "
                            f"the field of view and is left out of the fit")
            continue
        usable.append(s)
    if len(usable) < min(3, n):
        raise CalibrationError(f"phantom partly out of the field of view: only {len(usable)} of {n} rods lie wholly "
                               f"inside the image ({'; '.join(warnings)})")
    block = _block_hu(maps, [centre(s) for s in chosen], radius, spacing)
    start, stop = zrange
    rods, centres_index = [], []
    for position, s in enumerate(chosen):
        if s not in usable:
            continue
        p = centre(s)
        col, row = p[0] / spacing[0], p[1] / spacing[1]
        r0, r1 = max(int(np.floor(row - core / spacing[1])), 0), int(np.ceil(row + core / spacing[1])) + 1
        c0, c1 = max(int(np.floor(col - core / spacing[0])), 0), int(np.ceil(col + core / spacing[0])) + 1
        yy, xx = np.mgrid[r0:r1, c0:c1]
        disc = np.hypot((xx - col) * spacing[0], (yy - row) * spacing[1]) <= core
        values = np.asarray(array[start:stop, r0:r1, c0:c1], dtype=np.float64)[:, disc]
        phys = image.TransformContinuousIndexToPhysicalPoint((float(col), float(row), float((start + stop - 1) / 2)))
        mean = float(values.mean())
        rods.append(Rod(position=position, centre_mm=(float(phys[0]), float(phys[1])), radius_mm=float(radius),
                        core_radius_mm=float(core), mean_hu=mean, sd_hu=float(values.std()), n_voxels=int(values.size),
                        contrast_hu=mean - block, inferred=s not in seen))
        centres_index.append((float(col), float(row)))
    return RodRow(rods, pitch, float(block), float(maps.noise), (start, stop), centres_index, n, warnings)


def match_densities(hu: list[float], definition: PhantomDefinition) -> list[int]:
    """Definition rod index of each measured rod: by HU rank, choosing the best-fitting subset
    of densities when fewer rods were measured than the definition has (cut rods)."""
    order = definition.expected_order()
    ranked = np.argsort(hu, kind="stable")
    best: tuple[float, list[int]] | None = None
    for subset in combinations(order, len(hu)):  # keeps the expected order
        assigned = [0] * len(hu)
        for rank, rod in zip(ranked, subset):
            assigned[int(rank)] = rod
        residual = _line_residual(hu, [_reference(definition, i) for i in assigned])
        if best is None or residual < best[0]:
            best = (residual, assigned)
    assert best is not None
    return best[1]


def best_fit_residual(hu: list[float], definition: PhantomDefinition) -> float:
    """Residual sum of squares (HU²) of the line through ``hu`` matched by :func:`match_densities`."""
    assigned = match_densities(hu, definition)
    return _line_residual(hu, [_reference(definition, i) for i in assigned])


def _reference(definition: PhantomDefinition, index: int) -> float:
    """The abscissa of rod ``index``: its density (the water term is applied to HU by the fit)."""
    return definition.densities_mg_cm3[index]


def _line_residual(y: list[float], x: list[float]) -> float:
    if len(set(x)) < 2:
        return float("inf")
    coef = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return float(np.sum((np.polyval(coef, x) - np.asarray(y)) ** 2))


def _block_hu(maps: _Maps, centres: list[np.ndarray], radius: float, spacing: tuple[float, float]) -> float:
    """Median HU of the static material in rings around the rods (the phantom block)."""
    ny, nx = maps.mean.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    ring = np.zeros((ny, nx), bool)
    for p in centres:
        d = np.hypot(xx * spacing[0] - p[0], yy * spacing[1] - p[1])
        ring |= (d > radius + 2.0 * max(spacing)) & (d < radius + 2.0 * max(spacing) + 3.0)
    values = maps.mean[ring & maps.static]
    return float(np.median(values)) if values.size else float("nan")
