"""Tests of the knee end of the synthetic femur (femurseg.data.synthetic.knee) and its fields of view."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from femurseg.data.synthetic import PRESETS, Tissue, generate_subject
from femurseg.data.synthetic.femur import FemurGeometry
from femurseg.data.synthetic.preset import SynthPreset
from femurseg.data.synthetic.render import sample_subject

# Coarse voxels and every scan a knee-level field of view, so that a test renders in seconds.
KNEE_COARSE = replace(PRESETS["transfer_knee"], name="knee_coarse", inplane=(2.5, 2.5), slices=(2.5,), knee=1.0)


def _geometry(seed: int = 3) -> FemurGeometry:
    params = sample_subject(seed, PRESETS["transfer_knee"])
    assert params.knee is not None
    return FemurGeometry(params.femur, knee=params.knee)


def _at(geometry: FemurGeometry, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    assert geometry.knee is not None
    pts = geometry.knee.centre + offsets
    return tuple(pts[:, i].astype(np.float32) for i in range(3))  # type: ignore[return-value]


def test_presets_without_a_knee_are_unchanged() -> None:
    for name in ("tiny", "quick", "full", "transfer"):
        assert PRESETS[name].knee == 0.0
        assert sample_subject(5, PRESETS[name]).knee is None
    assert sample_subject(5, PRESETS["transfer_knee"]).knee is not None


def test_preset_knee_is_validated() -> None:
    with pytest.raises(ValueError, match="not a probability"):
        replace(PRESETS["transfer"], knee=1.5)
    with pytest.raises(ValueError, match="field='scan'"):
        SynthPreset("bad", inplane=(3.0, 3.0), slices=(3.0,), field="hip", min_cortex_voxels=1.0,
                    noise=(10.0, 20.0), knee=0.5)


def test_condyles_notch_and_groove() -> None:
    g = _geometry()
    assert g.knee is not None
    w, d = g.knee.p.width, g.knee.p.depth
    # 10 mm above the lowest point: both condyles are bone, the notch between them behind is not.
    inside = g.periosteal(_at(g, np.array([[0.25 * w, 0.3 * d, 10.0], [-0.25 * w, 0.3 * d, 10.0],
                                           [0.0, 0.45 * d, 10.0]])))
    assert inside[0] < 0 and inside[1] < 0 and inside[2] > 0
    # The condyles are much wider than the shaft (bicondylar width within 15 % of the sampled one).
    xs = np.linspace(-0.8 * w, 0.8 * w, 321)
    row = g.periosteal(_at(g, np.stack([xs, np.full_like(xs, 0.15 * d), np.full_like(xs, 22.0)], axis=1)))
    extent = xs[row < 0].max() - xs[row < 0].min()
    assert extent == pytest.approx(w, rel=0.15)
    assert extent > 3.0 * g.p.shaft_radius
    # The trochlear groove: the anterior surface is deeper at the midline than over the ridges.
    ys = np.linspace(-0.9 * d, 0.0, 361)

    def front(x: float) -> float:
        col = g.periosteal(_at(g, np.stack([np.full_like(ys, x), ys, np.full_like(ys, 40.0)], axis=1)))
        return float(ys[col < 0].min())

    assert front(0.0) > front(0.2 * w) + 2.0 and front(0.0) > front(-0.2 * w) + 2.0


def test_knee_bones_are_separate_from_the_femur() -> None:
    g = _geometry()
    assert g.knee is not None
    rng = np.random.default_rng(0)
    pts = g.knee.centre + rng.uniform([-60, -90, -80], [60, 60, 100], size=(20000, 3))
    q = tuple(pts[:, i].astype(np.float32) for i in range(3))
    femur, bones = g.periosteal(q), g.knee.other_bones(q)  # type: ignore[arg-type]
    assert (bones < 0).sum() > 500 and (femur < 0).sum() > 500
    assert not np.any((femur < 0) & (bones < 0))
    assert np.min(np.maximum(femur, bones)) > 1.5  # cartilage and joint space between them


def test_knee_field_of_view_is_rendered_and_labelled() -> None:
    case = generate_subject(2, preset=KNEE_COARSE, side="left")
    label = sitk.GetArrayFromImage(case.label)
    hu = sitk.GetArrayFromImage(case.image).astype(np.float32)
    assert "knee" in case.meta and case.meta["preset_spec"]["knee"] == 1.0
    spacing = case.image.GetSpacing()
    # The femur ends in the field of view: its lowest slices are the condyles, wide and dense.
    rows = np.flatnonzero((label > 0).any(axis=(1, 2)))
    assert rows[0] > 0, "the field of view reaches below the condyles"
    widths = [np.ptp(np.flatnonzero((label[z] > 0).any(axis=0))) * spacing[0] for z in rows]
    assert max(widths[: len(widths) // 2]) > 2.5 * min(widths[len(widths) // 2:])
    width = case.meta["knee"]["width"]
    assert max(widths) == pytest.approx(width, rel=0.2)
    # Condyles: a thin cortex and a trabecular compartment (no fatty canal).
    low = label[rows[0]: rows[0] + 6]
    assert (low == 2).sum() > 2 * (low == 1).sum()
    assert np.median(hu[rows[0] + 3][label[rows[0] + 3] == 2]) > 100.0
    # Patella, tibia and fibula are bone but never femur.
    other = case.tissue == Tissue.BONE
    assert other.sum() > 200
    assert not np.any(label[other] > 0)
    assert np.median(hu[other]) > 150.0


@pytest.mark.parametrize("seed", [0, 3, 5])
def test_anatomy2_notch_separates_the_posterior_condyles(seed: int) -> None:
    """transfer_knee2's notch splits the condyles behind up to 20 mm above the joint; transfer_knee's closes by 20 mm."""
    old = sample_subject(seed, PRESETS["transfer_knee"])
    new = sample_subject(seed, PRESETS["transfer_knee2"])
    assert old.knee is not None and new.knee is not None
    assert old.knee.anatomy == 1 and new.knee.anatomy == 2
    # everything but the notch is the same knee, and the rest of the subject is the same subject
    assert dataclasses.replace(new.knee, notch=old.knee.notch, notch_centre=0.0, notch_height=28.0, notch_depth=0.42,
                               anatomy=1) == old.knee
    assert new.femur == old.femur and new.body == old.body
    assert 0.22 <= new.knee.notch <= 0.32 and 34.0 <= new.knee.notch_centre + new.knee.notch_height <= 46.0

    def bone(params, z: float) -> list[bool]:
        g = FemurGeometry(params.femur, knee=params.knee)
        w, d = params.knee.width, params.knee.depth
        offsets = np.array([[0.0, 0.3 * d, z], [0.0, 0.15 * d, z], [0.25 * w, 0.3 * d, z], [-0.25 * w, 0.3 * d, z]])
        return [bool(v < 0) for v in g.periosteal(_at(g, offsets))]

    # midline behind (two depths), lateral and medial condyle
    assert bone(old, 20.0) == [True, True, True, True]
    assert bone(new, 20.0) == [False, False, True, True]
    assert bone(old, 10.0)[0] is False and bone(new, 10.0)[:2] == [False, False]


def test_knee_anatomy_is_validated() -> None:
    with pytest.raises(ValueError, match="knee_anatomy"):
        replace(PRESETS["transfer_knee"], knee_anatomy=3)
    from femurseg.data.synthetic.knee import sample_knee

    with pytest.raises(ValueError, match="anatomy"):
        sample_knee(np.random.default_rng(0), 0.5, 10.0, anatomy=0)
