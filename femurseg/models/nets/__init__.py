"""Registered 3D encoder-decoder networks; each module registers one net in ``NETS``."""

from femurseg.models.nets import unet3d  # noqa: F401
from femurseg.models.nets.unet3d import UNet3d

__all__ = ["UNet3d"]
