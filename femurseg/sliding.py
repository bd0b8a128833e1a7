"""Sliding-window inference: a network applied patch by patch to a whole volume.

Windows of ``patch_size`` are laid on a regular grid whose step is
``(1 - overlap) * patch_size`` (the last window of each axis is shifted back to end at
the volume's edge), evaluated ``batch_size`` at a time, and blended with an
importance map: a Gaussian (sigma = 1/8 of the patch, as nnU-Net and MONAI), a Hann
window, or constant weights. Window positions, padding and the Gaussian map follow
MONAI's ``sliding_window_inference``, so the two agree to float rounding in fp32.

This module sits at the package root because two layers use it: validation in
:mod:`femurseg.models.module` and prediction in :mod:`femurseg.inference`.

Coarse to fine (``sparse``): most of a CT's field of view holds no femur, yet an
overlapping grid evaluates every region about ``1 / (1 - overlap)³`` times. With a
:class:`SparseWindows` setting, the windows of a non-overlapping tiling (a subset of the
grid) are evaluated first; every other window is then evaluated only if the first pass
gave some voxel in its *core* (its central ``core`` fraction per axis) a foreground
probability of at least ``threshold``. With overlap 0.5 the cores of neighbouring
windows (``core=0.5``) tile the volume, so every foreground voxel lies in the core of
an evaluated window, where that window's Gaussian weight is highest; a window whose
only foreground lies in its margin would add an opinion of weight ``< e⁻²`` there.

Windows that are not evaluated (``sparse`` or ``skip``) are left out of the blend:
each voxel is the weighted mean of the windows that were evaluated over it, and a voxel
that no evaluated window covers gets ``skip_value``. Evaluated windows are
bit-identical to the exhaustive run.

Memory: besides the input, only ``C_out + 1`` accumulator volumes are held (weighted
sum and weight sum), in ``accumulator_dtype``; the weighted sum is normalised in
place and returned, so no further full-size copy is made. A 360×360×300 grid with two
output channels needs 0.47 GB of float32 accumulators (0.23 GB in float16).

Examples
--------
>>> net = torch.nn.Conv3d(1, 2, 3, padding=1)
>>> image = torch.randn(1, 1, 40, 37, 33)                    # (B, C, D, H, W)
>>> probabilities = sliding_window_inference(image, net, 16, activation="softmax")
>>> probabilities.shape
torch.Size([1, 2, 40, 37, 33])
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from femurseg.voxels import as_triple

__all__ = ["SlidingWindowInferer", "WindowPlan", "sliding_window_inference", "importance_map", "window_starts", "tiling_starts", "SparseWindows", "Blend",
           "Precision"]

Blend = Literal["gaussian", "hann", "constant"]
Precision = Literal["fp32", "bf16"]
Activation = Literal["softmax", "sigmoid"] | Callable[[torch.Tensor], torch.Tensor] | None

#: Gaussian weights are clamped from below, as MONAI does, so edge voxels keep a finite weight.
GAUSSIAN_FLOOR = 1e-3


@dataclass(frozen=True)
class SparseWindows:
    """Coarse-to-fine window selection (see the module docstring).

    Parameters
    ----------
    channel
        Output channel (after the activation) holding the foreground probability.
    threshold
        A window beyond the first pass is evaluated only if the first pass gave at
        least one voxel in its core this probability or more.
    core
        Fraction of the window, per axis and centred, searched for foreground:
        ``1.0`` is the whole window; ``0.5`` (default) the central half, where the
        Gaussian weight is at least ``e⁻²`` of its peak along each axis.
    """

    channel: int
    threshold: float = 0.05
    core: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"SparseWindows threshold must be in (0, 1), got {self.threshold}")
        if not 0.0 < self.core <= 1.0:
            raise ValueError(f"SparseWindows core must be in (0, 1], got {self.core}")

    def core_of(self, start: Sequence[int], patch: Sequence[int]) -> tuple[slice, ...]:
        """The central ``core`` fraction of the window at ``start`` (at least one voxel per axis)."""
        margins = [min(int(p * (1.0 - self.core) / 2), (p - 1) // 2) for p in patch]
        return tuple(slice(s + m, s + p - m) for s, p, m in zip(start, patch, margins))


def importance_map(
    patch_size: Sequence[int], blend: Blend = "gaussian", sigma_scale: float = 0.125
) -> torch.Tensor:
    """Blending weights of one window, shape ``patch_size``, float32, all > 0.

    Parameters
    ----------
    patch_size
        Window size per spatial axis.
    blend
        ``gaussian``: product of 1D Gaussians centred on the window with
        ``sigma = sigma_scale * size``, clamped below at ``1e-3``; ``hann``: product of
        Hann windows without their zero end points (as TorchIO); ``constant``: ones.
    sigma_scale
        Gaussian width as a fraction of the window size.
    """
    weights: torch.Tensor | None = None
    for axis, size in enumerate(patch_size):
        if blend == "gaussian":
            x = torch.arange(-(size - 1) / 2.0, (size - 1) / 2.0 + 1, dtype=torch.float32)
            line = torch.exp(x**2 / (-2 * (sigma_scale * size) ** 2))
        elif blend == "hann":
            line = torch.hann_window(size + 2, periodic=False, dtype=torch.float32)[1:-1]
        elif blend == "constant":
            line = torch.ones(size, dtype=torch.float32)
        else:
            raise ValueError(f"unknown blend {blend!r}; valid: gaussian, hann, constant")
        weights = line if weights is None else weights.unsqueeze(-1) * line[(None,) * axis]
    assert weights is not None
    if blend == "gaussian":
        weights = weights.clamp(min=max(float(weights.min()), GAUSSIAN_FLOOR))
    return weights


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices of the windows along one axis (MONAI's layout).

    The step is ``int(patch * (1 - overlap))`` (at least 1); windows are added until
    one reaches the end, and that last one is shifted back to end exactly at ``size``.
    ``size`` must be ≥ ``patch`` (pad first).
    """
    if patch == size:
        return [0]
    step = max(1, int(patch * (1 - overlap)))
    count = next(i for i in range(math.ceil(size / step) + 1) if i * step + patch >= size) + 1
    return [i * step - max(i * step + patch - size, 0) for i in range(count)]


def tiling_starts(starts: Sequence[int], patch: int) -> list[int]:
    """A subset of ``starts`` whose windows cover the axis with the least overlap.

    Greedy: the first start, then each start at least one window beyond the last
    kept one, and the final start (which ends at the volume's edge).
    """
    kept = [starts[0]]
    for start in starts[1:]:
        if start >= kept[-1] + patch:
            kept.append(start)
    if kept[-1] != starts[-1]:
        kept.append(starts[-1])
    return kept


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of one volume go.

    Attributes
    ----------
    padding
        Voxels added per axis ``(D, H, W)`` so that the volume holds at least one window
        (split symmetrically, as MONAI does).
    padded
        The padded volume's size.
    passes
        Window starts per pass: one pass with every window, or (coarse to fine) the
        non-overlapping tiling first and the other windows second.
    """

    padding: tuple[int, int, int]
    padded: tuple[int, int, int]
    passes: list[list[tuple[int, ...]]]


class _Blend:
    """The weighted sum and weight sum of the windows of one volume (``C_out + 1`` accumulators)."""

    def __init__(self, image: torch.Tensor, padded: tuple[int, ...], weights: torch.Tensor,
                 dtype: torch.dtype, constant: torch.Tensor | None) -> None:
        self.image, self.padded, self.weights, self.dtype, self.constant = image, padded, weights, dtype, constant
        self.accumulated_weights = weights.to(dtype)
        self.weight_sum = torch.zeros((image.shape[0], 1, *padded), dtype=dtype, device=image.device)
        self.output: torch.Tensor | None = None

    def add(self, b: int, chunk: list[tuple[int, ...]], results: list[torch.Tensor | None],
            patch: tuple[int, int, int]) -> None:
        if self.output is None:
            channels = next((r.shape[0] for r in results if r is not None), None) or len(self.constant)  # type: ignore[arg-type]
            self.output = torch.zeros((self.image.shape[0], channels, *self.padded), dtype=self.dtype,
                                      device=self.image.device)
        for s, result in zip(chunk, results):
            if result is None:
                continue
            self.output[(b, slice(None), *_window(s, patch))] += (result * self.weights).to(self.dtype)
            self.weight_sum[(b, 0, *_window(s, patch))] += self.accumulated_weights

    def result(self) -> torch.Tensor:
        """Normalise in place; voxels no evaluated window covers get the constant."""
        output = self.output
        assert output is not None
        output.div_(self.weight_sum)
        if self.constant is not None:
            uncovered = self.weight_sum[:, 0] == 0  # every window over these voxels was skipped
            if bool(uncovered.any()):
                for c, value in enumerate(self.constant.flatten().tolist()):
                    output[:, c].masked_fill_(uncovered, value)
        return output


@dataclass(frozen=True)
class SlidingWindowInferer:
    """Sliding-window inference configured once and applied to ``(volume, network)`` pairs.

    Modelled on MONAI's ``SlidingWindowInferer``: validation
    (:mod:`femurseg.models.module`) and ``femurseg segment`` (:mod:`femurseg.inference`)
    run the same object, so validation Dice is measured the way users predict. The
    parameters are those of :func:`sliding_window_inference`, which builds one.

    Examples
    --------
    >>> inferer = SlidingWindowInferer(16, overlap=0.5, activation="softmax")
    >>> inferer(torch.randn(1, 1, 20, 20, 20), torch.nn.Conv3d(1, 2, 3, padding=1)).shape
    torch.Size([1, 2, 20, 20, 20])
    """

    patch_size: int | Sequence[int]
    overlap: float | Sequence[float] = 0.5
    blend: Blend = "gaussian"
    batch_size: int = 4
    sigma_scale: float = 0.125
    activation: Activation = None
    precision: Precision = "fp32"
    accumulator_dtype: torch.dtype = torch.float32
    pad_value: float = 0.0
    pad_mode: Literal["constant", "replicate"] = "constant"
    device: torch.device | str | None = None
    skip: Callable[[torch.Tensor], torch.Tensor] | None = None
    skip_value: Sequence[float] | None = None
    sparse: SparseWindows | None = None

    def __post_init__(self) -> None:
        overlap = self.overlap
        overlaps = (float(overlap),) * 3 if isinstance(overlap, (int, float)) else tuple(float(o) for o in overlap)
        if len(overlaps) != 3 or any(not 0 <= o < 1 for o in overlaps):
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {self.batch_size}")
        if self.pad_mode not in ("constant", "replicate"):
            raise ValueError(f"unknown pad_mode {self.pad_mode!r}; valid: constant, replicate")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"unknown precision {self.precision!r}; valid: fp32, bf16")
        if (self.skip is not None or self.sparse is not None) and self.skip_value is None:
            raise ValueError("skip and sparse need skip_value: the output of a window that is not evaluated")
        _activation(self.activation)  # an unknown activation fails here, not at the first window
        object.__setattr__(self, "_patch", as_triple(self.patch_size, "patch_size"))
        object.__setattr__(self, "_overlaps", overlaps)

    # ------------------------------------------------------------------ planning
    def plan(self, spatial: Sequence[int]) -> WindowPlan:
        """Padding, padded size and the window starts of each pass for a volume of size ``spatial``."""
        patch, overlaps = self._patch, self._overlaps  # type: ignore[attr-defined]
        padding = tuple(max(p - int(s), 0) for p, s in zip(patch, spatial))
        padded = tuple(int(s) + p for s, p in zip(spatial, padding))
        per_axis = [window_starts(s, p, o) for s, p, o in zip(padded, patch, overlaps)]
        starts = list(itertools.product(*per_axis))
        if self.sparse is None:
            passes = [starts]
        else:
            anchors = set(itertools.product(*(tiling_starts(a, p) for a, p in zip(per_axis, patch))))
            passes = [[s for s in starts if s in anchors], [s for s in starts if s not in anchors]]
        return WindowPlan(padding, padded, passes)  # type: ignore[arg-type]

    def _pad(self, image: torch.Tensor, padding: Sequence[int]) -> torch.Tensor:
        if not any(padding):
            return image
        pad_arg = [v for p in reversed(padding) for v in (p // 2, p - p // 2)]
        if self.pad_mode == "replicate":
            return F.pad(image, pad_arg, mode="replicate")
        return F.pad(image, pad_arg, mode="constant", value=self.pad_value)

    # ------------------------------------------------------------------ running
    def __call__(
        self,
        image: torch.Tensor,
        network: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]],
        counter: list[int] | None = None,
    ) -> torch.Tensor:
        """Probabilities (or outputs) of ``network`` over ``image`` ``(B, C_in, D, H, W)``.

        Returns ``(B, C_out, D, H, W)`` in ``accumulator_dtype`` on the image's device; the
        number of windows the network evaluated is appended to ``counter`` if given.
        """
        if image.ndim != 5:
            raise ValueError(f"image must be (B, C, D, H, W), got shape {tuple(image.shape)}")
        spatial = tuple(int(s) for s in image.shape[2:])
        patch: tuple[int, int, int] = self._patch  # type: ignore[attr-defined]
        plan = self.plan(spatial)
        image = self._pad(image, plan.padding)
        constant = None if self.skip_value is None else torch.tensor(
            list(self.skip_value), dtype=torch.float32, device=image.device).view(-1, 1, 1, 1)
        blend = _Blend(image, plan.padded, importance_map(patch, self.blend, self.sigma_scale).to(image.device),
                       self.accumulator_dtype, constant)
        evaluated = 0
        with torch.no_grad():
            for b in range(image.shape[0]):
                evaluated += self._passes(image, network, b, plan, blend)
        if counter is not None:
            counter.append(evaluated)
        output = blend.result()
        if any(plan.padding):
            crop = tuple(slice(p // 2, p // 2 + s) for p, s in zip(plan.padding, spatial))
            output = output[(slice(None), slice(None), *crop)]
        return output

    def _passes(self, image: torch.Tensor, network: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]],
                b: int, plan: WindowPlan, blend: _Blend) -> int:
        """Evaluate the windows of batch item ``b`` pass by pass; returns how many the network ran."""
        patch: tuple[int, int, int] = self._patch  # type: ignore[attr-defined]
        sparse, skip = self.sparse, self.skip
        run_device = torch.device(self.device) if self.device is not None else image.device
        autocast = (torch.autocast(run_device.type, dtype=torch.bfloat16) if self.precision == "bf16"
                    else contextlib.nullcontext())
        activate = _activation(self.activation)
        roi = torch.zeros(plan.padded, dtype=torch.bool, device=image.device) if sparse is not None else None
        evaluated = 0
        for index, selected in enumerate(plan.passes):
            if index == 1:  # refinement: only windows that touch the first pass's foreground
                assert roi is not None and sparse is not None
                selected = [s for s in selected if bool(roi[sparse.core_of(s, patch)].any())]
            for chunk in _chunks(selected, self.batch_size):
                patches = torch.stack([image[b][(slice(None), *_window(s, patch))] for s in chunk])
                skipped = [False] * len(chunk) if skip is None else [bool(v) for v in skip(patches)]
                keep = [i for i, flag in enumerate(skipped) if not flag]
                run = patches if len(keep) == len(chunk) else patches[keep]
                result = _run(network, run.to(run_device), autocast, activate).to(image.device) if keep else None
                evaluated += len(keep)
                computed = iter(result) if result is not None else iter(())
                results = [None if flag else next(computed) for flag in skipped]
                if roi is not None and index == 0:
                    assert sparse is not None
                    for s, r in zip(chunk, results):
                        if r is not None:
                            roi[_window(s, patch)] |= r[sparse.channel] >= sparse.threshold
                blend.add(b, chunk, results, patch)
        return evaluated


def sliding_window_inference(
    image: torch.Tensor,
    network: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]],
    patch_size: int | Sequence[int],
    overlap: float | Sequence[float] = 0.5,
    blend: Blend = "gaussian",
    batch_size: int = 4,
    *,
    sigma_scale: float = 0.125,
    activation: Activation = None,
    precision: Precision = "fp32",
    accumulator_dtype: torch.dtype = torch.float32,
    pad_value: float = 0.0,
    pad_mode: Literal["constant", "replicate"] = "constant",
    device: torch.device | str | None = None,
    skip: Callable[[torch.Tensor], torch.Tensor] | None = None,
    skip_value: Sequence[float] | None = None,
    sparse: SparseWindows | None = None,
    counter: list[int] | None = None,
) -> torch.Tensor:
    """Apply ``network`` to a volume window by window and blend the outputs.

    Parameters
    ----------
    image
        ``(B, C_in, D, H, W)``; stays on its device (accumulators live there too).
    network
        Maps ``(N, C_in, *patch_size)`` to ``(N, C_out, *patch_size)``; a list or
        tuple output (deep supervision) uses its first element. Called under
        ``torch.no_grad``.
    patch_size
        Window size (an int for all axes, or one per axis). Volumes smaller than a
        window are padded symmetrically (see ``pad_mode``) and cropped back.
    overlap
        Fraction of a window shared with its neighbour, in ``[0, 1)``, per axis or one for all.
    blend
        Importance map, see :func:`importance_map`.
    batch_size
        Windows evaluated per network call.
    sigma_scale
        Gaussian sigma as a fraction of the window.
    activation
        Applied to each window's output (in float32) before blending: ``"softmax"``
        over channels, ``"sigmoid"``, a callable, or ``None`` for raw outputs.
    precision
        ``"bf16"`` runs the network under bfloat16 autocast (on CPU too); ``"fp32"`` does not.
    accumulator_dtype
        ``torch.float32`` or ``torch.float16`` (halves the accumulators' memory,
        with about 3 significant digits).
    pad_value
        Value of padded voxels with ``pad_mode="constant"``.
    pad_mode
        ``"constant"`` pads with ``pad_value`` (MONAI's default); ``"replicate"``
        repeats the edge voxels, so that a scan shorter than a window continues
        its anatomy instead of ending in an invented surface (a network trained on
        patches inside the volumes never saw one).
    device
        Where the network runs; windows are moved there and their outputs back.
        Default: the image's device.
    skip
        Optional predicate on a batch of input windows ``(N, C_in, *patch_size)``
        returning a boolean ``(N,)``: windows marked ``True`` are not evaluated and
        are left out of the blend (e.g. windows of air, which cannot hold bone).
    skip_value
        Per-channel output, after the activation, of voxels that no evaluated window
        covers; required with ``skip`` and ``sparse``.
    sparse
        Coarse-to-fine window selection (:class:`SparseWindows`); ``None``
        evaluates every window.
    counter
        If given, the number of windows evaluated by the network is appended to it.

    Returns
    -------
    torch.Tensor
        ``(B, C_out, D, H, W)`` in ``accumulator_dtype``, on the image's device.

    Raises
    ------
    ValueError
        If the image is not 5D, the overlap is outside ``[0, 1)`` or an argument is unknown.
    """
    inferer = SlidingWindowInferer(
        patch_size, overlap, blend, batch_size, sigma_scale=sigma_scale, activation=activation,
        precision=precision, accumulator_dtype=accumulator_dtype, pad_value=pad_value, pad_mode=pad_mode,
        device=device, skip=skip, skip_value=skip_value, sparse=sparse)
    return inferer(image, network, counter=counter)


def _run(
    network: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]],
    patches: torch.Tensor,
    autocast: contextlib.AbstractContextManager,
    activate: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The activated float32 output of one batch of windows."""
    with autocast:
        result = network(patches)
    if isinstance(result, (list, tuple)):
        result = result[0]
    return activate(result.float())


def _window(start: Sequence[int], patch: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(s, s + p) for s, p in zip(start, patch))


def _chunks(items: list[tuple[int, ...]], size: int) -> Iterator[list[tuple[int, ...]]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _activation(activation: Activation) -> Callable[[torch.Tensor], torch.Tensor]:
    if activation is None:
        return lambda x: x
    if activation == "softmax":
        return lambda x: torch.softmax(x, dim=1)
    if activation == "sigmoid":
        return torch.sigmoid
    if callable(activation):
        return activation
    raise ValueError(f"unknown activation {activation!r}; valid: softmax, sigmoid, a callable or None")
