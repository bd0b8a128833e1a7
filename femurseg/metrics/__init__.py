"""Segmentation metrics: overlap, surface distances, volumes, and cohort evaluation.

Pure NumPy/SciPy functions on binary masks with the voxel ``spacing`` in mm given
in the array's axis order (for SimpleITK arrays, ``image.GetSpacing()[::-1]``).
Definitions and empty-mask conventions are in ``docs/evaluation.md``.

Examples
--------
>>> import numpy as np
>>> from femurseg.metrics import dice, hd95
>>> m = np.zeros((8, 8, 8), bool); m[2:6, 2:6, 2:6] = True
>>> dice(m, m), hd95(m, m, spacing=(1.0, 0.7, 0.7))
(1.0, 0.0)
"""

from __future__ import annotations

from femurseg.metrics.evaluate import TARGETS, evaluate_cohort, evaluate_label_maps
from femurseg.metrics.overlap import dice, iou, overlap_metrics, precision, sensitivity
from femurseg.metrics.surface import (
    SurfaceDistances,
    assd,
    hausdorff_distance,
    hd95,
    surface_dice,
    surface_distances,
    surface_metrics,
)
from femurseg.metrics.volume import volume_cm3, volume_error_pct

__all__ = [
    "TARGETS",
    "SurfaceDistances",
    "assd",
    "dice",
    "evaluate_cohort",
    "evaluate_label_maps",
    "hausdorff_distance",
    "hd95",
    "iou",
    "overlap_metrics",
    "precision",
    "sensitivity",
    "surface_dice",
    "surface_distances",
    "surface_metrics",
    "volume_cm3",
    "volume_error_pct",
]
