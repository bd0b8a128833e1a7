"""Implicit-surface model of the left hemipelvis next to the hip joint.

Same patient frame as :mod:`femurseg.data.synthetic.femur` (femoral head centre
at the origin, LPS). The acetabulum is a thick cup around the head, open
laterally, inferiorly and anteriorly, separated from the head by the joint
space; the supra-acetabular ilium rises above it, the ischium runs down and
back to the ischial tuberosity and the pubic rami run forwards and medially to
the symphysis, closing the obturator foramen. None of it is labelled: it is the
hard negative next to the femoral head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from femurseg.data.synthetic.sdf import Points, ellipsoid, round_cone, smooth_union, sphere, unit

__all__ = ["PelvisParams", "PelvisGeometry", "sample_pelvis"]


@dataclass(frozen=True)
class PelvisParams:
    """Sampled shape of the hemipelvis (mm and degrees)."""

    joint_space: float
    cup_wall: float
    cup_inclination: float
    cup_anteversion: float
    cup_depth: float
    midline_offset: float
    ilium_tilt: float
    ischium_drop: float
    pubis_drop: float
    cortex: float


def sample_pelvis(rng: np.random.Generator, head_radius: float) -> PelvisParams:
    """Sample the hemipelvis for a femoral head of ``head_radius`` mm."""
    narrow = rng.random() < 0.25  # a quarter of subjects with a narrowed joint
    return PelvisParams(
        joint_space=float(rng.uniform(1.0, 2.0) if narrow else rng.uniform(2.0, 5.0)),
        cup_wall=float(rng.uniform(5.0, 9.0)),
        cup_inclination=float(rng.uniform(38.0, 52.0)),
        cup_anteversion=float(rng.uniform(10.0, 25.0)),
        cup_depth=float(rng.uniform(0.0, 0.18) * head_radius),
        midline_offset=float(head_radius * 4.0 + rng.uniform(-6.0, 8.0)),
        ilium_tilt=float(rng.uniform(10.0, 25.0)),
        ischium_drop=float(rng.uniform(55.0, 70.0)),
        pubis_drop=float(rng.uniform(20.0, 35.0)),
        cortex=float(rng.uniform(1.0, 2.0)),
    )


class PelvisGeometry:
    """Key points of the hemipelvis and its signed distance."""

    def __init__(self, params: PelvisParams, head_radius: float) -> None:
        self.p = params
        self.r = head_radius
        inc, ant = np.radians(params.cup_inclination), np.radians(params.cup_anteversion)
        # Opening direction of the cup: lateral, inferior, anterior (-y).
        self.opening = unit([np.sin(inc) * np.cos(ant), -np.sin(inc) * np.sin(ant), -np.cos(inc)])
        mid = -params.midline_offset
        r = head_radius
        self.symphysis = np.array([mid + 4.0, -0.9 * r - 22.0, -params.pubis_drop])
        self.tuberosity = np.array([-0.5 * r, 1.5 * r + 5.0, -params.ischium_drop])
        self.ilium_centre = np.array([0.1 * r, 0.35 * r, 1.9 * r + 12.0])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounding box ``(low, high)`` in the patient frame."""
        r = self.r + self.p.joint_space + self.p.cup_wall + 6.0
        pts = np.array([[-r, -r, -r], [r, r, r], self.symphysis, self.tuberosity,
                        self.ilium_centre + [0.8 * self.r, 1.7 * self.r, 2.3 * self.r],
                        self.ilium_centre - [0.8 * self.r, 1.7 * self.r, 0.0]])
        return pts.min(axis=0) - 14.0, pts.max(axis=0) + 14.0

    def periosteal(self, q: Points) -> np.ndarray:
        """Approximate signed distance (mm) to the outer bone surface.

        The acetabular cup (a thick shell cut by the rim plane) joins the
        anterior column (to the superior pubic ramus), the posterior column (to
        the ischial tuberosity), the thin quadrilateral plate medially and the
        iliac body above; the inferior ramus closes the obturator foramen.
        """
        p, r = self.p, self.r
        cavity_r = r + p.joint_space
        outer = cavity_r + p.cup_wall
        o = self.opening.astype(np.float32)
        rim = q[0] * o[0] + q[1] * o[1] + q[2] * o[2] - np.float32(p.cup_depth)
        cup = sphere(q, -self.opening * 0.12 * r, outer + 0.12 * r)
        cup = -smooth_union(-cup, -rim, 3.0)  # cut by the rim plane
        tilt = np.radians(p.ilium_tilt)
        ilium_frame = np.stack([unit([np.cos(tilt), 0.0, -np.sin(tilt)]), [0.0, 1.0, 0.0],
                                unit([np.sin(tilt), 0.0, np.cos(tilt)])])
        ilium = ellipsoid(q, self.ilium_centre, (0.7 * r, 1.6 * r, 2.2 * r), ilium_frame)
        posterior = round_cone(q, np.array([-0.6 * r, 1.1 * r, 1.1 * r]), self.tuberosity + [0.0, -4.0, 10.0],
                               0.6 * r, 0.45 * r)
        anterior = round_cone(q, np.array([-0.15 * r, -1.0 * r, 1.2 * r]), np.array([-0.5 * r, -0.95 * r, -0.1 * r]),
                              0.42 * r, 0.5 * r)
        plate = ellipsoid(q, np.array([-(cavity_r + 3.0), 0.15 * r, -0.1 * r]), (4.0, 1.25 * r, 1.3 * r))
        tuber = ellipsoid(q, self.tuberosity + [0.0, 4.0, -4.0], (0.55 * r, 0.75 * r, 0.9 * r))
        pubis = round_cone(q, np.array([-0.5 * r, -0.95 * r, -0.1 * r]), self.symphysis, 0.5 * r, 0.4 * r)
        ramus = round_cone(q, self.symphysis + [0.0, 4.0, -8.0], self.tuberosity + [0.0, -6.0, -6.0],
                           0.28 * r, 0.32 * r)
        d = smooth_union(cup, plate, 8.0)
        d = smooth_union(d, anterior, 8.0)
        d = smooth_union(d, posterior, 10.0)
        d = smooth_union(d, ilium, 14.0)
        d = smooth_union(d, tuber, 8.0)
        d = smooth_union(d, pubis, 8.0)
        d = smooth_union(d, ramus, 8.0)
        return -smooth_union(-d, sphere(q, (0.0, 0.0, 0.0), cavity_r), 1.5)

    def cortex(self, q: Points) -> np.ndarray:
        """Cortical thickness (mm): thin shell, thick subchondral plate around the cup."""
        depth = sphere(q, (0.0, 0.0, 0.0), self.r + self.p.joint_space)
        plate = np.clip(1.0 - depth / np.float32(6.0), 0.0, 1.0)
        return np.float32(self.p.cortex) + np.float32(1.8) * plate
