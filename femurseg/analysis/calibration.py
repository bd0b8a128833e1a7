"""HU → bone-mineral density calibration: phantom, asynchronous, internal or given.

Every method ends in one :class:`CalibrationLine` in the convention of the
synthetic phantom's meta (``meta["calibration"]``)::

    HU = intercept + slope * rho        (rho in mg/cm³ of the phantom's material)
    rho = (HU - intercept) / slope      (CalibrationLine.density)

Methods (``method`` in ``calibration.json``):

``phantom``
    Rods of an in-scan phantom (:mod:`femurseg.analysis.rods`) against the
    densities of a :class:`~femurseg.analysis.phantoms.PhantomDefinition`
    (registered name, JSON file or densities given by the user): ordinary least
    squares of rod mean HU on density, with standard errors and R². Phantoms of
    K2HPO4 dissolved in water (``water_mg_cm3``) are fitted the QCT PRO way
    (:func:`fit_phantom_line`).
``asynchronous``
    A line measured on a separate phantom scan of the same scanner and protocol:
    read from a JSON file (a ``calibration.json`` written by ``femurseg analyze``,
    or ``{"slope": ..., "intercept": ...}``), or measured here on that scan.
``internal``
    Phantomless: the peaks of air, fat and muscle in the same scan, each with a
    reference equivalent density (:data:`INTERNAL_REFERENCES`), fitted like rods.
    It corrects the scanner's gain and offset; it cannot know the energy dependence
    of the material's attenuation, so its slope is only as good as the reference
    values (about ±8 % on the synthetic phantoms, whose K2HPO4 slope is drawn
    independently of the soft-tissue HU; see ``docs/analysis.md``).
``given``
    Slope and intercept given by the user.

Quality gates (:class:`CalibrationGates`): warn when R² < 0.98 or a rod's SD is
high, refuse (:class:`~femurseg.errors.CalibrationError`) when R² < 0.90, naming
the residuals.

Examples
--------
>>> line = fit_line([0.0, 50.0, 100.0, 200.0], [1.0, 61.0, 121.0, 241.0])
>>> round(line["slope"], 3), round(line["intercept"], 3), round(line["r2"], 6)
(1.2, 1.0, 1.0)
>>> CalibrationLine("given", slope=1.2, intercept=1.0).density(241.0)
200.0
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from femurseg.analysis.phantoms import (
    DEFAULT_PHANTOM,
    QCT_PRO_WATER_CORRECTION,
    PhantomDefinition,
    get_phantom,
    user_phantom,
    water_corrected,
)
from femurseg.analysis.rods import RodRow, find_rods, match_densities, slice_statistics
from femurseg.errors import CalibrationError
from femurseg.labels import periosteal_mask

__all__ = ["CalibrationLine", "CalibrationGates", "InternalReference", "INTERNAL_REFERENCES", "METHODS",
           "fit_line", "fit_phantom_line", "calibrate_phantom", "calibrate_internal", "load_calibration_json",
           "calibrate", "given_line"]

METHODS: tuple[str, ...] = ("phantom", "asynchronous", "internal", "given")


@dataclass(frozen=True)
class CalibrationGates:
    """When a line is trusted, doubted (a warning) or refused.

    Parameters
    ----------
    warn_r2
        Warn below this R².
    refuse_r2
        Refuse below this R².
    rod_sd_ratio
        Warn when a rod's SD exceeds this multiple of the median rod SD (an air
        bubble, a streak, a rod partly outside its core region).
    rod_sd_hu
        Warn when a rod's SD exceeds this many HU.
    """

    warn_r2: float = 0.98
    refuse_r2: float = 0.90
    rod_sd_ratio: float = 1.5
    rod_sd_hu: float = 80.0


@dataclass(frozen=True)
class InternalReference:
    """A tissue of the scan used for phantomless calibration.

    ``window_hu`` bounds where its histogram peak is searched; ``equivalent_mg_cm3``
    is its density on the calibration material's scale (nominal HU of the tissue
    divided by a nominal 1.25 HU per mg/cm³ K2HPO4 at 120 kVp).
    """

    name: str
    window_hu: tuple[float, float]
    equivalent_mg_cm3: float


INTERNAL_REFERENCES: tuple[InternalReference, ...] = (
    InternalReference("air", (-1020.0, -900.0), -800.0),
    InternalReference("fat", (-200.0, -40.0), -80.0),
    InternalReference("muscle", (15.0, 110.0), 40.0),
)
"""Default references: air −1000 HU, fat −100 HU, muscle +50 HU at 1.25 HU per mg/cm³."""


@dataclass
class CalibrationLine:
    """``HU = intercept + slope * rho``: what every calibration method returns.

    Attributes
    ----------
    method
        One of :data:`METHODS`.
    slope, intercept
        HU per mg/cm³ and HU.
    material
        ``k2hpo4`` or ``hydroxyapatite``.
    slope_se, intercept_se, r2
        Standard errors and coefficient of determination of the fit (``None`` for a
        given line).
    phantom
        The phantom definition used (its dict), if any.
    rods
        The rods measured (:meth:`~femurseg.analysis.rods.Rod.to_dict`).
    references
        Internal calibration: the tissue peaks used.
    warnings
        Quality-gate warnings and fallbacks, in words.
    notes
        What the method did that is worth knowing but not a doubt (rods placed by the pitch).
    source
        Where an asynchronous line came from.
    """

    method: str
    slope: float
    intercept: float
    material: str = "k2hpo4"
    slope_se: float | None = None
    intercept_se: float | None = None
    r2: float | None = None
    phantom: dict[str, Any] | None = None
    rods: list[dict[str, Any]] = field(default_factory=list)
    references: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"calibration method {self.method!r} is not one of {', '.join(METHODS)}")
        if not np.isfinite(self.slope) or self.slope <= 0:
            raise CalibrationError(f"calibration slope must be a positive number of HU per mg/cm³, got {self.slope}")
        if not np.isfinite(self.intercept):
            raise CalibrationError(f"calibration intercept must be finite, got {self.intercept}")

    def density(self, hu: Any) -> Any:
        """Equivalent density (mg/cm³) of ``hu`` (scalar or array; arrays come back as float32)."""
        if np.isscalar(hu):
            return (float(hu) - self.intercept) / self.slope
        return ((np.asarray(hu, np.float32) - np.float32(self.intercept)) / np.float32(self.slope)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``calibration.json``."""
        return {
            "method": self.method, "convention": "HU = intercept + slope * density_mg_cm3",
            "slope": self.slope, "intercept": self.intercept, "slope_se": self.slope_se,
            "intercept_se": self.intercept_se, "r2": self.r2, "material": self.material,
            "density_unit": f"mg/cm3 {self.material}", "phantom": self.phantom, "rods": self.rods,
            "references": self.references, "warnings": self.warnings, "notes": self.notes, "source": self.source,
        }


def given_line(slope: float, intercept: float, material: str = "k2hpo4") -> CalibrationLine:
    """A line given by the user (``--calibration SLOPE INTERCEPT``, HU = intercept + slope · rho)."""
    return CalibrationLine("given", float(slope), float(intercept), material=material)


def fit_line(densities: Sequence[float], hu: Sequence[float]) -> dict[str, Any]:
    """Ordinary least squares ``hu = intercept + slope * density`` with standard errors and R².

    Returns
    -------
    dict
        ``slope``, ``intercept``, ``slope_se``, ``intercept_se`` (``None`` with 2
        points), ``r2`` and ``residuals`` (HU).
    """
    x, y = np.asarray(densities, np.float64), np.asarray(hu, np.float64)
    if x.size != y.size or x.size < 2:
        raise CalibrationError(f"a calibration line needs at least 2 points, got {x.size} densities and {y.size} HU")
    sxx = float(np.sum((x - x.mean()) ** 2))
    if sxx == 0:
        raise CalibrationError("a calibration line needs at least two different densities")
    slope = float(np.sum((x - x.mean()) * (y - y.mean())) / sxx)
    intercept = float(y.mean() - slope * x.mean())
    residuals = y - (intercept + slope * x)
    ss_res, ss_tot = float(np.sum(residuals ** 2)), float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    if x.size > 2:
        sigma2 = ss_res / (x.size - 2)
        slope_se = float(np.sqrt(sigma2 / sxx))
        intercept_se = float(np.sqrt(sigma2 * (1.0 / x.size + x.mean() ** 2 / sxx)))
    else:
        slope_se = intercept_se = None
    return {"slope": slope, "intercept": intercept, "slope_se": slope_se, "intercept_se": intercept_se,
            "r2": float(r2), "residuals": [float(r) for r in residuals]}


def fit_phantom_line(definition: PhantomDefinition, indices: Sequence[int], hu: Sequence[float]) -> dict[str, Any]:
    """Fit the rods ``indices`` of ``definition`` measured at ``hu``.

    Without water densities this is :func:`fit_line`. With them (K2HPO4 in water,
    QCT PRO), ``HU - rho_water = beta_ref + sigma_ref * rho`` is fitted and converted to
    ``HU = (beta_ref + 999.6) + (sigma_ref - 0.2174) * rho``.
    """
    densities = [definition.densities_mg_cm3[i] for i in indices]
    if definition.water_mg_cm3 is None:
        return fit_line(densities, hu)
    fit = fit_line(densities, water_corrected(hu, [definition.water_mg_cm3[i] for i in indices]))
    slope_shift, intercept_shift = QCT_PRO_WATER_CORRECTION
    fit["slope"] -= slope_shift
    fit["intercept"] += intercept_shift
    return fit


def _gate(fit: dict[str, Any], rods: list[dict[str, Any]], gates: CalibrationGates, what: str) -> list[str]:
    """Warnings of a fit; raises below the refusal gate."""
    r2 = fit["r2"]
    residuals = ", ".join(f"{r:+.1f}" for r in fit["residuals"])
    if r2 < gates.refuse_r2:
        raise CalibrationError(f"calibration refused: R² = {r2:.3f} of the {what} line is below {gates.refuse_r2} "
                               f"(residuals {residuals} HU); check that the rods are the phantom's and that the "
                               f"densities are right")
    warnings = []
    if r2 < gates.warn_r2:
        warnings.append(f"R² = {r2:.4f} of the {what} line is below {gates.warn_r2} (residuals {residuals} HU)")
    sds = [r["sd_hu"] for r in rods if r.get("sd_hu") is not None]
    if sds:
        median = float(np.median(sds))
        for rod in rods:
            sd = rod.get("sd_hu")
            if sd is not None and (sd > gates.rod_sd_ratio * median + 3.0 or sd > gates.rod_sd_hu):
                warnings.append(f"rod {rod['position'] + 1} ({rod.get('density_mg_cm3')} mg/cm³) has a high SD: "
                                f"{sd:.1f} HU against a median of {median:.1f} HU over the rods (artefact, air "
                                f"bubble or misplaced core?)")
    return warnings


def _rods_line(row: RodRow, definition: PhantomDefinition, method: str, gates: CalibrationGates,
               source: str | None = None) -> CalibrationLine:
    hu = [rod.mean_hu for rod in row.rods]
    indices = match_densities(hu, definition)
    for rod, index in zip(row.rods, indices):
        rod.density_mg_cm3 = definition.densities_mg_cm3[index]
        rod.water_mg_cm3 = definition.water_mg_cm3[index] if definition.water_mg_cm3 else None
    fit = fit_phantom_line(definition, indices, hu)
    rods = [rod.to_dict() for rod in row.rods]
    for rod, residual in zip(rods, fit["residuals"]):
        rod["residual_hu"] = round(residual, 3)
    warnings = list(row.warnings) + _gate(fit, rods, gates, f"{definition.name} phantom")
    inferred = [r["position"] + 1 for r in rods if r["inferred"]]
    notes = [f"rod(s) {inferred} hardly differ from the phantom block and were placed by the row's pitch "
             f"({row.pitch_mm:.1f} mm)"] if inferred else []
    return CalibrationLine(method, fit["slope"], fit["intercept"], material=definition.material,
                           slope_se=fit["slope_se"], intercept_se=fit["intercept_se"], r2=fit["r2"],
                           phantom=definition.to_dict(), rods=rods, warnings=warnings, notes=notes, source=source)


def calibrate_phantom(image: sitk.Image, definition: PhantomDefinition | str = DEFAULT_PHANTOM,
                      gates: CalibrationGates = CalibrationGates(), method: str = "phantom",
                      source: str | None = None) -> CalibrationLine:
    """Find the rods of ``definition`` in ``image`` and fit the line.

    Raises
    ------
    CalibrationError
        Rods not found, phantom cut by the field of view, or R² below the gate.
    """
    if not isinstance(definition, PhantomDefinition):
        definition = get_phantom(definition)
    row = find_rods(image, definition)
    return _rods_line(row, definition, method, gates, source)


def load_calibration_json(path: str | os.PathLike[str]) -> CalibrationLine:
    """An asynchronous line from JSON: a ``calibration.json`` or ``{"slope": S, "intercept": I}``.

    Raises
    ------
    CalibrationError
        Unreadable file, missing keys or a non-positive slope.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        slope, intercept = float(data["slope"]), float(data["intercept"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CalibrationError(f"{path}: not a calibration line (a JSON object with 'slope' and 'intercept' in "
                               f"HU = intercept + slope * density): {error}") from error
    if "convention" not in data:
        pass  # a bare {"slope", "intercept"} is read in the documented convention
    elif data["convention"] != "HU = intercept + slope * density_mg_cm3":
        raise CalibrationError(f"{path}: unknown convention {data['convention']!r}")
    note = f"measured on a separate scan ({data.get('method', 'unknown method')})"
    return CalibrationLine("asynchronous", slope, intercept, material=str(data.get("material", "k2hpo4")),
                           slope_se=data.get("slope_se"), intercept_se=data.get("intercept_se"), r2=data.get("r2"),
                           phantom=data.get("phantom"), rods=list(data.get("rods") or []),
                           warnings=[note], source=str(path))


def _peak(values: np.ndarray, window: tuple[float, float]) -> tuple[float, int]:
    """Mode (HU) of ``values`` inside ``window``: smoothed 1-HU histogram, parabolic refinement."""
    lo, hi = window
    inside = values[(values > lo) & (values < hi)]
    if inside.size < 200:
        return float("nan"), int(inside.size)
    edges = np.arange(lo, hi + 1.0, 1.0)
    counts, _ = np.histogram(inside, edges)
    from scipy import ndimage

    smooth = ndimage.gaussian_filter1d(counts.astype(np.float64), 4.0, mode="constant")
    k = int(np.argmax(smooth))
    if 0 < k < smooth.size - 1:
        a, b, c = smooth[k - 1], smooth[k], smooth[k + 1]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom != 0 else 0.0
    else:
        shift = 0.0
    return float(edges[k] + 0.5 + shift), int(inside.size)


def calibrate_internal(image: sitk.Image, label: sitk.Image | None = None,
                       references: Sequence[InternalReference] = INTERNAL_REFERENCES,
                       gates: CalibrationGates = CalibrationGates(), material: str = "k2hpo4") -> CalibrationLine:
    """Phantomless calibration from the air, fat and muscle peaks of ``image``.

    Soft-tissue peaks are taken over the patient only: voxels of pixels that are not
    constant along z (the phantom, table and air outside are) and outside the bone
    label. Air is taken over the whole scan (values at the clipping floor ≤ −1020 HU
    are left out of its window).

    Raises
    ------
    CalibrationError
        A reference tissue has no clear peak (fewer than 200 voxels in its window),
        or the fit is below the gate.
    """
    array = sitk.GetArrayViewFromImage(image)
    nz = array.shape[0]
    step = max(1, nz // 60)  # at most ~60 slices: peaks do not need every voxel
    sample = np.asarray(array[::step], dtype=np.float32)
    _, zsd = slice_statistics(array)
    moving = np.broadcast_to(zsd > 1.5 * max(float(np.percentile(zsd, 5)), 0.5), sample.shape)
    patient = moving.copy()
    if label is not None:
        patient &= ~periosteal_mask(sitk.GetArrayViewFromImage(label)[::step])
    found, densities, hu = [], [], []
    missing = []
    for ref in references:
        values = sample if ref.name == "air" else sample[patient]
        peak, n = _peak(values.ravel(), ref.window_hu)
        if not np.isfinite(peak):
            missing.append(f"{ref.name} ({n} voxels in {ref.window_hu[0]:.0f}..{ref.window_hu[1]:.0f} HU)")
            continue
        found.append({"name": ref.name, "peak_hu": round(peak, 2), "equivalent_mg_cm3": ref.equivalent_mg_cm3,
                      "n_voxels": n * step})
        densities.append(ref.equivalent_mg_cm3)
        hu.append(peak)
    if missing or len(found) < 2:
        raise CalibrationError(f"internal calibration impossible: no clear peak of {', '.join(missing)}")
    fit = fit_line(densities, hu)
    for entry, residual in zip(found, fit["residuals"]):
        entry["residual_hu"] = round(residual, 3)
    warnings = _gate(fit, [], gates, "internal")
    return CalibrationLine("internal", fit["slope"], fit["intercept"], material=material, slope_se=fit["slope_se"],
                           intercept_se=fit["intercept_se"], r2=fit["r2"], references=found, warnings=warnings)


def calibrate(image: sitk.Image, label: sitk.Image | None = None, *, phantom: str | PhantomDefinition | None = None,
              densities: Sequence[float] | None = None, calibration_json: str | os.PathLike[str] | None = None,
              phantom_scan: sitk.Image | None = None, given: tuple[float, float] | None = None,
              internal: bool = False, material: str = "k2hpo4",
              gates: CalibrationGates = CalibrationGates()) -> CalibrationLine:
    """Choose and run one calibration method; with no choice, look for the default phantom.

    Parameters
    ----------
    image, label
        The scan (HU) and its 0/1/2 label map (optional; excludes bone from the
        internal calibration's soft-tissue peaks).
    phantom
        Registered phantom name, JSON definition file or a definition: rods in this scan.
    densities
        Rod densities given by the user (mg/cm³ of ``material``): rods in this scan.
    calibration_json
        Asynchronous line from a JSON file.
    phantom_scan
        Asynchronous line measured now on a separate phantom scan (with ``phantom``
        or ``densities`` naming its rods, else the default phantom).
    given
        ``(slope, intercept)``.
    internal
        Phantomless calibration.
    gates
        Quality gates.

    With none of these, the default phantom (:data:`~femurseg.analysis.phantoms.DEFAULT_PHANTOM`)
    is looked for; when no rods are found, internal calibration is used and the
    fallback is named in ``warnings``.

    Raises
    ------
    CalibrationError
        Conflicting choices, or the chosen method failed (named in the message).
    """
    chosen = [n for n, v in (("given", given), ("calibration_json", calibration_json), ("internal", internal or None))
              if v is not None]
    if phantom_scan is None and (phantom is not None or densities is not None):
        chosen.append("phantom")
    if phantom is not None and densities is not None:
        raise CalibrationError("name a phantom or give rod densities, not both")
    if phantom_scan is not None:
        chosen.append("phantom_scan")
    if len(chosen) > 1:
        raise CalibrationError(f"choose one calibration method, got {', '.join(chosen)}")
    if given is not None:
        return given_line(*given, material=material)
    if calibration_json is not None:
        return load_calibration_json(calibration_json)
    if internal:
        return calibrate_internal(image, label, gates=gates, material=material)
    definition = (user_phantom(densities, material) if densities is not None
                  else phantom if isinstance(phantom, PhantomDefinition)
                  else get_phantom(phantom) if phantom is not None else None)
    if phantom_scan is not None:
        return calibrate_phantom(phantom_scan, definition or get_phantom(DEFAULT_PHANTOM), gates,
                                 method="asynchronous", source="separate phantom scan")
    if definition is not None:
        return calibrate_phantom(image, definition, gates)
    default = get_phantom(DEFAULT_PHANTOM)
    try:
        row = find_rods(image, default, min_seen=3)
    except CalibrationError as error:
        try:
            line = calibrate_internal(image, label, gates=gates, material=material)
        except CalibrationError as fallback:
            raise CalibrationError(f"no calibration: no phantom found ({error}), and {fallback}") from fallback
        line.warnings.insert(0, f"no calibration phantom found ({error}); fell back to internal calibration "
                                f"from air, fat and muscle")
        return line
    return _rods_line(row, default, "phantom", gates)
