"""The numbers of ``report.json``: compartment volumes, mean HU and, calibrated, vBMD and BMC.

Compartments of the 0/1/2 label map: ``periosteal`` (label ≥ 1, the whole
femur), ``cortical`` (label 1) and ``trabecular`` (label 2, the endosteal region).
With a linear HU → K2HPO4 calibration ``density = slope * HU + intercept``
(mg/cm³), the volumetric BMD of a compartment is the calibrated mean HU and its
BMC (g) is vBMD × volume / 1000.

Examples
--------
>>> hu = sitk.GetImageFromArray(np.full((4, 4, 4), 500, np.int16))
>>> label = sitk.GetImageFromArray(np.pad(np.full((2, 2, 2), 2, np.uint8), 1))
>>> label.CopyInformation(hu)
>>> report = compartment_report(hu, label, Calibration(slope=0.8, intercept=-2.0))
>>> report["volume_cm3"]["trabecular"], report["vbmd_mg_cm3"]["trabecular"]
(0.008, 398.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from femurseg.labels import COMPARTMENTS, LABEL_VALUES, periosteal_mask
from femurseg.voxels import bounding_box

__all__ = ["Calibration", "COMPARTMENTS", "compartment_report", "side_reports"]




@dataclass(frozen=True)
class Calibration:
    """Linear HU → equivalent K2HPO4 density: ``density_mg_cm3 = slope * HU + intercept``."""

    slope: float
    intercept: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def compartment_report(image: sitk.Image, label: sitk.Image, calibration: Calibration | None = None) -> dict[str, Any]:
    """Volumes (cm³), mean HU and, with a calibration, vBMD (mg/cm³) and BMC (g) per compartment.

    Parameters
    ----------
    image
        The scan in HU.
    label
        The 0/1/2 label map on the scan's grid.
    calibration
        Optional HU → density line.

    Returns
    -------
    dict
        ``{"volume_cm3": {...}, "mean_hu": {...}}`` keyed by ``periosteal``,
        ``cortical``, ``trabecular``; plus ``vbmd_mg_cm3``, ``bmc_g`` and
        ``calibration`` when calibrated. A mean of an empty compartment is ``None``.
    """
    if image.GetSize() != label.GetSize():
        raise ValueError(f"image size {image.GetSize()} differs from label size {label.GetSize()}")
    labels = sitk.GetArrayViewFromImage(label)
    hu = sitk.GetArrayViewFromImage(image)
    foreground = labels > 0
    counts = np.zeros(len(LABEL_VALUES), np.int64)
    sums = np.zeros(len(LABEL_VALUES), np.float64)
    box = bounding_box(foreground)
    if box is not None:
        values = labels[box].ravel().astype(np.intp)
        counts = np.bincount(values, minlength=len(LABEL_VALUES))[: len(LABEL_VALUES)]
        sums = np.bincount(values, weights=hu[box].ravel().astype(np.float64),
                           minlength=len(LABEL_VALUES))[: len(LABEL_VALUES)]
    voxel_cm3 = float(np.prod(image.GetSpacing())) / 1000.0
    report: dict[str, Any] = {"volume_cm3": {}, "mean_hu": {}}
    for name, values in COMPARTMENTS.items():
        n = int(sum(counts[v] for v in values))
        report["volume_cm3"][name] = round(n * voxel_cm3, 6)
        report["mean_hu"][name] = round(float(sum(sums[v] for v in values)) / n, 3) if n else None
    if calibration is not None:
        report["calibration"] = calibration.to_dict()
        report["vbmd_mg_cm3"], report["bmc_g"] = {}, {}
        for name in COMPARTMENTS:
            mean = report["mean_hu"][name]
            vbmd = None if mean is None else calibration.slope * mean + calibration.intercept
            report["vbmd_mg_cm3"][name] = None if vbmd is None else round(vbmd, 3)
            report["bmc_g"][name] = None if vbmd is None else round(vbmd * report["volume_cm3"][name] / 1000.0, 6)
    return report


def side_reports(image: sitk.Image, label: sitk.Image, calibration: Calibration | None = None) -> list[dict[str, Any]]:
    """One :func:`compartment_report` per femur (26-connected component of label ≥ 1), with its side.

    The side comes from the patient coordinates, not from the array order: the
    femur centres are mapped to physical LPS millimetres (x grows towards the
    patient's left). With two femora, the one further in +x is the left one; a
    single femur is ``left`` when its centre lies at x > 0 (DICOM scanners put
    x = 0 at the table centre, which is close to the patient's midline).

    Returns
    -------
    list of dict
        Sorted right then left: ``side``, ``centre_mm`` and the compartment report.
    """
    from scipy import ndimage

    array = sitk.GetArrayViewFromImage(label)
    components, n = ndimage.label(periosteal_mask(array), structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return []
    sizes = np.bincount(components.ravel())[1:]
    chosen = [int(i) + 1 for i in np.argsort(sizes)[::-1][:2]]
    centres = []
    for index in chosen:
        z, y, x = ndimage.center_of_mass(components == index)
        centres.append(image.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(z))))
    if len(chosen) == 2:
        left = 0 if centres[0][0] > centres[1][0] else 1
        sides = ["left" if i == left else "right" for i in range(2)]
    else:
        sides = ["left" if centres[0][0] > 0 else "right"]
    reports = []
    for index, side, centre in zip(chosen, sides, centres):
        part = sitk.GetImageFromArray(np.where(components == index, array, 0).astype(np.uint8))
        part.CopyInformation(label)
        reports.append({"side": side, "centre_mm": [round(float(c), 2) for c in centre],
                        **compartment_report(image, part, calibration)})
    return sorted(reports, key=lambda r: r["side"] != "right")
