"""Implicit-surface model of a left proximal femur.

The femur lives in a patient frame with the femoral head centre at the origin,
``x`` towards the patient's left (lateral for a left hip), ``y`` posterior and
``z`` superior (DICOM LPS). The periosteal surface is a smooth union of a
sphere (head), an elliptic tube with a waist (neck), an ellipsoid
(intertrochanteric mass), a tapered capsule (shaft), two ellipsoids (greater and
lesser trochanter) and a ridge (intertrochanteric crest). The endosteal surface
is the periosteal one moved inwards by a regional cortical thickness.

Ranges (adult, both sexes) are those of DESIGN.md section 8; their sources are
listed in ``docs/synthetic.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from femurseg.data.synthetic.knee import KneeGeometry, KneeParams
from femurseg.data.synthetic.sampling import size_coupled
from femurseg.data.synthetic.sdf import (
    Points,
    ellipsoid,
    elliptic_tube,
    round_cone,
    smooth_union,
    sphere,
    unit,
)

__all__ = ["FemurParams", "FemurGeometry", "sample_femur", "REGIONS"]

REGIONS: tuple[str, ...] = ("head", "neck_superior", "calcar", "trochanter", "shaft")
"""Cortical regions whose thickness is sampled and reported."""


@dataclass(frozen=True)
class FemurParams:
    """Sampled shape of one femur (mm and degrees)."""

    head_radius: float
    neck_shaft_angle: float
    anteversion: float
    shaft_adduction: float
    neck_length: float
    neck_height: float
    neck_width: float
    shaft_radius: float
    trochanter_width: float
    greater_trochanter_height: float
    lesser_trochanter_size: float
    cortex_shaft: float
    cortex_calcar: float
    cortex_neck_superior: float
    cortex_head: float
    cortex_trochanter: float
    flexion: float
    abduction: float
    rotation: float


def sample_femur(rng: np.random.Generator, size: float) -> FemurParams:
    """Sample a femur; ``size`` in [0, 1] couples the dimensions (small to large)."""

    def jitter(lo: float, hi: float, spread: float = 0.35) -> float:
        return size_coupled(rng, size, lo, hi, spread)

    head = jitter(20.0, 26.0, 0.15)
    return FemurParams(
        head_radius=head,
        neck_shaft_angle=float(rng.uniform(120.0, 140.0)),
        anteversion=float(rng.uniform(5.0, 25.0)),
        shaft_adduction=float(rng.uniform(5.0, 9.0)),
        neck_length=jitter(44.0, 58.0),
        neck_height=jitter(28.0, 36.0, 0.2),
        neck_width=jitter(24.0, 30.0, 0.2),
        shaft_radius=jitter(12.0, 16.0, 0.2),
        trochanter_width=jitter(20.0, 26.0),
        greater_trochanter_height=float(rng.uniform(-4.0, 6.0)),
        lesser_trochanter_size=float(rng.uniform(6.0, 9.0)),
        cortex_shaft=float(rng.uniform(4.0, 7.0)),
        cortex_calcar=float(rng.uniform(2.0, 4.0)),
        cortex_neck_superior=float(rng.uniform(0.5, 2.0)),
        cortex_head=float(rng.uniform(0.3, 1.0)),
        cortex_trochanter=float(rng.uniform(0.3, 1.0)),
        flexion=float(rng.uniform(-6.0, 8.0)),
        abduction=float(rng.uniform(-4.0, 6.0)),
        rotation=float(rng.uniform(-10.0, 10.0)),
    )


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _rotation(flexion: float, abduction: float, rotation: float) -> np.ndarray:
    """Hip pose: flexion about x, abduction about y, rotation about z (degrees)."""
    a, b, c = np.radians([flexion, abduction, rotation])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


class FemurGeometry:
    """Key points and axes derived from :class:`FemurParams`, and the fields built on them.

    Parameters
    ----------
    params
        The sampled shape.
    min_cortex
        Lower bound (mm) of the cortical thickness, so that coarse grids can
        show the cortex; 0 keeps the anatomical values.
    knee
        The distal end (condyles, :mod:`femurseg.data.synthetic.knee`); without
        it the shaft ends in a rounded cap 420 mm below the neck-shaft junction,
        below any field of view of the presets that have no knee.
    """

    def __init__(self, params: FemurParams, min_cortex: float = 0.0, knee: KneeParams | None = None) -> None:
        self.p = params
        self.min_cortex = float(min_cortex)
        self.pose = _rotation(params.flexion, params.abduction, params.rotation)
        beta = np.radians(params.shaft_adduction)
        # Distal shaft direction: down and slightly medial (-x for a left hip).
        self.shaft_dir = unit([-np.sin(beta), 0.0, -np.cos(beta)])
        theta = np.radians(-90.0 - params.shaft_adduction - params.neck_shaft_angle)
        horizontal, vertical = np.cos(theta), np.sin(theta)  # horizontal < 0: medial
        gamma = np.radians(params.anteversion)
        # Neck direction from the junction towards the head: medial, up, anterior (-y).
        self.neck_dir = unit([horizontal * np.cos(gamma), horizontal * np.sin(gamma), vertical])
        self.junction = -params.neck_length * self.neck_dir
        self.lateral = unit(np.cross([0.0, 1.0, 0.0], self.shaft_dir) * -1.0)
        if self.lateral[0] < 0:
            self.lateral = -self.lateral
        self.posterior = unit(np.cross(self.shaft_dir, self.lateral) * -1.0)
        if self.posterior[1] < 0:
            self.posterior = -self.posterior
        self.neck_up = unit(np.cross(self.neck_dir, np.cross([0.0, 0.0, 1.0], self.neck_dir)))
        r, s = params.head_radius, params.shaft_radius
        self.gt_centre = (
            self.junction
            + (params.trochanter_width - 2.0) * self.lateral
            + 6.0 * self.posterior
            - (15.0 + params.greater_trochanter_height) * self.shaft_dir
        )
        self.lt_axis_point = self.junction + 34.0 * self.shaft_dir
        lt_out = unit(-0.5 * self.lateral + 0.87 * self.posterior)
        self.lt_centre = self.lt_axis_point + (s + 1.0) * lt_out
        self.mass_centre = self.junction + 16.0 * self.shaft_dir + 6.0 * self.lateral
        self.calcar_point = self.junction + 18.0 * self.shaft_dir - (s + 4.0) * self.lateral
        self.ward_centre = self.junction + 0.4 * (-self.junction) - 0.25 * r * self.neck_up
        self.compressive = (0.55 * r * unit([0.3, 0.0, 1.0]), self.calcar_point)
        self.tensile = (
            self.junction + 26.0 * self.shaft_dir + (s + 2.0) * self.lateral,
            -0.55 * r * self.neck_up,
        )
        self.knee = None if knee is None else KneeGeometry(knee, self.junction, self.shaft_dir, params.shaft_radius)

    # ----------------------------------------------------------------- frames
    def frame(self, tilt: np.ndarray) -> np.ndarray:
        """World-to-femur rotation for a patient tilted by ``tilt`` (patient-to-world)."""
        return self.pose.T @ tilt.T

    def bounds(self, z_min: float) -> tuple[np.ndarray, np.ndarray]:
        """Patient-frame bounding box ``(low, high)`` of the femur above ``z_min``."""
        r = self.p.head_radius
        axes = np.vstack([np.eye(3), -np.eye(3)])
        pts = [r * e for e in axes] + [self.gt_centre + 22.0 * e for e in axes]
        depth = (self.junction[2] - z_min) / max(-self.shaft_dir[2], 0.5) + 20.0
        if self.knee is not None:
            depth = min(depth, self.knee.p.length + 10.0)
            if depth > self.knee.p.length - 150.0:
                pts += list(self.knee.corners())
        bottom = self.junction + depth * self.shaft_dir
        for c in (self.mass_centre, bottom, self.lt_centre):
            pts += [c + 34.0 * e for e in axes]
        pts = np.array(pts) @ self.pose.T
        return pts.min(axis=0) - 4.0, pts.max(axis=0) + 4.0

    # ----------------------------------------------------------------- fields
    def periosteal(self, q: Points) -> np.ndarray:
        """Approximate signed distance (mm) to the periosteal surface, femur frame."""
        p, r, s = self.p, self.p.head_radius, self.p.shaft_radius
        frame = np.stack([self.lateral, self.posterior, -self.shaft_dir])
        head = sphere(q, (0.0, 0.0, 0.0), r)
        neck_end = self.junction + 4.0 * self.shaft_dir
        neck = elliptic_tube(
            q, (0.0, 0.0, 0.0), neck_end,
            (p.neck_height * 0.56, p.neck_width * 0.56), (p.neck_height * 0.8, p.neck_width * 0.62),
            up=self.neck_up, waist=0.16,
        )
        mass = ellipsoid(q, self.mass_centre, (p.trochanter_width + 2.0, s * 1.25, 28.0), frame)
        top = self.junction + 10.0 * self.shaft_dir
        shaft = round_cone(q, top, self.junction + 260.0 * self.shaft_dir, s * 1.3, s * 0.92)
        gt_frame = np.stack([self.lateral, self.posterior, -self.shaft_dir])
        gt = ellipsoid(q, self.gt_centre, (11.0, 15.0, 18.0), gt_frame)
        lt = ellipsoid(q, self.lt_centre, (p.lesser_trochanter_size, p.lesser_trochanter_size, 12.0), frame)
        crest = round_cone(q, self.gt_centre + 8.0 * self.posterior + 6.0 * self.shaft_dir,
                           self.lt_centre - 2.0 * self.posterior, 6.0, 4.5)
        # The shaft continues to mid-thigh (a femur is 400-480 mm long): thigh-level fields of view
        # need it; above 150 mm below the junction the union leaves the proximal shape unchanged.
        if self.knee is None:
            distal = round_cone(q, self.junction + 240.0 * self.shaft_dir, self.junction + 420.0 * self.shaft_dir,
                                s * 0.93, s * 0.9)
        else:
            distal = self.knee.distal_femur(q)
        shaft = smooth_union(shaft, distal, 8.0)
        d = smooth_union(shaft, mass, 18.0)
        d = smooth_union(d, gt, 10.0)
        d = smooth_union(d, crest, 6.0)
        d = smooth_union(d, lt, 7.0)
        d = smooth_union(d, neck, 12.0)
        return smooth_union(d, head, 5.0)

    def _weights(self, q: Points) -> dict[str, np.ndarray]:
        """Soft region weights in [0, 1], femur frame."""
        x, y, z = q
        r = np.float32(self.p.head_radius)
        n = self.neck_dir.astype(np.float32)
        along = x * n[0] + y * n[1] + z * n[2]  # 0 at head centre, -neck_length at junction
        jx, jy, jz = (np.float32(c) for c in self.junction)
        sd = self.shaft_dir.astype(np.float32)
        down = (x - jx) * sd[0] + (y - jy) * sd[1] + (z - jz) * sd[2]
        lat = self.lateral.astype(np.float32)
        side = (x - jx) * lat[0] + (y - jy) * lat[1] + (z - jz) * lat[2]
        up = self.neck_up.astype(np.float32)
        vx, vy, vz = x - along * n[0], y - along * n[1], z - along * n[2]
        cos_up = (vx * up[0] + vy * up[1] + vz * up[2]) / (np.sqrt(vx * vx + vy * vy + vz * vz) + 1e-3)
        head = _smoothstep(-0.8 * float(r), -0.5 * float(r), along)
        gx, gy, gz = (np.float32(c) for c in self.gt_centre)
        gt_dist = np.sqrt(((x - gx) / 14.0) ** 2 + ((y - gy) / 19.0) ** 2 + ((z - gz) / 22.0) ** 2)
        troch = (1.0 - _smoothstep(0.8, 1.3, gt_dist)) * (1.0 - head)
        neck = _smoothstep(-self.p.neck_length + 8.0, -self.p.neck_length + 22.0, along) * (1.0 - head)
        medial = 1.0 - _smoothstep(-self.p.shaft_radius, 0.0, side)
        shaft = _smoothstep(15.0, 60.0, down)
        return {"head": head, "troch": troch, "neck": neck, "cos_up": cos_up,
                "medial": medial, "shaft": shaft, "down": down}

    def fields(self, q: Points) -> dict[str, np.ndarray]:
        """Cortical thickness (mm), relative trabecular density and marrow fraction.

        Parameters
        ----------
        q
            Femur-frame points.

        Returns
        -------
        dict
            ``cortex``: thickness of the cortex (mm, at least ``min_cortex``);
            ``density``: trabecular density relative to the subject's mean
            (denser head and compressive group, sparse Ward's region and
            greater trochanter); ``marrow``: fraction of fatty marrow (the
            shaft's medullary canal).
        """
        p, f32 = self.p, np.float32
        w = self._weights(q)
        t_neck = f32(p.cortex_neck_superior) + (f32(p.cortex_calcar) - f32(p.cortex_neck_superior)) * (
            (1.0 - w["cos_up"]) * 0.5) ** 1.5
        t_upper = f32(p.cortex_trochanter) + (f32(p.cortex_calcar) - f32(p.cortex_trochanter)) * w["medial"]
        t_low = t_upper + (f32(p.cortex_shaft) - t_upper) * w["shaft"]
        t = t_low + (t_neck - t_low) * w["neck"]
        t = t + (f32(p.cortex_trochanter) - t) * w["troch"]
        t = t + (f32(p.cortex_head) - t) * w["head"]
        marrow = _smoothstep(20.0, 60.0, w["down"])
        knee = None if self.knee is None else self.knee.weight(q)
        if knee is not None:
            # thin cortex and dense cancellous bone without fatty marrow in the condyles
            t = t + (f32(self.knee.p.cortex) - t) * knee
            marrow = marrow * (f32(1.0) - knee)
        rel = f32(0.9) + f32(0.45) * w["head"]
        rel = rel + f32(0.6) * _segment_weight(q, *self.compressive, 8.0)
        rel = rel + f32(0.3) * _segment_weight(q, *self.tensile, 5.0)
        rel = rel * (f32(1.0) - f32(0.55) * _blob(q, self.ward_centre, 9.0))
        rel = rel * (f32(1.0) - f32(0.35) * w["troch"])
        if knee is not None:
            rel = rel + (f32(self.knee.p.density) - rel) * knee
        rel = rel * (f32(1.0) - f32(0.97) * marrow)
        return {"cortex": np.maximum(t, f32(self.min_cortex)), "density": rel, "marrow": marrow}

    def regions(self, q: Points) -> np.ndarray:
        """Region index per point (``REGIONS`` order, 255 = none), femur frame."""
        w = self._weights(q)
        out = np.full(np.broadcast(*q).shape, 255, dtype=np.uint8)
        out[(w["shaft"] > 0.95) & (w["down"] > 60.0)] = 4
        out[(w["troch"] > 0.9) & (w["down"] < 5.0)] = 3
        calcar = (w["medial"] > 0.9) & (w["down"] > 5.0) & (w["down"] < 25.0) & (w["troch"] < 0.1)
        out[calcar] = 2
        out[(w["neck"] > 0.9) & (w["cos_up"] > 0.8) & (w["troch"] < 0.1)] = 1
        out[w["head"] > 0.99] = 0
        return out


def _blob(q: Points, centre: np.ndarray, radius: float) -> np.ndarray:
    x, y, z = q
    d2 = (x - np.float32(centre[0])) ** 2 + (y - np.float32(centre[1])) ** 2 + (z - np.float32(centre[2])) ** 2
    return np.exp(-d2 / np.float32(radius * radius))


def _segment_weight(q: Points, a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    d = round_cone(q, a, b, 0.0, 0.0)
    return np.exp(-(d * d) / np.float32(radius * radius))
