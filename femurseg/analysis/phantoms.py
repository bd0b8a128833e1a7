"""Calibration phantom definitions: the registry of what a phantom's rods contain.

A :class:`PhantomDefinition` says how many rods a phantom has, the density of the
calibration material in each (mg/cm³), which material it is (``k2hpo4`` or
``hydroxyapatite``), optionally the water density of each rod for phantoms whose
K2HPO4 is dissolved in water (the QCT PRO convention, see :func:`water_corrected`),
and the nominal rod radius. The rods are found in the scan by
:mod:`femurseg.analysis.rods`; nothing here depends on a particular layout except
that the rods are parallel to the scan's z axis, in one row, evenly spaced.

Definitions live in :data:`PHANTOMS` (one :class:`~femurseg.registry.Registry`
instance, entry-point group ``femurseg.phantoms`` for third-party packages). A site
adds its own phantom with one entry or with a JSON file::

    from femurseg.analysis.phantoms import PhantomDefinition, register_phantom
    register_phantom(PhantomDefinition("our_phantom", (0.0, 75.0, 150.0), material="hydroxyapatite"))

    # our_phantom.json, used as --phantom our_phantom.json
    {"name": "our_phantom", "densities_mg_cm3": [0, 75, 150], "material": "hydroxyapatite",
     "rod_radius_mm": 6.0}

Examples
--------
>>> definition = get_phantom("synthetic_k2hpo4")
>>> definition.densities_mg_cm3, definition.material
((0.0, 50.0, 100.0, 200.0), 'k2hpo4')
>>> get_phantom("qrm_bdc_3").densities_mg_cm3
(0.0, 100.0, 200.0)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from femurseg.errors import CalibrationError
from femurseg.registry import Registry

__all__ = ["PhantomDefinition", "PHANTOMS", "MATERIALS", "DEFAULT_PHANTOM", "get_phantom", "register_phantom",
           "load_phantom_json", "user_phantom", "water_corrected", "QCT_PRO_WATER_CORRECTION"]

#: calibration materials a definition may name
MATERIALS: tuple[str, ...] = ("k2hpo4", "hydroxyapatite")

#: the phantom that ``femurseg analyze`` looks for when none is named
DEFAULT_PHANTOM = "synthetic_k2hpo4"

#: ``(slope, intercept)`` of the QCT PRO conversion from the water-referenced fit to HU:
#: ``sigma_ct = sigma_ref - 0.2174``, ``beta_ct = beta_ref + 999.6`` (Mindways QCT PRO User Guide v5.0)
QCT_PRO_WATER_CORRECTION: tuple[float, float] = (0.2174, 999.6)


@dataclass(frozen=True)
class PhantomDefinition:
    """What the rods of one calibration phantom contain.

    Parameters
    ----------
    name
        lower_snake name (the registry key).
    densities_mg_cm3
        Calibration-material density of each rod (mg/cm³), one per rod, in any order:
        rods are matched to densities by their measured HU (the densest rod is the
        brightest, after the water term when ``water_mg_cm3`` is given).
    material
        ``"k2hpo4"`` or ``"hydroxyapatite"``; densities computed with the line are
        equivalent densities of this material.
    water_mg_cm3
        Water density of each rod (mg/cm³) for K2HPO4-in-water phantoms (QCT PRO
        certificates); the fit then uses :func:`water_corrected`.
    rod_radius_mm
        Nominal rod radius; ``None`` searches 4-12 mm. The measured radius is refined
        on the scan either way.
    description
        Free text (maker, model, where the numbers come from).
    """

    name: str
    densities_mg_cm3: tuple[float, ...]
    material: str = "k2hpo4"
    water_mg_cm3: tuple[float, ...] | None = None
    rod_radius_mm: float | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "densities_mg_cm3", tuple(float(d) for d in self.densities_mg_cm3))
        if self.water_mg_cm3 is not None:
            object.__setattr__(self, "water_mg_cm3", tuple(float(w) for w in self.water_mg_cm3))
        if len(self.densities_mg_cm3) < 2:
            raise ValueError(f"phantom {self.name!r}: a line needs at least 2 rods, got {len(self.densities_mg_cm3)}")
        if len(set(self.densities_mg_cm3)) < 2:
            raise ValueError(f"phantom {self.name!r}: the rod densities must not all be equal")
        if self.material not in MATERIALS:
            raise ValueError(f"phantom {self.name!r}: material {self.material!r} is not one of {', '.join(MATERIALS)}")
        if self.water_mg_cm3 is not None and len(self.water_mg_cm3) != len(self.densities_mg_cm3):
            raise ValueError(f"phantom {self.name!r}: {len(self.water_mg_cm3)} water densities for "
                             f"{len(self.densities_mg_cm3)} rods")
        if self.rod_radius_mm is not None and not 1.0 <= self.rod_radius_mm <= 40.0:
            raise ValueError(f"phantom {self.name!r}: rod radius {self.rod_radius_mm} mm is outside 1-40 mm")

    @property
    def n_rods(self) -> int:
        return len(self.densities_mg_cm3)

    def expected_order(self) -> list[int]:
        """Rod indices from the darkest to the brightest expected HU (nominal 1.2 HU per mg/cm³)."""
        water = self.water_mg_cm3 or (1000.0,) * self.n_rods
        hu = [1.2 * d + (w - 1000.0) for d, w in zip(self.densities_mg_cm3, water)]
        return sorted(range(self.n_rods), key=lambda i: hu[i])

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra")
        out["densities_mg_cm3"] = list(self.densities_mg_cm3)
        if self.water_mg_cm3 is not None:
            out["water_mg_cm3"] = list(self.water_mg_cm3)
        return out


PHANTOMS: Registry = Registry("phantom", entry_point_group="femurseg.phantoms")
"""Phantom name → function returning its :class:`PhantomDefinition`."""


def register_phantom(definition: PhantomDefinition) -> PhantomDefinition:
    """Add ``definition`` to :data:`PHANTOMS` under its name (a duplicate name raises)."""
    PHANTOMS.register(definition.name, lambda: definition)
    return definition


register_phantom(PhantomDefinition(
    "synthetic_k2hpo4", (0.0, 50.0, 100.0, 200.0), material="k2hpo4", rod_radius_mm=8.0,
    description="the phantom of femurseg's synthetic QCT (femurseg.data.synthetic): four K2HPO4 rods of "
                "7-9 mm radius in a water-equivalent block under the patient"))
register_phantom(PhantomDefinition(
    "qrm_bdc_3", (0.0, 100.0, 200.0), material="hydroxyapatite",
    description="QRM Bone Density Calibration phantom, 3 inserts (0, 100, 200 mg HA/cm³ nominal; use the "
                "values of your phantom's certificate)"))
register_phantom(PhantomDefinition(
    "qrm_bdc_6", (0.0, 100.0, 200.0, 400.0, 600.0, 800.0), material="hydroxyapatite",
    description="QRM Bone Density Calibration phantom, 6 inserts (0-800 mg HA/cm³ nominal; use the values of "
                "your phantom's certificate)"))


def load_phantom_json(path: str | os.PathLike[str]) -> PhantomDefinition:
    """Read a definition from JSON (the keys of :class:`PhantomDefinition`).

    Raises
    ------
    CalibrationError
        If the file cannot be read or does not define a phantom.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CalibrationError(f"{path}: cannot read the phantom definition ({error})") from error
    if not isinstance(data, dict) or "densities_mg_cm3" not in data:
        raise CalibrationError(f"{path}: a phantom definition is a JSON object with 'densities_mg_cm3' "
                               "(and optionally name, material, water_mg_cm3, rod_radius_mm, description)")
    known = {"name", "densities_mg_cm3", "material", "water_mg_cm3", "rod_radius_mm", "description"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CalibrationError(f"{path}: unknown keys {unknown}; valid keys: {sorted(known)}")
    try:
        return PhantomDefinition(**{"name": path.stem.replace("-", "_").lower(), **data})
    except (TypeError, ValueError) as error:
        raise CalibrationError(f"{path}: {error}") from error


def get_phantom(name: str | os.PathLike[str]) -> PhantomDefinition:
    """The definition registered as ``name``, or read from ``name`` when it is a ``.json`` file.

    Raises
    ------
    CalibrationError
        Unknown name (with the valid names) or unreadable file.
    """
    text = str(name)
    if text.lower().endswith(".json"):
        return load_phantom_json(text)
    try:
        return PHANTOMS.create(text)
    except KeyError as error:
        raise CalibrationError(str(error.args[0])) from None


def user_phantom(densities: Sequence[float], material: str = "k2hpo4",
                 rod_radius_mm: float | None = None) -> PhantomDefinition:
    """A definition from densities given on the command line (``--calibration-densities``)."""
    try:
        return PhantomDefinition("user", tuple(densities), material=material, rod_radius_mm=rod_radius_mm,
                                 description="rod densities given by the user")
    except ValueError as error:
        raise CalibrationError(str(error)) from error


def water_corrected(hu: Sequence[float], water: Sequence[float]) -> list[float]:
    """HU minus the water density of each rod: the left side of the QCT PRO fit.

    QCT PRO phantoms dissolve K2HPO4 in water whose density differs between rods, so
    the rods are fitted as ``HU - rho_water = beta_ref + sigma_ref * rho_K2HPO4`` and
    converted with :data:`QCT_PRO_WATER_CORRECTION` to ``HU = beta_ct + sigma_ct * rho``
    (:func:`femurseg.analysis.calibration.fit_phantom_line` does both).
    """
    return [float(h) - float(w) for h, w in zip(hu, water)]
