"""``qc.png``: axial, coronal and sagittal views of the scan with both contours drawn.

Views pass through the centre of the periosteal mask and are cropped to the femur
plus a margin; pixels are drawn with their physical aspect ratio. Rendering uses
Matplotlib's object API with the Agg canvas (no pyplot, no global state).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from femurseg.labels import endosteal_mask, periosteal_mask

__all__ = ["render_qc"]

PERIOSTEAL_COLOUR = "#ffb000"
ENDOSTEAL_COLOUR = "#00c8ff"


def render_qc(
    hu: np.ndarray,
    label: np.ndarray,
    spacing: tuple[float, float, float],
    path: str | os.PathLike[str],
    title: str = "",
    window: tuple[float, float] = (-200.0, 1500.0),
    margin_mm: float = 15.0,
) -> Path:
    """Draw the three orthogonal views to ``path`` (PNG, written as given; callers make it atomic).

    Parameters
    ----------
    hu, label
        Scan and 0/1/2 label map, ``(z, y, x)``.
    spacing
        ``(x, y, z)`` mm.
    path
        Output PNG.
    title
        Figure title (subject id and volumes).
    window
        Display window in HU.
    margin_mm
        Margin around the femur's bounding box.
    """
    foreground = label > 0
    if foreground.any():
        nonzero = np.nonzero(foreground)
        centre = [int(np.median(axis)) for axis in nonzero]
        margins = [int(np.ceil(margin_mm / s)) for s in spacing[::-1]]
        box = [slice(max(0, int(a.min()) - m), int(a.max()) + m + 1) for a, m in zip(nonzero, margins)]
    else:
        centre = [s // 2 for s in label.shape]
        box = [slice(0, s) for s in label.shape]
    sx, sy, sz = spacing
    views = [  # (title, image slice, label slice, pixel aspect = row spacing / column spacing, origin)
        ("axial", (centre[0], box[1], box[2]), sy / sx, "upper"),
        ("coronal", (box[0], centre[1], box[2]), sz / sx, "lower"),
        ("sagittal", (box[0], box[1], centre[2]), sz / sy, "lower"),
    ]
    figure = Figure(figsize=(12, 4.6), dpi=100)
    FigureCanvasAgg(figure)
    for i, (name, index, aspect, origin) in enumerate(views):
        axes = figure.add_subplot(1, 3, i + 1)
        axes.imshow(hu[index], cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect,
                    origin=origin, interpolation="nearest")
        for mask, colour in ((periosteal_mask(label[index]), PERIOSTEAL_COLOUR),
                             (endosteal_mask(label[index]), ENDOSTEAL_COLOUR)):
            # a contour needs at least 2 x 2 pixels (a single-slice scan has 1-pixel-high views)
            if min(mask.shape) >= 2 and mask.any() and not mask.all():
                axes.contour(mask.astype(np.float32), levels=[0.5], colors=colour, linewidths=1.0)
        axes.set_title(name)
        axes.set_axis_off()
    figure.suptitle(f"{title}  (periosteal: orange, endosteal: blue)".strip())
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    return path
