"""Density-modulus laws for finite-element models of the femur, and binned materials.

A law maps a bone density to an elastic modulus, ``E = a · ρ^b`` (MPa, ``ρ`` in
g/cm³ of the kind the law was fitted on: apparent or ash density). The laws live in
one registry, :data:`LAWS` (the :class:`~femurseg.registry.Registry` of femurseg),
filled here by explicit registration:

=========================  =============  =========  ================================================
name                       a (MPa)        b          fitted on
=========================  =============  =========  ================================================
``morgan2003_femoral_neck``  6850         1.49       apparent density, femoral neck trabecular bone
                                                     (Morgan, Bayraktar, Keaveny 2003, J Biomech 36:897)
``morgan2003_pooled``        8920         1.83       apparent density, pooled sites (same paper)
``keyak1994``                33900        2.20       ash density, proximal tibia trabecular bone
                                                     (Keyak, Lee, Skinner 1994, J Biomed Mater Res 28:1329)
=========================  =============  =========  ================================================

The density that reaches the law is ``ρ_law = scale · ρ + offset`` with ``ρ`` the
density map in g/cm³ (the map is in mg/cm³, e.g. K2HPO4-equivalent from a QCT
calibration). The default ``scale = 1, offset = 0`` takes the map as the law's
density kind; converting QCT-equivalent to ash or apparent density is a choice of
the study (published conversions differ by calibration material), so it is an
explicit parameter, never a silent default.

Elements are grouped into ``bins`` materials of equal density width (Abaqus and
most solvers want a finite list of materials); each material takes the mean density
of its elements, and its modulus follows from the law. Densities at or below zero
get ``min_modulus`` (the power law is zero or undefined there).

Examples
--------
>>> LAWS.get("morgan2003_femoral_neck")(np.array([0.5]))
array([2438.68...])  # doctest: +ELLIPSIS
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from femurseg.registry import Registry

__all__ = ["PowerLaw", "LAWS", "Materials", "bin_materials"]


@dataclass(frozen=True)
class PowerLaw:
    """``E = a · ρ^b`` MPa with ``ρ`` in g/cm³ of the ``density`` kind the law was fitted on."""

    a: float
    b: float
    density: str
    reference: str

    def __call__(self, rho_g_cm3: np.ndarray) -> np.ndarray:
        rho = np.clip(np.asarray(rho_g_cm3, float), 0.0, None)
        return self.a * rho ** self.b


LAWS: Registry = Registry("density-modulus law")
LAWS.register("morgan2003_femoral_neck", PowerLaw(6850.0, 1.49, "apparent",
              "Morgan, Bayraktar, Keaveny 2003, J Biomech 36:897-904 (femoral neck)"))
LAWS.register("morgan2003_pooled", PowerLaw(8920.0, 1.83, "apparent",
              "Morgan, Bayraktar, Keaveny 2003, J Biomech 36:897-904 (pooled sites)"))
LAWS.register("keyak1994", PowerLaw(33900.0, 2.20, "ash",
              "Keyak, Lee, Skinner 1994, J Biomed Mater Res 28:1329-1336"))


@dataclass
class Materials:
    """Binned materials of a mesh.

    Attributes
    ----------
    element_material
        ``(M,)`` 0-based material index per element.
    density_mg_cm3, modulus_mpa
        ``(K,)`` mean density (of the map) and modulus per material.
    bounds_mg_cm3
        ``(K, 2)`` density range of each bin.
    count
        ``(K,)`` elements per material.
    """

    element_material: np.ndarray
    density_mg_cm3: np.ndarray
    modulus_mpa: np.ndarray
    bounds_mg_cm3: np.ndarray
    count: np.ndarray


def bin_materials(density_mg_cm3: np.ndarray, law: PowerLaw, bins: int = 50, scale: float = 1.0,
                  offset: float = 0.0, min_modulus: float = 1.0) -> Materials:
    """Group element densities into ``bins`` equal-width materials and apply the law to each bin's mean.

    Empty bins are dropped; material indices are renumbered in density order.
    """
    density = np.asarray(density_mg_cm3, float)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    low, high = float(density.min()), float(density.max())
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, density, side="right") - 1, 0, bins - 1)
    used, element_material = np.unique(index, return_inverse=True)
    count = np.bincount(element_material).astype(np.int64)
    mean = np.bincount(element_material, weights=density) / count
    modulus = np.maximum(law(scale * mean / 1000.0 + offset), min_modulus)
    return Materials(element_material.astype(np.int64), mean, modulus,
                     np.stack([edges[used], edges[used + 1]], axis=1), count)
