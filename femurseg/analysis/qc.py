"""``analysis_qc.png``: what the analysis did, to check at a glance.

Panels: (1) the calibration — the middle slice around the phantom with each rod's
core drawn and its density (or, without rods, the axial slice through the head);
(2) per femur, the coronal slice through the head centre with the hip regions,
the head circle and the neck and shaft axes (projected on the slice); (3) per
femur, the DXA-equivalent projection (g/cm²) with the neck box and total hip
outlined. Matplotlib's object API with the Agg canvas (no pyplot, no global state).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Ellipse

from femurseg.analysis.calibration import CalibrationLine
from femurseg.analysis.regions import REGION_LABELS

__all__ = ["render_analysis_qc"]

REGION_COLOURS = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231")


def _index(image: sitk.Image, point: Any) -> np.ndarray:
    return np.asarray(image.TransformPhysicalPointToContinuousIndex([float(c) for c in point]))


def render_analysis_qc(path: str | os.PathLike[str], image: sitk.Image, line: CalibrationLine,
                       regions: np.ndarray | None, femora: list[dict[str, Any]], title: str = "") -> Path:
    """Draw the QC figure to ``path`` (PNG). ``femora``: dicts with ``landmarks`` and ``dxa`` (a projection)."""
    hu = sitk.GetArrayViewFromImage(image)
    sx, sy, sz = image.GetSpacing()
    columns = 1 + 2 * max(len(femora), 1)
    figure = Figure(figsize=(4.2 * columns, 4.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, columns, 1)
    k = hu.shape[0] // 2
    if line.rods:
        centres = np.array([_index(image, (*r["centre_mm"], image.GetOrigin()[2]))[:2] for r in line.rods])
        radius = max(r["radius_mm"] for r in line.rods)
        lo = np.maximum(centres.min(axis=0) - 2.5 * radius / np.array([sx, sy]), 0).astype(int)
        hi = (centres.max(axis=0) + 2.5 * radius / np.array([sx, sy])).astype(int)
        axes.imshow(hu[k, lo[1]:hi[1], lo[0]:hi[0]], cmap="gray", vmin=-150, vmax=350, aspect=sy / sx,
                    interpolation="nearest")
        for rod, (cx, cy) in zip(line.rods, centres):
            colour = "#ffb000" if rod["inferred"] else "#00c8ff"
            axes.add_patch(Circle((cx - lo[0], cy - lo[1]), rod["core_radius_mm"] / sx, fill=False, color=colour))
            axes.text(cx - lo[0], cy - lo[1] - 1.4 * radius / sy, f"{rod['density_mg_cm3']:g}", color=colour,
                      ha="center", fontsize=8)
        axes.set_title(f"{line.method}: HU = {line.intercept:.1f} + {line.slope:.3f}·ρ"
                       + (f", R² {line.r2:.4f}" if line.r2 is not None else ""), fontsize=9)
    else:
        axes.imshow(hu[k], cmap="gray", vmin=-200, vmax=1200, aspect=sy / sx, interpolation="nearest")
        axes.set_title(f"{line.method}: HU = {line.intercept:.1f} + {line.slope:.3f}·ρ", fontsize=9)
    axes.set_axis_off()
    cmap = ListedColormap(REGION_COLOURS)
    for i, femur in enumerate(femora):
        marks = femur["landmarks"]
        centre = _index(image, marks["head_centre_mm"])
        j = int(round(centre[1]))
        axes = figure.add_subplot(1, columns, 2 + 2 * i)
        axes.imshow(hu[:, j, :], cmap="gray", vmin=-200, vmax=1500, aspect=sz / sx, origin="lower",
                    interpolation="nearest")
        if regions is not None:
            overlay = np.ma.masked_equal(regions[:, j, :], 0)
            axes.imshow(overlay, cmap=cmap, vmin=0.5, vmax=len(REGION_COLOURS) + 0.5, alpha=0.35, aspect=sz / sx,
                        origin="lower", interpolation="nearest")
        radius = marks["head_radius_mm"]
        axes.add_patch(Ellipse((centre[0], centre[2]), 2 * radius / sx, 2 * radius / sz, fill=False, color="w"))
        for key, colour, length in (("neck_axis", "#00ff88", 60.0), ("shaft_axis", "#ff66ff", 80.0)):
            start = np.asarray(marks["head_centre_mm"] if key == "neck_axis" else marks["shaft_point_mm"])
            end = start - length * np.asarray(marks[key]) if key == "neck_axis" else start + length * np.asarray(marks[key])
            a, b = _index(image, start), _index(image, end)
            axes.plot([a[0], b[0]], [a[2], b[2]], color=colour, linewidth=1.2)
        names = ", ".join(f"{n}" for n in REGION_LABELS)
        axes.set_title(f"{marks['side']}: NSA {marks['neck_shaft_angle_deg']:.1f}°, head R "
                       f"{marks['head_radius_mm']:.1f} mm\nregions: {names}", fontsize=8)
        axes.set_axis_off()
        projection = femur.get("dxa")
        axes = figure.add_subplot(1, columns, 3 + 2 * i)
        if projection is not None:
            shown = axes.imshow(projection.abmd, cmap="magma", vmin=0.0, vmax=max(float(projection.abmd.max()), 1e-3),
                                interpolation="nearest")
            for name, colour in (("neck", "#00ff88"), ("total_hip", "#00c8ff")):
                roi = projection.rois[name]
                if roi.any() and not roi.all():
                    axes.contour(roi.astype(np.float32), levels=[0.5], colors=colour, linewidths=1.0)
            figure.colorbar(shown, ax=axes, fraction=0.046, label="g/cm²")
            n, t = projection.numbers["neck"], projection.numbers["total_hip"]
            axes.set_title(f"DXA-equivalent: neck {n['abmd_g_cm2']} g/cm², total hip {t['abmd_g_cm2']} g/cm²",
                           fontsize=8)
        axes.set_axis_off()
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    return path
