"""Sliding-window inference against MONAI, exact reconstruction, odd and small volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from femurseg.sliding import SparseWindows, importance_map, sliding_window_inference, tiling_starts, window_starts


def _net(seed: int = 0, out_channels: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, out_channels, 3, padding=1)
    ).eval()


@pytest.mark.parametrize("shape", [(1, 1, 32, 27, 19), (2, 1, 21, 30, 25)])
@pytest.mark.parametrize("overlap", [0.5, 0.25])
def test_equals_monai(shape, overlap):
    monai_inferers = pytest.importorskip("monai.inferers")
    torch.manual_seed(1)
    image = torch.randn(shape)
    net = _net()
    ours = sliding_window_inference(image, net, (16, 12, 16), overlap=overlap, blend="gaussian", batch_size=3,
                                    activation="softmax")
    with torch.no_grad():
        theirs = monai_inferers.sliding_window_inference(
            image, (16, 12, 16), 3, lambda x: torch.softmax(net(x), dim=1), overlap=overlap, mode="gaussian")
    assert ours.shape == theirs.shape == (shape[0], 3, *shape[2:])
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_equals_monai_when_volume_is_smaller_than_the_patch():
    monai_inferers = pytest.importorskip("monai.inferers")
    image = torch.randn(1, 1, 9, 20, 7)
    net = _net(2, out_channels=2)
    ours = sliding_window_inference(image, net, 12, overlap=0.5, activation="softmax")
    with torch.no_grad():
        theirs = monai_inferers.sliding_window_inference(
            image, (12, 12, 12), 4, lambda x: torch.softmax(net(x), dim=1), overlap=0.5, mode="gaussian")
    assert ours.shape == (1, 2, 9, 20, 7)
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("blend", ["constant", "gaussian", "hann"])
@pytest.mark.parametrize("shape", [(1, 2, 17, 31, 23), (1, 2, 5, 6, 7), (2, 2, 16, 16, 16)])
def test_identity_is_reconstructed_exactly(blend, shape):
    # values on a 1/8 grid: sums of up to 8 overlapping copies are exact in float32
    image = torch.randint(-800, 800, shape).float() / 8
    out = sliding_window_inference(image, lambda x: x, 16, overlap=0.5, blend=blend)
    assert out.shape == image.shape
    tolerance = 0.0 if blend == "constant" else 1e-6 * float(image.abs().max())  # float32 rounding
    assert (out - image).abs().max() <= tolerance


def test_window_layout_covers_every_voxel_and_ends_at_the_edge():
    for size, patch, overlap in [(31, 16, 0.5), (100, 48, 0.25), (16, 16, 0.5), (17, 16, 0.9)]:
        starts = window_starts(size, patch, overlap)
        assert starts[0] == 0 and starts[-1] + patch == size
        covered = torch.zeros(size, dtype=torch.bool)
        for s in starts:
            covered[s:s + patch] = True
        assert covered.all()


def test_importance_maps_are_positive_and_peak_in_the_centre():
    for blend in ("gaussian", "hann", "constant"):
        weights = importance_map((8, 9, 10), blend)
        assert weights.shape == (8, 9, 10) and bool((weights > 0).all())
        assert float(weights.max()) == pytest.approx(float(weights[4, 4, 5]), rel=0.2)


def test_bf16_float16_and_batching_options_stay_close():
    image = torch.randn(1, 1, 24, 20, 28)
    net = _net(3, out_channels=2)
    reference = sliding_window_inference(image, net, 16, activation="softmax", batch_size=1)
    batched = sliding_window_inference(image, net, 16, activation="softmax", batch_size=8)
    half = sliding_window_inference(image, net, 16, activation="softmax", accumulator_dtype=torch.float16)
    bf16 = sliding_window_inference(image, net, 16, activation="softmax", precision="bf16")
    assert torch.allclose(reference, batched, atol=1e-6)
    assert half.dtype == torch.float16 and (half.float() - reference).abs().max() < 5e-3
    assert bf16.dtype == torch.float32 and (bf16 - reference).abs().max() < 5e-2


def test_deep_supervision_list_output_uses_the_first():
    image = torch.randn(1, 1, 16, 16, 16)
    out = sliding_window_inference(image, lambda x: [x * 2, x[:, :, ::2, ::2, ::2]], 8, blend="constant")
    assert torch.allclose(out, image * 2)


def test_bad_arguments_are_rejected():
    image = torch.zeros(1, 1, 8, 8, 8)
    with pytest.raises(ValueError, match="overlap"):
        sliding_window_inference(image, lambda x: x, 4, overlap=1.0)
    with pytest.raises(ValueError, match=r"\(B, C, D, H, W\)"):
        sliding_window_inference(image[0], lambda x: x, 4)
    with pytest.raises(ValueError, match="blend"):
        sliding_window_inference(image, lambda x: x, 4, blend="cosine")  # type: ignore[arg-type]


def test_skipped_windows_contribute_their_constant():
    image = torch.full((1, 1, 40, 24, 24), -1.0)
    image[:, :, :12] = torch.randn(1, 1, 12, 24, 24)          # content only at one end
    torch.manual_seed(4)
    net = torch.nn.Conv3d(1, 2, 1).eval()            # pointwise: a window of -1 gives exactly the constant
    calls = []

    def network(x):
        calls.append(x.shape[0])
        return net(x)

    constant = torch.softmax(net(torch.full((1, 1, 16, 16, 16), -1.0)), 1)[0, :, 8, 8, 8].tolist()
    full = sliding_window_inference(image, network, 16, activation="softmax")
    evaluated = sum(calls)
    calls.clear()
    skipped = sliding_window_inference(image, network, 16, activation="softmax",
                                       skip=lambda p: p.amax(dim=(1, 2, 3, 4)) <= -1.0, skip_value=constant)
    assert sum(calls) < evaluated
    assert torch.allclose(skipped, full, atol=1e-6)
    every = sliding_window_inference(image, network, 16, skip=lambda p: torch.ones(len(p), dtype=torch.bool),
                                     skip_value=[0.25, 0.75])
    assert torch.allclose(every[:, 0], torch.full_like(every[:, 0], 0.25))
    with pytest.raises(ValueError, match="skip_value"):
        sliding_window_inference(image, network, 16, skip=lambda p: torch.ones(len(p), dtype=torch.bool))


def test_tiling_starts_cover_the_axis_with_a_subset_of_the_grid():
    for size, patch in [(97, 48), (125, 48), (81, 48), (48, 48), (200, 32)]:
        starts = window_starts(size, patch, 0.5)
        tiling = tiling_starts(starts, patch)
        assert set(tiling) <= set(starts) and tiling[0] == 0 and tiling[-1] + patch == size
        covered = np.zeros(size, bool)
        for start in tiling:
            covered[start:start + patch] = True
        assert covered.all()
    assert tiling_starts(window_starts(97, 48, 0.5), 48) == [0, 48, 49]


def test_sparse_windows_evaluate_only_near_the_foreground_and_keep_it():
    # a bright cube in a dark volume; a pointwise net: foreground exactly where the image is bright
    image = torch.full((1, 1, 64, 64, 64), -1.0)
    image[0, 0, 6:18, 40:52, 10:22] = 1.0

    def network(x):
        return torch.cat([-4 * x, 4 * x], dim=1)

    every, sparse = [], []
    full = sliding_window_inference(image, network, 16, activation="softmax", counter=every)
    fast = sliding_window_inference(image, network, 16, activation="softmax", counter=sparse,
                                    sparse=SparseWindows(channel=1), skip_value=[1.0, 0.0])
    assert every == [7 ** 3] and sparse[0] < every[0] / 3          # 343 windows → the tiling (64) + a few
    assert torch.equal(full.argmax(1), fast.argmax(1))
    inside = (slice(None), slice(None), slice(6, 18), slice(40, 52), slice(10, 22))
    assert torch.allclose(fast[inside], full[inside], atol=1e-6)    # windows touching the cube are all evaluated
    # with nothing above the threshold only the tiling runs and the rest is background
    none = []
    empty = sliding_window_inference(torch.full((1, 1, 64, 64, 64), -1.0), network, 16, activation="softmax",
                                     counter=none, sparse=SparseWindows(channel=1, threshold=0.5), skip_value=[1.0, 0.0])
    assert none == [4 ** 3] and bool((empty.argmax(1) == 0).all())
    with pytest.raises(ValueError, match="skip_value"):
        sliding_window_inference(image, network, 16, sparse=SparseWindows(channel=1))
    with pytest.raises(ValueError, match="threshold"):
        SparseWindows(channel=1, threshold=1.5)


def test_sparse_core_decides_which_windows_refine_a_voxel():
    # one bright voxel at 20 on every axis; windows of 16 at steps of 8 (starts 0, 8, ..., 48), tiling 0/16/32/48
    image = torch.full((1, 1, 64, 64, 64), -1.0)
    image[0, 0, 20, 20, 20] = 1.0

    def network(x):
        return torch.cat([-4 * x, 4 * x], dim=1)

    counts = {}
    for core in (1.0, 0.5):
        seen = []
        out = sliding_window_inference(image, network, 16, activation="softmax", counter=seen,
                                       sparse=SparseWindows(channel=1, core=core), skip_value=[1.0, 0.0])
        counts[core] = seen[0]
        assert out[0, 1, 20, 20, 20] > 0.99 and int((out.argmax(1) == 1).sum()) == 1
    # the whole window: starts 8 and 16 on each axis hold voxel 20 → 2³ windows, one of them in the tiling
    assert counts[1.0] == 4 ** 3 + 7
    # the central half: only start 16 (core 20..27) holds it, and that window is in the tiling already
    assert counts[0.5] == 4 ** 3
    assert SparseWindows(channel=1, core=0.5).core_of((16, 8, 0), (16, 16, 16)) == (slice(20, 28), slice(12, 20),
                                                                                      slice(4, 12))
    assert SparseWindows(channel=1, core=0.01).core_of((0, 0, 0), (16, 16, 16)) == (slice(7, 9),) * 3
    with pytest.raises(ValueError, match="core"):
        SparseWindows(channel=1, core=0.0)


def test_windows_not_evaluated_are_left_out_of_the_blend():
    # a network that answers (0.3, 0.7) everywhere; windows of pure air (-1) are skipped
    image = torch.full((1, 1, 40, 32, 32), -1.0)
    image[0, 0, :12] = 0.5

    def network(x):
        return torch.log(torch.tensor([0.3, 0.7])).view(1, 2, 1, 1, 1).expand(len(x), 2, *x.shape[2:]).clone()

    seen = []
    out = sliding_window_inference(image, network, 16, activation="softmax", counter=seen, skip_value=[1.0, 0.0],
                                   skip=lambda w: w.flatten(1).amax(1) < 0)
    starts_z = window_starts(40, 16, 0.5)                    # 0, 8, 16, 24; the first two hold tissue
    assert starts_z == [0, 8, 16, 24] and seen == [2 * 9]
    covered = out[:, :, :24]                                 # the evaluated windows reach z = 8 + 16
    assert torch.allclose(covered, torch.tensor([0.3, 0.7]).view(1, 2, 1, 1, 1).expand_as(covered), atol=1e-6)
    assert torch.equal(out[:, 0, 24:], torch.ones_like(out[:, 0, 24:]))   # no evaluated window: skip_value


@pytest.mark.parametrize("mode", ["constant", "replicate"])
def test_a_scan_shorter_than_the_window_is_padded_by_the_mode(mode):
    # 8 slices under a 16-slice window: 4 padded slices on each side, cropped away afterwards
    torch.manual_seed(0)
    image = torch.randn(1, 1, 20, 20, 8)
    seen = []

    def network(x):
        seen.append(x.clone())
        return torch.cat([-x, x], dim=1)

    out = sliding_window_inference(image, network, 16, activation="softmax", pad_value=-1.0, pad_mode=mode)
    assert out.shape == (1, 2, 20, 20, 8)
    window = seen[0][0, 0]                                   # the first window: x, y from 0, all 16 slices
    if mode == "replicate":                                  # the anatomy continues: edge slices repeated
        assert torch.equal(window[..., :4], image[0, 0, :16, :16, :1].expand(16, 16, 4))
        assert torch.equal(window[..., 12:], image[0, 0, :16, :16, 7:].expand(16, 16, 4))
    else:
        assert bool((window[..., :4] == -1).all()) and bool((window[..., 12:] == -1).all())
    assert torch.equal(window[..., 4:12], image[0, 0, :16, :16, :])
    with pytest.raises(ValueError, match="pad_mode"):
        sliding_window_inference(image, network, 16, pad_mode="reflect")


def test_inferer_object_matches_the_function_and_plans_the_passes():
    from femurseg.sliding import SlidingWindowInferer, SparseWindows

    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 2, 3, padding=1)
    image = torch.randn(2, 1, 20, 13, 26)
    inferer = SlidingWindowInferer(8, overlap=0.5, activation="softmax", sparse=SparseWindows(channel=1, threshold=0.5),
                                   skip_value=(1.0, 0.0))
    counted: list[int] = []
    got = inferer(image, net, counter=counted)
    want = sliding_window_inference(image, net, 8, overlap=0.5, activation="softmax",
                                    sparse=SparseWindows(channel=1, threshold=0.5), skip_value=(1.0, 0.0))
    assert torch.equal(got, want)
    plan = inferer.plan((20, 13, 26))
    assert plan.padding == (0, 0, 0) and plan.padded == (20, 13, 26)
    first, second = plan.passes
    assert len(first) + len(second) == np.prod([len(window_starts(n, 8, 0.5)) for n in (20, 13, 26)])
    assert set(first) == {(a, b, c) for a in tiling_starts(window_starts(20, 8, 0.5), 8)
                          for b in tiling_starts(window_starts(13, 8, 0.5), 8)
                          for c in tiling_starts(window_starts(26, 8, 0.5), 8)}
    assert set(first).isdisjoint(second)
    assert 2 * len(first) <= counted[0] <= 2 * (len(first) + len(second))  # two volumes; the first pass always runs
    padded = SlidingWindowInferer((16, 16, 16)).plan((10, 20, 16))
    assert padded.padding == (6, 0, 0) and padded.padded == (16, 20, 16)
    with pytest.raises(ValueError, match="overlap"):
        SlidingWindowInferer(8, overlap=1.0)
    with pytest.raises(ValueError, match="skip_value"):
        SlidingWindowInferer(8, sparse=SparseWindows(channel=0))
    with pytest.raises(ValueError, match="activation"):
        SlidingWindowInferer(8, activation="relu")  # type: ignore[arg-type]
