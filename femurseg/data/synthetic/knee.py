"""Implicit-surface model of the knee end of the femur and its neighbours.

Real thigh-to-hip CT often reaches the knee: the distal femur widens into the
metaphysis and ends in two condyles (a trochlear groove in front, the
intercondylar notch behind) with the patella in front of it and the tibial
plateau and fibular head below. A network trained without them has never seen
a femur that is wider than the shaft, and calls the condyles background. This
module adds them to the femur frame of :mod:`femurseg.data.synthetic.femur`
(``x`` lateral for a left hip, ``y`` posterior, ``z`` superior), at
``knee_centre``, the lowest point between the condyles.

Ranges (adult, both sexes): bicondylar width 70-90 mm, antero-posterior depth of
the condyles 56-70 mm, patella 38-48 × 18-24 × 34-46 mm, femoral length
400-480 mm (head centre to condyles); see ``docs/synthetic.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from femurseg.data.synthetic.sampling import size_coupled
from femurseg.data.synthetic.sdf import Points, ellipsoid, round_cone, smooth_subtract, smooth_union, sphere

__all__ = ["KneeParams", "KneeGeometry", "sample_knee"]


@dataclass(frozen=True)
class KneeParams:
    """Sampled distal femur, patella, tibia and leg (mm; densities relative to the subject's trabecular bone)."""

    length: float
    width: float
    depth: float
    medial_drop: float
    notch: float
    groove: float
    patella: tuple[float, float, float]
    patella_height: float
    cartilage: float
    joint_gap: float
    cortex: float
    density: float
    bone_density: float
    leg_radius: float
    notch_centre: float = 0.0
    notch_height: float = 28.0
    notch_depth: float = 0.42
    anatomy: int = 1


def sample_knee(rng: np.random.Generator, size: float, fat: float, anatomy: int = 1) -> KneeParams:
    """Sample a knee; ``size`` in [0, 1] couples the dimensions, ``fat`` (mm) the leg girth.

    ``anatomy`` 1 is femur-ct-v3's knee: an intercondylar notch 14-22 mm wide that
    reaches 28 mm above the joint, so that the widest condylar sections show only
    a dent behind. In real knees the notch is about a quarter of the bicondylar
    width (notch width index 0.22-0.32) and its roof rises high enough that most
    axial slices through the condyles show two separate posterior lobes (as in
    the knee slices of the real-CT benchmark); ``anatomy`` 2 draws such a notch,
    34-46 mm tall and half the condyles' depth deep, after every other parameter,
    so the rest of the knee is unchanged.
    """

    def jitter(lo: float, hi: float, spread: float = 0.3) -> float:
        return size_coupled(rng, size, lo, hi, spread)

    width = jitter(70.0, 90.0)
    params = KneeParams(
        length=jitter(330.0, 400.0),
        width=width,
        depth=jitter(56.0, 70.0),
        medial_drop=float(rng.uniform(0.0, 4.0)),
        notch=float(rng.uniform(0.17, 0.25)),
        groove=float(rng.uniform(3.0, 8.0)),
        patella=(jitter(19.0, 24.0), jitter(9.0, 12.0), jitter(17.0, 23.0)),
        patella_height=float(rng.uniform(28.0, 55.0)),
        cartilage=float(rng.uniform(3.0, 6.0)),
        joint_gap=float(rng.uniform(4.0, 8.0)),
        cortex=float(rng.uniform(0.8, 1.8)),
        density=float(rng.uniform(1.0, 1.6)),
        bone_density=float(rng.uniform(0.9, 1.5)),
        leg_radius=float(rng.uniform(0.68, 0.8) * width + 0.4 * fat),
    )
    if anatomy == 1:
        return params
    if anatomy != 2:
        raise ValueError(f"knee anatomy must be 1 or 2, not {anatomy!r}")
    return replace(params, notch=float(rng.uniform(0.22, 0.32)), notch_centre=float(rng.uniform(4.0, 10.0)),
                   notch_height=float(rng.uniform(30.0, 36.0)), notch_depth=float(rng.uniform(0.44, 0.52)), anatomy=2)


class KneeGeometry:
    """The knee of one femur, in the femur frame.

    Parameters
    ----------
    params
        The sampled knee.
    junction, shaft_dir, shaft_radius
        The femur's neck-shaft junction, distal shaft direction and shaft radius
        (:class:`~femurseg.data.synthetic.femur.FemurGeometry`).
    """

    def __init__(self, params: KneeParams, junction: np.ndarray, shaft_dir: np.ndarray, shaft_radius: float) -> None:
        self.p = params
        self.shaft_radius = float(shaft_radius)
        self.junction = np.asarray(junction, dtype=np.float64)
        self.shaft_dir = np.asarray(shaft_dir, dtype=np.float64)
        self.centre = self.junction + params.length * self.shaft_dir
        w, d = params.width, params.depth
        k = self.centre
        self.patella_centre = k + np.array([0.04 * w, -0.48 * d - params.cartilage - params.patella[1],
                                            params.patella_height])
        self.tibia_top = k + np.array([0.0, 0.08 * d, -params.joint_gap])
        self.fibula_head = k + np.array([0.38 * w, 0.3 * d, -params.joint_gap - 28.0])

    def _at(self, offset: tuple[float, float, float]) -> np.ndarray:
        return self.centre + np.asarray(offset, dtype=np.float64)

    def distal_femur(self, q: Points) -> np.ndarray:
        """Signed distance (mm) of the distal femur: shaft end, metaphysis, condyles, trochlea, notch."""
        p, w, d, s = self.p, self.p.width, self.p.depth, self.shaft_radius
        shaft = round_cone(q, self.junction + 240.0 * self.shaft_dir, self._at((0.0, 0.0, 70.0)), s * 0.93, s * 0.98)
        meta = ellipsoid(q, self._at((0.0, 0.05 * d, 52.0)), (0.36 * w, 0.36 * d, 50.0))
        lateral = ellipsoid(q, self._at((0.25 * w, 0.12 * d, 23.0)), (0.2 * w, 0.43 * d, 24.0))
        medial = ellipsoid(q, self._at((-0.25 * w, 0.12 * d, 23.0 - p.medial_drop)), (0.21 * w, 0.45 * d, 24.0))
        trochlea = ellipsoid(q, self._at((0.0, -0.18 * d, 38.0)), (0.4 * w, 0.3 * d, 30.0))
        r = 0.12 * w
        groove_y = -0.48 * d - r + p.groove
        groove = round_cone(q, self._at((0.0, groove_y, 5.0)), self._at((0.0, groove_y, 90.0)), r, r)
        notch = ellipsoid(q, self._at((0.0, 0.5 * d, p.notch_centre)), (0.5 * p.notch * w, p.notch_depth * d, p.notch_height))
        condyles = smooth_union(lateral, medial, 6.0)
        end = smooth_union(condyles, trochlea, 8.0)
        end = smooth_subtract(end, groove, 4.0)
        if p.anatomy == 1:  # femur-ct-v3's knee: the metaphysis refills most of the notch
            end = smooth_subtract(end, notch, 4.0)
            end = smooth_union(end, meta, 14.0)
            return smooth_union(shaft, end, 24.0)
        end = smooth_union(end, meta, 14.0)
        return smooth_subtract(smooth_union(shaft, end, 24.0), notch, 4.0)

    def other_bones(self, q: Points) -> np.ndarray:
        """Signed distance (mm) of the patella, tibia and fibula (never labelled femur)."""
        w, d = self.p.width, self.p.depth
        patella = ellipsoid(q, self.patella_centre, self.p.patella)
        t = self.tibia_top
        plateau = ellipsoid(q, t + np.array([0.0, 0.0, -16.0]), (0.5 * w, 0.42 * d, 16.0))
        shaft = round_cone(q, t + np.array([0.0, 0.05 * d, -30.0]), t + np.array([0.0, 0.05 * d, -260.0]),
                           0.22 * w, 0.15 * w)
        tuberosity = ellipsoid(q, t + np.array([0.0, -0.38 * d, -45.0]), (0.14 * w, 0.12 * d, 20.0))
        tibia = smooth_union(smooth_union(plateau, shaft, 22.0), tuberosity, 10.0)
        fibula = smooth_union(sphere(q, self.fibula_head, 11.0),
                              round_cone(q, self.fibula_head, self.fibula_head + np.array([0.0, 0.0, -240.0]), 8.0, 6.0),
                              8.0)
        return np.minimum(np.minimum(patella, tibia), fibula)

    def weight(self, q: Points) -> np.ndarray:
        """1 in the epiphysis and metaphysis (up to 60 mm above the condyles), 0 above 130 mm."""
        h = q[2] - np.float32(self.centre[2])
        t = np.clip((h - np.float32(60.0)) / np.float32(70.0), 0.0, 1.0)
        return np.float32(1.0) - t * t * (3.0 - 2.0 * t)

    def corners(self) -> np.ndarray:
        """Femur-frame points whose box holds the distal femur (``(N, 3)``)."""
        half = 0.6 * self.p.width
        axes = np.vstack([np.eye(3), -np.eye(3)])
        return np.array([self._at((0.0, 0.0, 40.0)) + half * e for e in axes])

    def bone_corners(self) -> np.ndarray:
        """Femur-frame points whose box holds the patella, tibial plateau and fibular head."""
        w, d = self.p.width, self.p.depth
        axes = np.vstack([np.eye(3), -np.eye(3)])
        pts = [self.patella_centre + 28.0 * e for e in axes]
        pts += [self.tibia_top + np.array([0.0, 0.0, -60.0]) + np.array([0.6 * w, 0.6 * d, 70.0]) * e for e in axes]
        pts += [self.tibia_top + np.array([0.0, 0.0, -260.0])]
        return np.array(pts)
