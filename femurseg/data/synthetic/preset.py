"""Size and quality presets of the synthetic hip CT."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["SynthPreset", "PRESETS"]


@dataclass(frozen=True)
class SynthPreset:
    """How a synthetic scan is sampled.

    Parameters
    ----------
    name
        Preset name, recorded in each subject's meta.
    inplane
        Range ``(low, high)`` of the in-plane voxel spacing in mm (uniform).
    slices
        Slice spacings in mm to choose from (uniform choice).
    field
        ``"hip"``: a tight box around the proximal femur and acetabulum;
        ``"scan"``: the clinical field of view of one hip, from the lateral
        skin to near the midline and from the front of the hip to under the
        table, so that the calibration phantom is in view.
    min_cortex_voxels
        Lower bound of the cortical thickness in units of the largest voxel
        spacing (0 keeps the anatomical thickness). Coarse presets use 1 so
        that the cortex is at least one voxel thick on average.
    noise
        Range of the noise standard deviation in HU.
    shaft_below
        Range ``(low, high)`` in mm of how far below the lesser trochanter a hip
        field of view ends (uniform).
    thigh_only
        Probability that a scan is a thigh-level field of view instead of a hip
        one: 90-160 mm of the shaft in its muscles, from just below the lesser
        trochanter to mid-thigh (as in the thigh slices of real CT cohorts).
    knee
        Probability that a scan is a knee-level field of view: the distal femur
        (metaphysis and condyles) with the patella, the tibial plateau and the
        fibular head (labelled background) in a leg that narrows to the knee.
        When above 0 every subject has a knee (:mod:`femurseg.data.synthetic.knee`)
        and thigh fields of view may reach it; 0 keeps the rounded shaft end and
        the files of the presets that predate it unchanged.

    Examples
    --------
    >>> from dataclasses import replace
    >>> fine_tiny = replace(PRESETS["tiny"], inplane=(1.0, 1.0), slices=(1.0,))
    """

    name: str
    inplane: tuple[float, float]
    slices: tuple[float, ...]
    field: Literal["hip", "scan"]
    min_cortex_voxels: float
    noise: tuple[float, float]
    shaft_below: tuple[float, float] = (35.0, 50.0)
    thigh_only: float = 0.0
    knee: float = 0.0
    knee_anatomy: int = 1

    def __post_init__(self) -> None:
        lo, hi = self.inplane
        if not 0.1 <= lo <= hi:
            raise ValueError(f"preset {self.name!r}: inplane range {self.inplane} is not 0.1 <= low <= high")
        if not self.slices or min(self.slices) < 0.1:
            raise ValueError(f"preset {self.name!r}: slices {self.slices} must be non-empty and >= 0.1 mm")
        if self.field not in ("hip", "scan"):
            raise ValueError(f"preset {self.name!r}: field must be 'hip' or 'scan', not {self.field!r}")
        if self.noise[0] < 0 or self.noise[0] > self.noise[1]:
            raise ValueError(f"preset {self.name!r}: noise range {self.noise} is invalid")
        if not 0.0 <= self.shaft_below[0] <= self.shaft_below[1] <= 300.0:
            raise ValueError(f"preset {self.name!r}: shaft_below {self.shaft_below} is not 0 <= low <= high <= 300")
        if not 0.0 <= self.thigh_only <= 1.0:
            raise ValueError(f"preset {self.name!r}: thigh_only {self.thigh_only} is not a probability")
        if not 0.0 <= self.knee <= 1.0:
            raise ValueError(f"preset {self.name!r}: knee {self.knee} is not a probability")
        if self.knee_anatomy not in (1, 2):
            raise ValueError(f"preset {self.name!r}: knee_anatomy must be 1 or 2, not {self.knee_anatomy!r}")
        if self.knee > 0.0 and self.field != "scan":
            raise ValueError(f"preset {self.name!r}: knee fields of view need field='scan'")


PRESETS: dict[str, SynthPreset] = {
    "tiny": SynthPreset("tiny", inplane=(3.5, 4.0), slices=(3.5, 4.0), field="hip",
                        min_cortex_voxels=1.0, noise=(10.0, 25.0)),
    "quick": SynthPreset("quick", inplane=(1.7, 2.0), slices=(1.75, 2.0), field="scan",
                         min_cortex_voxels=1.0, noise=(10.0, 30.0)),
    "full": SynthPreset("full", inplane=(0.6, 1.0), slices=(0.625, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0),
                        field="scan", min_cortex_voxels=0.0, noise=(10.0, 40.0)),
    # Sim-to-real training data of the bundled default model (docs/model_card.md): anatomical
    # (partial-volume) cortex rendered at 0.9-1.3 mm, shafts to mid-thigh and thigh-only scans.
    "transfer": SynthPreset("transfer", inplane=(0.9, 1.3), slices=(1.0, 1.25, 1.5, 2.0, 2.5, 3.0), field="scan",
                            min_cortex_voxels=0.0, noise=(8.0, 45.0), shaft_below=(40.0, 200.0), thigh_only=0.35),
    # ``transfer`` plus the knee: condyles, patella and tibia, 20 % knee-level fields of view.
    "transfer_knee": SynthPreset("transfer_knee", inplane=(0.9, 1.3), slices=(1.0, 1.25, 1.5, 2.0, 2.5, 3.0),
                                 field="scan", min_cortex_voxels=0.0, noise=(8.0, 45.0), shaft_below=(40.0, 200.0),
                                 thigh_only=0.35, knee=0.2),
    # ``transfer_knee`` with real knees' intercondylar notch (two posterior condylar lobes).
    "transfer_knee2": SynthPreset("transfer_knee2", inplane=(0.9, 1.3), slices=(1.0, 1.25, 1.5, 2.0, 2.5, 3.0),
                                  field="scan", min_cortex_voxels=0.0, noise=(8.0, 45.0), shaft_below=(40.0, 200.0),
                                  thigh_only=0.35, knee=0.2, knee_anatomy=2),
}
"""Named presets: ``tiny`` for unit tests, ``quick`` for CPU training, ``full`` clinical,
``transfer`` for the default models femur-ct-v1/v2 (hip and thigh fields of view), ``transfer_knee``
for femur-ct-v3 (hip, thigh and knee), ``transfer_knee2`` for femur-ct-v4 and v5 (real knees' notch)."""
