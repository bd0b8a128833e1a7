"""Input checks and the split of a label map into femora (one per side).

A bilateral scan's label map holds two femora; each is analysed on its own. They
are the two largest 26-connected components of the periosteal mask (the second
counted when it holds at least a fifth of the first's voxels, so that a stray
fragment is not taken for a femur). Which side each is comes from the patient
coordinates (LPS: ``x`` grows towards the patient's left): of two femora, the one
further in ``+x`` is the left one. A single femur's side is decided later from its
anatomy (:mod:`femurseg.analysis.geometry`: the head is medial to the trochanters),
with the sign of its centre's ``x`` as the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from femurseg.errors import AnalysisError
from femurseg.labels import LABEL_VALUES, periosteal_mask

__all__ = ["Femur", "check_inputs", "split_femora"]


@dataclass
class Femur:
    """One femur of a label map: its mask, bounding box and provisional side."""

    side: str
    mask: np.ndarray
    centre_mm: tuple[float, float, float]
    voxels: int


def check_inputs(image: sitk.Image, label: sitk.Image, tolerance: float = 1e-3) -> None:
    """Refuse a label map that is not a 0/1/2 map on the image's grid, or holds no femur.

    Raises
    ------
    AnalysisError
        Naming what differs (size, spacing, origin, direction), the stray label
        values, or the empty mask.
    """
    if image.GetDimension() != 3 or label.GetDimension() != 3:
        raise AnalysisError(f"image and label must be 3D, got {image.GetDimension()}D and {label.GetDimension()}D")
    if image.GetSize() != label.GetSize():
        raise AnalysisError(f"the label map is on another grid: size {label.GetSize()} vs the image's {image.GetSize()}")
    for what, a, b in (("spacing", image.GetSpacing(), label.GetSpacing()),
                       ("origin", image.GetOrigin(), label.GetOrigin()),
                       ("direction", image.GetDirection(), label.GetDirection())):
        if not np.allclose(a, b, atol=tolerance, rtol=0):
            raise AnalysisError(f"the label map is on another grid: {what} "
                                f"{tuple(round(v, 4) for v in b)} vs the image's {tuple(round(v, 4) for v in a)}")
    values = np.unique(sitk.GetArrayViewFromImage(label))
    stray = sorted(set(values.tolist()) - set(LABEL_VALUES))
    if stray:
        shown = ", ".join(f"{v:g}" for v in stray[:5]) + (f", ... ({len(stray)} values)" if len(stray) > 5 else "")
        raise AnalysisError(f"the label map holds values [{shown}] outside {list(LABEL_VALUES)} "
                            f"(0 background, 1 cortical, 2 trabecular): is it a label map?")
    if values.max(initial=0) == 0:
        raise AnalysisError("no femur found: the label map is empty (no voxel labelled 1 or 2)")


def split_femora(label: sitk.Image, min_fraction: float = 0.2) -> list[Femur]:
    """The femora of ``label``, right first.

    Raises
    ------
    AnalysisError
        If the map holds no femur.
    """
    array = sitk.GetArrayViewFromImage(label)
    components, n = ndimage.label(periosteal_mask(array), structure=np.ones((3, 3, 3), bool))
    if n == 0:
        raise AnalysisError("no femur found: the label map is empty (no voxel labelled 1 or 2)")
    sizes = np.bincount(components.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    chosen = [int(order[0]) + 1]
    if n > 1 and sizes[order[1]] >= min_fraction * sizes[order[0]]:
        chosen.append(int(order[1]) + 1)
    femora = []
    for index in chosen:
        mask = components == index
        z, y, x = ndimage.center_of_mass(mask)
        centre = label.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(z)))
        femora.append(Femur("", mask, tuple(float(c) for c in centre), int(sizes[index - 1])))
    if len(femora) == 2:
        left = 0 if femora[0].centre_mm[0] > femora[1].centre_mm[0] else 1
        for i, femur in enumerate(femora):
            femur.side = "left" if i == left else "right"
    else:
        femora[0].side = "left" if femora[0].centre_mm[0] > 0 else "right"
    return sorted(femora, key=lambda f: f.side != "right")
