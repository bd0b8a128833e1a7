"""Augmentation presets, named in YAML: ``none``, ``light``, ``default``, ``heavy``, ``domain``, ``domain_dim_cortex``.

Built from TorchIO transforms, plus one QCT-specific transform: a random gain and
offset on the HU scale (scanner calibration differences), applied to the image
after scaling to ``[-1, 1]``. Spatial transforms move every image of a subject
together (the partial-volume ``fractions`` are interpolated linearly, the label by
nearest neighbour); intensity transforms and the thick-slice simulation touch only
``image``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torchio as tio

__all__ = ["Preset", "PRESETS", "make_augmentation", "mirror_axes", "RandomGainOffset", "RandomIntensityCurve",
           "LabelToUint8"]

Preset = Literal["none", "light", "default", "heavy", "domain", "domain_dim_cortex"]
PRESETS: tuple[str, ...] = ("none", "light", "default", "heavy", "domain", "domain_dim_cortex")
#: HU window of the scaled images the intensity transforms see (``Preprocessing.hu_window``'s default)
HU_WINDOW: tuple[float, float] = (-1000.0, 2000.0)
#: tissue levels (HU) that :class:`RandomIntensityCurve` moves: air, lung/gas, fat, water/marrow,
#: muscle, trabecular bone, dense trabecular, cortical bone, dense cortical
CURVE_KNOTS_HU: tuple[float, ...] = (-1000.0, -400.0, -100.0, 0.0, 50.0, 200.0, 450.0, 900.0, 2000.0)
#: the only image intensity transforms may change (not the ``fractions`` targets)
IMAGE = ["image"]


class RandomGainOffset(tio.IntensityTransform):
    """Multiply intensities by ``1 + U(-gain, gain)`` and add ``U(-offset, offset)``.

    Parameters
    ----------
    gain
        Maximum relative gain change (0.05 is ±5 %).
    offset
        Maximum additive offset, in the image's (scaled) units.
    """

    def __init__(self, gain: float = 0.05, offset: float = 0.01, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gain = gain
        self.offset = offset
        self.args_names = ["gain", "offset"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:  # noqa: D102
        for image in self.get_images(subject):
            g = 1 + (torch.rand(()) * 2 - 1) * self.gain
            o = (torch.rand(()) * 2 - 1) * self.offset
            image.set_data(image.data * g + o)
        return subject


class RandomIntensityCurve(tio.IntensityTransform):
    """Remap intensities through a random monotone piecewise-linear curve (domain randomisation).

    In the spirit of SynthSeg: the network should learn shape and context, not the
    renderer's exact grey values. The knots sit at tissue levels
    (:data:`CURVE_KNOTS_HU`); each moves by ``±jitter`` of its distance to water (at
    least ``min_shift_hu``), then the whole curve gets a gain of ``1 ± scale`` and an
    offset of ``± offset_hu``. Knots are kept in order, so fat stays darker than
    muscle and bone brighter than both.

    With probability ``dim_cortex_p`` the curve also compresses everything above
    the dense-trabecular level (450 HU) by a factor drawn from ``dim_cortex``: the
    cortex is then only slightly brighter than the cancellous bone it encloses, as
    in real knees and thin hip cortices after partial volume, where a network that
    learned to look for a bright rim finds none (docs/model_card.md).

    Parameters
    ----------
    jitter
        Maximum relative move of each tissue level.
    min_shift_hu
        Maximum move (HU) of the levels near water, where a relative jitter is small.
    scale
        Maximum global gain change (0.15 is ±15 %).
    offset_hu
        Maximum global offset in HU.
    hu_window
        The HU window that the image was scaled from to ``[-1, 1]``.
    dim_cortex_p, dim_cortex
        Probability and range ``(low, high)`` of the compression factor above
        the dense-trabecular level (0 disables it, the ``domain`` preset).
    """

    def __init__(self, jitter: float = 0.2, min_shift_hu: float = 25.0, scale: float = 0.15,
                 offset_hu: float = 40.0, hu_window: tuple[float, float] = HU_WINDOW, dim_cortex_p: float = 0.0,
                 dim_cortex: tuple[float, float] = (0.1, 0.5), **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= dim_cortex_p <= 1.0 or not 0.0 < dim_cortex[0] <= dim_cortex[1] <= 1.0:
            raise ValueError(f"dim_cortex_p {dim_cortex_p} must be a probability and dim_cortex {dim_cortex} "
                             "a range within (0, 1]")
        self.jitter, self.min_shift_hu, self.scale, self.offset_hu = jitter, min_shift_hu, scale, offset_hu
        self.hu_window = hu_window
        self.dim_cortex_p, self.dim_cortex = dim_cortex_p, dim_cortex
        self.args_names = ["jitter", "min_shift_hu", "scale", "offset_hu", "hu_window", "dim_cortex_p", "dim_cortex"]

    def curve(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One random curve: knots ``(x, y)`` in scaled units, ``x`` increasing."""
        knots = torch.tensor(CURVE_KNOTS_HU, dtype=torch.float64)
        reach = torch.maximum(knots.abs() * self.jitter, torch.tensor(self.min_shift_hu, dtype=torch.float64))
        moved = knots + (torch.rand(len(knots), dtype=torch.float64) * 2 - 1) * reach
        moved[0] = knots[0]  # air stays air (the padding value of every scan)
        moved = torch.cummax(moved, 0).values
        if self.dim_cortex_p > 0 and torch.rand(()) < self.dim_cortex_p:
            low_f, high_f = self.dim_cortex
            factor = low_f + torch.rand((), dtype=torch.float64) * (high_f - low_f)
            pivot = CURVE_KNOTS_HU.index(450.0)
            moved[pivot + 1:] = moved[pivot] + (moved[pivot + 1:] - moved[pivot]) * factor
        gain = 1 + (torch.rand((), dtype=torch.float64) * 2 - 1) * self.scale
        shift = (torch.rand((), dtype=torch.float64) * 2 - 1) * self.offset_hu
        moved[1:] = moved[1:] * gain + shift
        low, high = self.hu_window
        centre, half = (low + high) / 2, (high - low) / 2
        return ((knots - centre) / half).float(), ((moved - centre) / half).float()

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:  # noqa: D102
        for image in self.get_images(subject):
            x, y = self.curve()
            data = image.data.float()
            index = torch.bucketize(data.clamp(x[0], x[-1]), x[1:-1])
            x0, x1, y0, y1 = x[index], x[index + 1], y[index], y[index + 1]
            image.set_data(y0 + (data - x0) * (y1 - y0) / (x1 - x0))
        return subject


class LabelToUint8(tio.Transform):
    """Cast label maps back to ``uint8`` (TorchIO's spatial transforms return float labels)."""

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:  # noqa: D102
        for image in subject.get_images(intensity_only=False):
            if isinstance(image, tio.LabelMap) and image.data.dtype != torch.uint8:
                image.set_data(image.data.round().to(torch.uint8))
        return subject


def mirror_axes(preset: Preset | str) -> str:
    """The axes a preset mirrors, as test-time augmentation names them (``"x"`` or ``"none"``).

    Every preset but ``none`` mirrors left/right only: a femur flipped head-to-foot or
    front-to-back is not anatomy, so test-time flips along those axes would show the
    network inputs it never saw (measured in docs/inference.md).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; valid: {', '.join(PRESETS)}")
    return "none" if preset == "none" else "x"


def make_augmentation(preset: Preset | str) -> tio.Transform | None:
    """Build the augmentation pipeline of a preset.

    Parameters
    ----------
    preset
        ``none``: nothing. ``light``: left/right mirroring and a small affine.
        ``default``: mirroring, affine (±10 %, ±10°), HU gain/offset, noise, blur.
        ``heavy``: ``default`` plus elastic deformation, thick-slice simulation
        (anisotropic resolution). ``domain``: domain randomisation for training on
        phantoms and segmenting real CT (the default model's recipe): mirroring,
        affine (scale 0.8-1.15, ±12°), a random intensity curve per scan (tissue
        levels ±20 %, gain ±15 %, offset ±40 HU), bias field, noise, blur and thick
        slices. ``domain_dim_cortex``: ``domain`` whose intensity curve, in 40 % of
        scans, also compresses everything above 450 HU by 0.1-0.5 (a dim cortex,
        the femur-ct-v5 recipe). Every pipeline ends by casting labels back to ``uint8``.

    Returns
    -------
    torchio.Transform or None
        ``None`` for ``none``.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; valid: {', '.join(PRESETS)}")
    if preset == "none":
        return None
    # axis 0 of a canonical image is left-right: mirroring swaps left and right femora
    mirror = tio.RandomFlip(axes=(0,), flip_probability=0.5)
    if preset in ("domain", "domain_dim_cortex"):
        dim = 0.4 if preset == "domain_dim_cortex" else 0.0
        return tio.Compose([
            mirror,
            tio.RandomAffine(scales=(0.8, 1.15), degrees=12, translation=0, p=0.8, default_pad_value="minimum"),
            RandomIntensityCurve(p=0.9, include=IMAGE, dim_cortex_p=dim),
            tio.RandomBiasField(coefficients=0.15, order=3, p=0.3, include=IMAGE),
            tio.RandomBlur(std=(0, 1.2), p=0.4, include=IMAGE),
            tio.RandomAnisotropy(axes=(2,), downsampling=(1.2, 2.0), p=0.2, include=IMAGE),
            tio.RandomNoise(std=(0, 0.035), p=0.6, include=IMAGE),
            LabelToUint8(),
        ])
    if preset == "light":
        affine = tio.RandomAffine(scales=0.05, degrees=5, p=0.5, default_pad_value="minimum")
        return tio.Compose([mirror, affine, LabelToUint8()])
    transforms: list[tio.Transform] = [
        mirror,
        tio.RandomAffine(scales=0.1, degrees=10, translation=0, p=0.7, default_pad_value="minimum"),
        RandomGainOffset(gain=0.05, offset=0.02, p=0.5, include=IMAGE),
        tio.RandomNoise(std=(0, 0.02), p=0.3, include=IMAGE),
        tio.RandomBlur(std=(0, 0.75), p=0.2, include=IMAGE),
    ]
    if preset == "heavy":
        transforms += [
            tio.RandomElasticDeformation(num_control_points=7, max_displacement=4, p=0.3),
            tio.RandomAnisotropy(axes=(2,), downsampling=(1.5, 3), p=0.25, include=IMAGE),
        ]
    return tio.Compose([*transforms, LabelToUint8()])
