"""Calibrated density map and volume, vBMD and BMC per compartment (and region).

Compartments of the 0/1/2 label map (:mod:`femurseg.labels`): ``integral`` (the
whole femur, label ≥ 1, inside the periosteal surface), ``cortical`` (label 1) and
``trabecular`` (label 2, the endosteal region including the shaft's marrow canal).

For a compartment of ``n`` voxels of ``v`` cm³, with the density map
``rho = (HU - intercept) / slope`` (mg/cm³):

- ``volume_cm3 = n * v``;
- ``vbmd_mg_cm3`` = mean of ``rho`` over the compartment;
- ``bmc_mg = vbmd_mg_cm3 * volume_cm3`` (the sum of ``rho * v``);
- ``mean_hu`` = mean HU over the compartment.

Examples
--------
>>> label = np.array([[[0, 1, 2, 2]]], np.uint8)
>>> density = np.array([[[0.0, 900.0, 150.0, 250.0]]], np.float32)
>>> table = compartment_table(density, label, voxel_cm3=0.001)
>>> table["trabecular"]["vbmd_mg_cm3"], table["integral"]["bmc_mg"]
(200.0, 1.3)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import SimpleITK as sitk

from femurseg.analysis.calibration import CalibrationLine
from femurseg.labels import cortical_mask, endosteal_mask, periosteal_mask

__all__ = ["ANALYSIS_COMPARTMENTS", "density_image", "compartment_table", "voxel_cm3"]

#: reported compartment -> mask of a label map
ANALYSIS_COMPARTMENTS: dict[str, Callable[[Any], Any]] = {
    "integral": periosteal_mask, "cortical": cortical_mask, "trabecular": endosteal_mask,
}


def voxel_cm3(image: sitk.Image) -> float:
    """Volume of one voxel in cm³."""
    return float(np.prod(image.GetSpacing())) / 1000.0


def density_image(image: sitk.Image, line: CalibrationLine) -> sitk.Image:
    """The scan as equivalent density (mg/cm³, float32) on the scan's grid."""
    density = line.density(sitk.GetArrayViewFromImage(image))
    out = sitk.GetImageFromArray(density)
    out.CopyInformation(image)
    return out


def compartment_table(density: np.ndarray, label: np.ndarray, voxel_cm3: float, hu: np.ndarray | None = None,
                      within: np.ndarray | None = None) -> dict[str, dict[str, float | None]]:
    """Volume, vBMD, BMC (and mean HU) per compartment, optionally within a region mask.

    Parameters
    ----------
    density
        ``(Z, Y, X)`` mg/cm³.
    label
        ``(Z, Y, X)`` 0/1/2 label map.
    voxel_cm3
        Volume of a voxel.
    hu
        The scan, for ``mean_hu`` (omitted when ``None``).
    within
        Boolean mask restricting every compartment (a hip region).

    Returns
    -------
    dict
        ``{compartment: {"volume_cm3", "vbmd_mg_cm3", "bmc_mg"[, "mean_hu"]}}``; the means
        of an empty compartment are ``None`` and its BMC 0.
    """
    if within is not None:
        nonzero = np.nonzero(within)
    else:
        nonzero = np.nonzero(periosteal_mask(label))
    if nonzero[0].size:
        box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in nonzero)
        label, density = label[box], density[box]
        hu = None if hu is None else hu[box]
        within = None if within is None else within[box]
    out: dict[str, dict[str, float | None]] = {}
    for name, mask_of in ANALYSIS_COMPARTMENTS.items():
        mask = mask_of(label)
        if within is not None:
            mask = mask & within
        n = int(np.count_nonzero(mask)) if nonzero[0].size else 0
        volume = n * voxel_cm3
        row: dict[str, float | None] = {"volume_cm3": round(volume, 6)}
        if n:
            vbmd = float(np.mean(density[mask], dtype=np.float64))
            row["vbmd_mg_cm3"] = round(vbmd, 4)
            row["bmc_mg"] = round(vbmd * volume, 4)
        else:
            row["vbmd_mg_cm3"], row["bmc_mg"] = None, 0.0
        if hu is not None:
            row["mean_hu"] = round(float(np.mean(hu[mask], dtype=np.float64)), 3) if n else None
        out[name] = row
    return out
