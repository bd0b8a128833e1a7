"""The label convention of femurseg, in one place (DESIGN.md §3).

A label map is ``uint8``: :data:`BACKGROUND` 0, :data:`CORTICAL` 1 (cortical bone)
and :data:`TRABECULAR` 2 (trabecular bone, including the shaft's marrow cavity).
Everything else is derived here:

- the two surfaces the networks learn: the **periosteal** mask (label ≥ 1, the
  whole femur) and the **endosteal** mask (label 2, the region inside the
  endosteal surface, which is the trabecular compartment);
- the three compartments reported: ``periosteal`` (integral), ``cortical``,
  ``trabecular``;
- the training targets and their classes (``periosteal`` and ``endosteal``
  binary, ``compartments`` 3-class).

Names: the *endosteal mask* and the *trabecular compartment* are the same voxels;
"endosteal" names the contour/target, "trabecular" the compartment in reports.

Examples
--------
>>> import numpy as np
>>> label = np.array([0, 1, 2, 2], np.uint8)
>>> periosteal_mask(label).tolist(), endosteal_mask(label).tolist()
([False, True, True, True], [False, False, True, True])
>>> compose(periosteal_mask(label), endosteal_mask(label)).tolist()
[0, 1, 2, 2]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

__all__ = [
    "BACKGROUND", "CORTICAL", "TRABECULAR", "LABEL_VALUES", "Target", "TARGETS", "TARGET_CLASSES", "OUT_CHANNELS",
    "COMPARTMENTS", "MASKS", "periosteal_mask", "endosteal_mask", "cortical_mask", "compose", "target_of",
]

BACKGROUND, CORTICAL, TRABECULAR = 0, 1, 2
#: the values a label map may hold
LABEL_VALUES: tuple[int, ...] = (BACKGROUND, CORTICAL, TRABECULAR)

Target = Literal["periosteal", "endosteal", "compartments"]
TARGETS: tuple[str, ...] = ("periosteal", "endosteal", "compartments")
#: class names of each training target, in the order of the network's output channels
TARGET_CLASSES: dict[str, list[str]] = {
    "periosteal": ["background", "periosteal"],
    "endosteal": ["background", "endosteal"],
    "compartments": ["background", "cortical", "trabecular"],
}
OUT_CHANNELS: dict[str, int] = {t: len(c) for t, c in TARGET_CLASSES.items()}

#: reported compartment -> label values it covers
COMPARTMENTS: dict[str, tuple[int, ...]] = {
    "periosteal": (CORTICAL, TRABECULAR), "cortical": (CORTICAL,), "trabecular": (TRABECULAR,),
}


def periosteal_mask(label: Any) -> Any:
    """The whole femur (inside the periosteal surface): label ≥ cortical. Works on arrays and tensors."""
    return label >= CORTICAL


def endosteal_mask(label: Any) -> Any:
    """Inside the endosteal surface, i.e. the trabecular compartment: label == trabecular."""
    return label == TRABECULAR


def cortical_mask(label: Any) -> Any:
    """The cortical shell between the two surfaces: label == cortical."""
    return label == CORTICAL


#: evaluation mask name -> function of a label map
MASKS: dict[str, Callable[[Any], Any]] = {
    "periosteal": periosteal_mask, "endosteal": endosteal_mask, "cortical": cortical_mask,
}


def compose(periosteal: np.ndarray, endosteal: np.ndarray) -> np.ndarray:
    """The ``uint8`` label map of two boolean masks (endosteal voxels count only inside the periosteal mask)."""
    periosteal = np.asarray(periosteal, bool)
    inner = np.asarray(endosteal, bool) & periosteal
    return np.where(inner, np.uint8(TRABECULAR), np.where(periosteal, np.uint8(CORTICAL), np.uint8(BACKGROUND)))


def target_of(label: Any, target: str) -> Any:
    """Class indices of a training ``target`` from a label map (array or tensor, same type back).

    Raises
    ------
    ValueError
        If the target is unknown.
    """
    if target == "periosteal":
        return periosteal_mask(label)
    if target == "endosteal":
        return endosteal_mask(label)
    if target == "compartments":
        return label
    raise ValueError(f"unknown target {target!r}; valid: {', '.join(TARGETS)}")
