"""Augmentation presets: shapes kept, labels stay 0/1/2, seeded determinism, gain/offset as specified."""

from __future__ import annotations

import pytest
import torch
import torchio as tio

from femurseg.data.augment import (CURVE_KNOTS_HU, PRESETS, RandomGainOffset, RandomIntensityCurve,
                                   make_augmentation, mirror_axes)


def subject(size: int = 40) -> tio.Subject:
    label = torch.zeros(1, size, size, size, dtype=torch.uint8)
    label[:, 10:30, 12:28, 5:35] = 1
    label[:, 14:26, 16:24, 8:32] = 2
    image = torch.where(label == 2, 0.3, torch.where(label == 1, 0.8, -0.6)) + 0.01 * torch.randn(label.shape)
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])).numpy()
    return tio.Subject(image=tio.ScalarImage(tensor=image.float(), affine=affine),
                       label=tio.LabelMap(tensor=label, affine=affine), subject_id="s")


def test_presets_are_the_documented_ones():
    assert PRESETS == ("none", "light", "default", "heavy", "domain", "domain_dim_cortex")
    assert make_augmentation("none") is None
    with pytest.raises(ValueError, match="valid: none, light, default, heavy, domain, domain_dim_cortex"):
        make_augmentation("extreme")


def test_heavy_contains_every_augmentation_of_the_issue():
    names = {type(t).__name__ for t in make_augmentation("heavy")}
    assert names == {"RandomFlip", "RandomAffine", "RandomGainOffset", "RandomNoise", "RandomBlur",
                     "RandomElasticDeformation", "RandomAnisotropy", "LabelToUint8"}


@pytest.mark.parametrize("preset", ["light", "default", "heavy", "domain", "domain_dim_cortex"])
def test_preset_keeps_shapes_and_label_values_and_is_seeded(preset):
    torch.manual_seed(0)
    original = subject()
    transform = make_augmentation(preset)
    outputs = []
    for _ in range(2):
        torch.manual_seed(123)
        outputs.append(transform(original))
    out = outputs[0]
    assert out["image"].shape == original["image"].shape == out["label"].shape
    assert out["image"].data.dtype == torch.float32 and out["label"].data.dtype == torch.uint8
    assert set(torch.unique(out["label"].data).tolist()) <= {0, 1, 2}
    assert torch.equal(outputs[0]["image"].data, outputs[1]["image"].data)
    assert torch.equal(outputs[0]["label"].data, outputs[1]["label"].data)
    torch.manual_seed(124)
    changed = [not torch.equal(transform(original)["image"].data, out["image"].data) for _ in range(3)]
    assert any(changed)


def test_gain_scales_and_offset_shifts_only_the_image():
    original = subject()
    x = original["image"].data
    for seed in range(5):
        torch.manual_seed(seed)
        gained = RandomGainOffset(gain=0.1, offset=0.0)(original)
        ratio = gained["image"].data / x
        assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), atol=1e-5)
        assert 0.9 <= float(ratio.flatten()[0]) <= 1.1
        torch.manual_seed(seed)
        shifted = RandomGainOffset(gain=0.0, offset=0.02)(original)
        delta = shifted["image"].data - x
        assert torch.allclose(delta, delta.flatten()[0].expand_as(delta), atol=1e-6)
        assert abs(float(delta.flatten()[0])) <= 0.02
        assert torch.equal(shifted["label"].data, original["label"].data)


@pytest.mark.parametrize("preset", PRESETS)
def test_mirror_axes_name_the_flips_each_preset_makes(preset):
    """What checkpoints record for ``tta="auto"`` must be what training really mirrored."""
    pipeline = make_augmentation(preset)
    flips = [t for t in (pipeline.transforms if pipeline is not None else []) if isinstance(t, tio.RandomFlip)]
    axes = "".join("xyz"[a] for t in flips for a in t.axes)
    assert mirror_axes(preset) == (axes or "none")
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        mirror_axes("sideways")


def _hu(x: torch.Tensor) -> torch.Tensor:
    """Scaled knot positions back to HU (window -1000..2000)."""
    return x.double() * 1500.0 + 500.0


def test_intensity_curve_is_monotone_and_keeps_air():
    for seed in range(20):
        torch.manual_seed(seed)
        curve = RandomIntensityCurve(dim_cortex_p=0.5)
        x, y = curve.curve()
        assert torch.all(torch.diff(y) >= 0) and torch.all(torch.diff(x) > 0)
        assert float(_hu(y[0])) == pytest.approx(-1000.0)


def test_dim_cortex_compresses_everything_above_dense_trabecular_bone():
    """With no jitter, gain or offset the curve is the identity up to 450 HU and 450 + f (x - 450) above."""
    plain = dict(jitter=0.0, min_shift_hu=0.0, scale=0.0, offset_hu=0.0)
    torch.manual_seed(0)
    x, y = RandomIntensityCurve(dim_cortex_p=1.0, dim_cortex=(0.2, 0.2), **plain).curve()
    knots = torch.tensor(CURVE_KNOTS_HU, dtype=torch.float64)
    expected = torch.where(knots > 450.0, 450.0 + (knots - 450.0) * 0.2, knots)
    assert torch.allclose(_hu(y), expected, atol=1e-3)  # cortex 900 HU -> 540, 2000 -> 760
    subject_in = subject()
    torch.manual_seed(0)
    out = RandomIntensityCurve(dim_cortex_p=1.0, dim_cortex=(0.2, 0.2), **plain)(subject_in)["image"].data
    cortex = subject_in["label"].data == 1
    before, after = subject_in["image"].data[cortex].double(), out[cortex].double()
    assert torch.allclose(_hu(after), 450.0 + (_hu(before) - 450.0) * 0.2, atol=0.5)


def test_without_dim_cortex_the_random_stream_is_unchanged():
    """``domain`` (dim_cortex_p 0) draws exactly what it drew before the option existed: old recipes rebuild."""
    for seed in range(5):
        torch.manual_seed(seed)
        a = RandomIntensityCurve().curve()
        torch.manual_seed(seed)
        reach = torch.maximum(torch.tensor(CURVE_KNOTS_HU, dtype=torch.float64).abs() * 0.2,
                              torch.tensor(25.0, dtype=torch.float64))
        moved = torch.tensor(CURVE_KNOTS_HU, dtype=torch.float64) + (torch.rand(9, dtype=torch.float64) * 2 - 1) * reach
        moved[0] = -1000.0
        moved = torch.cummax(moved, 0).values
        gain = 1 + (torch.rand((), dtype=torch.float64) * 2 - 1) * 0.15
        shift = (torch.rand((), dtype=torch.float64) * 2 - 1) * 40.0
        moved[1:] = moved[1:] * gain + shift
        assert torch.allclose(_hu(a[1]), moved, atol=1e-2)


def test_dim_cortex_settings_are_validated():
    with pytest.raises(ValueError, match="dim_cortex"):
        RandomIntensityCurve(dim_cortex_p=1.5)
    with pytest.raises(ValueError, match="dim_cortex"):
        RandomIntensityCurve(dim_cortex=(0.0, 0.5))
