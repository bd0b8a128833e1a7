"""Augmentation presets, named in YAML: ``none``, ``light``, ``default``, ``heavy``.

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

__all__ = ["Preset", "PRESETS", "make_augmentation", "mirror_axes", "RandomGainOffset", "LabelToUint8"]

Preset = Literal["none", "light", "default", "heavy"]
PRESETS: tuple[str, ...] = ("none", "light", "default", "heavy")
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
        (anisotropic resolution). Every pipeline ends by casting labels back to ``uint8``.

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
