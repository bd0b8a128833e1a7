"""Soft tissues, patient table and calibration phantom of the synthetic hip CT.

The body outline is a flattened super-ellipse (the trunk at hip level, lying
supine on the phantom) merged with the thigh, which separates from the trunk
below the perineum. Inside it: skin, a subcutaneous fat layer of varying
thickness (thicker over the buttock), muscle with thin intermuscular fat planes,
and the fat of the ischio-anal fossa medial to the ischium. Under the patient
lies a solid calibration phantom with K2HPO4 rods, on a carbon-fibre table.

All functions take patient-frame coordinates (femoral head centre at the
origin, LPS, left hip) except the phantom and the table, which are fixed to the
scanner and take scanner coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from femurseg.data.synthetic.scanner import fill_fraction
from femurseg.data.synthetic.sdf import Points, ellipsoid
from femurseg.data.synthetic.tissues import TissueParams

__all__ = ["BodyParams", "PhantomParams", "Leg", "sample_body", "sample_phantom", "Tissue",
           "body_distance", "fat_thickness", "septa", "phantom_fields", "soft_tissue", "ROD_DENSITIES"]

ROD_DENSITIES: tuple[float, ...] = (0.0, 50.0, 100.0, 200.0)
"""K2HPO4 concentrations of the phantom rods in mg/cm3."""


class Tissue:
    """Integer codes of the tissue map (one per voxel, by the voxel centre)."""

    AIR, FAT, MUSCLE, SKIN, TABLE, PHANTOM, ROD, CORTICAL, TRABECULAR, MARROW, PELVIS, OTHER, BONE = range(13)
    NAMES: tuple[str, ...] = ("air", "fat", "muscle", "skin", "table", "phantom", "rod",
                              "cortical", "trabecular", "marrow", "pelvis", "other", "bone")
    """``bone``: bones other than the femur and the pelvis (patella, tibia, fibula)."""


@dataclass(frozen=True)
class BodyParams:
    """Sampled body habitus (mm, relative to the femoral head centre)."""

    half_width: float
    anterior: float
    posterior: float
    squareness: float
    thigh_radius: float
    perineum: float
    fat: float
    buttock_fat: float
    skin: float
    septum_width: float
    septum_seeds: tuple[tuple[float, float, float, float], ...]
    fat_waves: tuple[tuple[float, float, float], ...]
    warp: tuple[float, float, float, float]
    pelvic_fat: tuple[float, float, float]
    vessel: tuple[float, float, float, float]
    bladder: float
    gas: tuple[float, float, float, float]


@dataclass(frozen=True)
class PhantomParams:
    """Calibration phantom and table placement (scanner frame, mm)."""

    centre_x: float
    thickness: float
    width: float
    rod_radius: float
    rod_pitch: float
    table_gap: float
    table_thickness: float


@dataclass(frozen=True)
class Leg:
    """Where the thigh narrows to the knee (patient frame, mm).

    The thigh's centre and semi-axes blend from the thigh's (250 mm above the
    knee) to the leg's at ``z`` + 50 mm and below: an ellipse centred at
    ``(x, y)`` with semi-axes ``radius`` (left-right) and ``depth``
    (front-back; more than ``radius`` where the leg rests on the table).
    """

    x: float
    y: float
    z: float
    radius: float
    depth: float


def sample_body(rng: np.random.Generator, habitus: float, midline: float) -> BodyParams:
    """Sample a body; ``habitus`` in [0, 1] goes from lean to obese."""
    fat = float(5.0 + 35.0 * habitus + rng.uniform(0.0, 8.0))
    seeds = tuple(
        (float(rng.uniform(-60.0, 110.0)), float(rng.uniform(-90.0, 110.0)),
         float(rng.uniform(-0.25, 0.25)), float(rng.uniform(-0.25, 0.25)))
        for _ in range(11)
    )
    waves = tuple((float(rng.uniform(0.0, 2 * np.pi)), float(rng.uniform(1.0, 3.0)),
                   float(rng.uniform(0.1, 0.3))) for _ in range(3))
    return BodyParams(
        half_width=float(midline + 55.0 + 45.0 * habitus + rng.uniform(0.0, 15.0)),
        anterior=float(70.0 + 40.0 * habitus + rng.uniform(0.0, 15.0)),
        posterior=float(85.0 + 45.0 * habitus + rng.uniform(0.0, 15.0)),
        squareness=float(rng.uniform(2.2, 3.0)),
        thigh_radius=float(80.0 + 35.0 * habitus + rng.uniform(0.0, 10.0)),
        perineum=float(rng.uniform(-80.0, -60.0)),
        fat=fat,
        buttock_fat=float(rng.uniform(5.0, 20.0)),
        skin=float(rng.uniform(1.5, 2.5)),
        septum_width=float(rng.uniform(0.8, 2.0)),
        septum_seeds=seeds,
        fat_waves=waves,
        warp=tuple(float(v) for v in rng.uniform(0.0, 2 * np.pi, 4)),  # type: ignore[arg-type]
        pelvic_fat=(float(rng.uniform(22.0, 34.0)), float(rng.uniform(30.0, 45.0)), float(rng.uniform(-45.0, -25.0))),
        vessel=(float(rng.uniform(-20.0, -5.0)), float(rng.uniform(-45.0, -35.0)), float(rng.uniform(3.5, 5.0)),
                float(rng.uniform(4.5, 7.0))),
        bladder=float(rng.uniform(25.0, 45.0) if rng.random() < 0.8 else 0.0),
        gas=(float(rng.uniform(6.0, 14.0) if rng.random() < 0.5 else 0.0), float(rng.uniform(25.0, 45.0)),
             float(rng.uniform(-10.0, 30.0)), float(rng.uniform(0.0, 2 * np.pi))),
    )


def sample_phantom(rng: np.random.Generator) -> PhantomParams:
    """Sample the calibration phantom and table."""
    return PhantomParams(
        centre_x=float(rng.uniform(-15.0, 15.0)),
        thickness=float(rng.uniform(24.0, 32.0)),
        width=float(rng.uniform(150.0, 180.0)),
        rod_radius=float(rng.uniform(7.0, 9.0)),
        rod_pitch=float(rng.uniform(30.0, 36.0)),
        table_gap=float(rng.uniform(0.0, 3.0)),
        table_thickness=float(rng.uniform(8.0, 14.0)),
    )


def body_distance(p: Points, body: BodyParams, midline: float, leg: Leg | None = None) -> np.ndarray:
    """Approximate signed distance (mm) to the skin surface (the thigh narrowing to ``leg`` if given)."""
    x, y, z = p
    cy = np.float32(0.5 * (body.posterior - body.anterior))
    b = np.float32(0.5 * (body.posterior + body.anterior))
    a = np.float32(body.half_width)
    n = np.float32(body.squareness)
    u = np.abs(x + np.float32(midline)) / a
    v = np.abs(y - cy) / b
    k = (u**n + v**n) ** (1.0 / n)
    trunk = (k - 1.0) * np.minimum(a, b)
    # Below the perineum the trunk gives way to the thigh.
    trunk = trunk + np.maximum(np.float32(body.perineum) - z, 0.0) * np.float32(2.5)
    tx, ty = np.float32(25.0), np.float32(0.3 * body.posterior - 0.3 * body.anterior)
    if leg is None:
        thigh = np.sqrt((x - tx) ** 2 + ((y - ty) * np.float32(1.1)) ** 2) - np.float32(body.thigh_radius)
    else:
        t = np.clip((np.float32(leg.z + 250.0) - z) / np.float32(200.0), 0.0, 1.0)
        t = t * t * (3.0 - 2.0 * t)
        cx = tx + (np.float32(leg.x) - tx) * t
        cy = ty + (np.float32(leg.y) - ty) * t
        a = np.float32(body.thigh_radius) + (np.float32(leg.radius) - np.float32(body.thigh_radius)) * t
        b = np.float32(body.thigh_radius / 1.1) + (np.float32(leg.depth) - np.float32(body.thigh_radius / 1.1)) * t
        thigh = (np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2) - np.float32(1.0)) * np.minimum(a, b)
    d = np.minimum(trunk, thigh)
    # Lying supine on the phantom flattens the back.
    return np.maximum(d, y - np.float32(body.posterior))


def fat_thickness(p: Points, body: BodyParams) -> np.ndarray:
    """Subcutaneous fat thickness (mm): waves around the body, more over the buttock."""
    x, y, z = p
    angle = np.arctan2(y, x)
    t = np.float32(body.fat)
    for phase, freq, amp in body.fat_waves:
        t = t * (1.0 + np.float32(amp) * np.sin(np.float32(freq) * angle + np.float32(phase) + z * np.float32(0.01)))
    buttock = np.clip((y - 20.0) / 60.0, 0.0, 1.0) * np.float32(body.buttock_fat)
    return t + buttock


def septa(p: Points, body: BodyParams) -> np.ndarray:
    """Boolean map of the intermuscular fat planes (Voronoi edges between muscles)."""
    x, y, z = p
    w = body.warp
    x, y = (x + np.float32(7.0) * np.sin(y * np.float32(1 / 23.0) + np.float32(w[0]))
            + np.float32(4.0) * np.sin(z * np.float32(1 / 41.0) + np.float32(w[1])),
            y + np.float32(7.0) * np.sin(x * np.float32(1 / 27.0) + np.float32(w[2]))
            + np.float32(3.0) * np.sin(x * np.float32(1 / 9.0) + np.float32(w[3])))
    first = np.full(np.broadcast(x, y, z).shape, np.inf, dtype=np.float32)
    second = first.copy()
    for sx, sy, vx, vy in body.septum_seeds:
        d = np.sqrt((x - np.float32(sx) - np.float32(vx) * z) ** 2 + (y - np.float32(sy) - np.float32(vy) * z) ** 2)
        second = np.minimum(second, np.maximum(first, d))
        first = np.minimum(first, d)
    width = np.float32(body.septum_width) * (np.float32(1.2) + np.sin(x * np.float32(1 / 17.0) + y * np.float32(1 / 29.0)))
    return (second - first) < width


def phantom_fields(
    p: Points, phantom: PhantomParams, top: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[float, float]]]:
    """Phantom block, rods and table, in scanner coordinates.

    Parameters
    ----------
    p
        Scanner-frame coordinates.
    phantom
        Sampled phantom.
    top
        ``y`` of the phantom's upper surface (mm, scanner frame).

    Returns
    -------
    block, rod_index, table, rods
        Boolean block mask, rod index map (-1 outside rods), table code map
        (0 none, 1 shell, 2 foam core) and the rod centres ``(x, y)``.
    """
    x, y, _ = p
    half = np.float32(phantom.width / 2.0)
    bottom = top + phantom.thickness
    cx = np.float32(phantom.centre_x)
    edge = np.float32(6.0)
    dx = np.maximum(np.abs(x - cx) - (half - edge), 0.0)
    dy = np.maximum(np.abs(y - np.float32(top + phantom.thickness / 2)) - np.float32(phantom.thickness / 2 - edge), 0.0)
    block = (dx * dx + dy * dy) <= edge * edge
    rods: list[tuple[float, float]] = []
    rod_index = np.full(np.broadcast(x, y).shape, -1, dtype=np.int8)
    first = phantom.centre_x - phantom.rod_pitch * (len(ROD_DENSITIES) - 1) / 2.0
    for i in range(len(ROD_DENSITIES)):
        rx, ry = first + i * phantom.rod_pitch, top + phantom.thickness / 2.0
        rods.append((float(rx), float(ry)))
        inside = (x - np.float32(rx)) ** 2 + (y - np.float32(ry)) ** 2 <= np.float32(phantom.rod_radius**2)
        rod_index = np.where(inside, np.int8(i), rod_index)
    t0 = np.float32(bottom + phantom.table_gap)
    t1 = t0 + np.float32(phantom.table_thickness)
    sag = (x * x) * np.float32(1.0 / 4000.0)  # concave carbon-fibre table
    in_table = (y >= t0 - sag) & (y <= t1 - sag)
    shell = in_table & ((y < t0 - sag + 1.5) | (y > t1 - sag - 1.5))
    table = np.where(shell, np.int8(1), np.where(in_table, np.int8(2), np.int8(0)))
    return block, rod_index, table, rods


def _ellipse_fraction(p: Points, centre: tuple[float, float, float], semi: tuple[float, float, float],
                      ramp: float) -> np.ndarray:
    return fill_fraction(ellipsoid(p, centre, semi), ramp)


def soft_tissue(
    p: Points, body: BodyParams, tissues: TissueParams, midline: float, head_radius: float, ramp: float,
    leg: Leg | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """HU and tissue code of everything but bone, phantom and table.

    Parameters
    ----------
    p
        Patient-frame points.
    body, tissues
        Sampled habitus and intensities.
    midline
        Distance (mm) from the head centre to the body midline.
    head_radius
        Femoral head radius, to place the pelvic contents and vessels.
    ramp
        Width (mm) of the partial-volume ramp.
    leg
        Where the thigh narrows to the knee; a thigh of constant girth if omitted.
    """
    t, r = tissues, head_radius
    x, y, z = p
    d = body_distance(p, body, midline, leg)
    inside = fill_fraction(d, ramp)
    muscle = fill_fraction(d + np.float32(body.skin) + fat_thickness(p, body), ramp)
    muscle = np.where(septa(p, body), muscle * np.float32(0.1), muscle)
    # Fat medial to the pelvic wall: ischio-anal fossa and pelvic fat.
    a, b, c = body.pelvic_fat
    pelvic = _ellipse_fraction(p, (-(r + 14.0 + a), 0.6 * r, c), (a, b, 70.0), 3.0)
    # Femoral vessels in the fat of the femoral triangle, in front of the hip.
    vx, vy, ra, rv = body.vessel
    sheath = fill_fraction(np.sqrt((x - np.float32(vx - 4.0)) ** 2 + ((y - np.float32(vy)) * 1.3) ** 2)
                           - np.float32(ra + rv + 5.0), 2.0)
    sheath = sheath * fill_fraction(z - np.float32(r + 10.0), 3.0)
    muscle = muscle * (1.0 - np.maximum(pelvic, sheath))
    soft = np.float32(t.fat_hu) + np.float32(t.muscle_hu - t.fat_hu) * muscle
    for cx, radius, hu in ((vx, ra, t.muscle_hu - 5.0), (vx - ra - rv - 1.0, rv, t.muscle_hu - 8.0)):
        vessel = fill_fraction(np.sqrt((x - np.float32(cx)) ** 2 + (y - np.float32(vy)) ** 2) - np.float32(radius), ramp)
        soft = soft + (np.float32(hu) - soft) * vessel
    if body.bladder > 0:
        bl = _ellipse_fraction(p, (-midline + 10.0, -r - 5.0, 25.0), (body.bladder, 0.8 * body.bladder, 35.0), ramp)
        soft = soft + (np.float32(t.muscle_hu - 40.0) - soft) * bl
    gas_r, gas_dx, gas_z, _ = body.gas
    if gas_r > 0:
        gas = _ellipse_fraction(p, (-midline + gas_dx * 0.3, r + 15.0, gas_z), (gas_r, 0.8 * gas_r, 1.6 * gas_r), ramp)
        soft = soft + (np.float32(t.air_hu) - soft) * gas
    skin = inside - fill_fraction(d + np.float32(body.skin), ramp)
    soft = soft + (np.float32(t.skin_hu) - soft) * skin
    hu = np.float32(t.air_hu) + (soft - np.float32(t.air_hu)) * inside
    code = np.where(d < 0, np.uint8(Tissue.FAT), np.uint8(Tissue.AIR))
    code = np.where((muscle > 0.5) & (d < 0), np.uint8(Tissue.MUSCLE), code)
    code = np.where((skin > 0.5) & (d < 0), np.uint8(Tissue.SKIN), code)
    code = np.where((soft < -500) & (d < -5), np.uint8(Tissue.AIR), code)
    code = np.where((np.abs(soft - t.muscle_hu) > 3) & (code == Tissue.MUSCLE), np.uint8(Tissue.OTHER), code)
    return hu.astype(np.float32), code
