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

from femurseg.data.synthetic_sdf import Points

__all__ = ["BodyParams", "PhantomParams", "sample_body", "sample_phantom", "Tissue",
           "body_distance", "fat_thickness", "septa", "phantom_fields", "ROD_DENSITIES"]

ROD_DENSITIES: tuple[float, ...] = (0.0, 50.0, 100.0, 200.0)
"""K2HPO4 concentrations of the phantom rods in mg/cm3."""


class Tissue:
    """Integer codes of the tissue map (one per voxel, by the voxel centre)."""

    AIR, FAT, MUSCLE, SKIN, TABLE, PHANTOM, ROD, CORTICAL, TRABECULAR, MARROW, PELVIS = range(11)
    NAMES: tuple[str, ...] = ("air", "fat", "muscle", "skin", "table", "phantom", "rod",
                              "cortical", "trabecular", "marrow", "pelvis")


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


def sample_body(rng: np.random.Generator, habitus: float, midline: float) -> BodyParams:
    """Sample a body; ``habitus`` in [0, 1] goes from lean to obese."""
    fat = float(5.0 + 35.0 * habitus + rng.uniform(0.0, 8.0))
    seeds = tuple(
        (float(rng.uniform(-60.0, 110.0)), float(rng.uniform(-90.0, 110.0)),
         float(rng.uniform(-0.25, 0.25)), float(rng.uniform(-0.25, 0.25)))
        for _ in range(14)
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


def body_distance(p: Points, body: BodyParams, midline: float) -> np.ndarray:
    """Approximate signed distance (mm) to the skin surface."""
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
    thigh = np.sqrt((x - tx) ** 2 + ((y - ty) * np.float32(1.1)) ** 2) - np.float32(body.thigh_radius)
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
    first = np.full(np.broadcast(x, y, z).shape, np.inf, dtype=np.float32)
    second = first.copy()
    for sx, sy, vx, vy in body.septum_seeds:
        d = np.sqrt((x - np.float32(sx) - np.float32(vx) * z) ** 2 + (y - np.float32(sy) - np.float32(vy) * z) ** 2)
        second = np.minimum(second, np.maximum(first, d))
        first = np.minimum(first, d)
    return (second - first) < np.float32(body.septum_width)


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
