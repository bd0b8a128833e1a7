"""Registered 3D encoder-decoder networks; each module registers one net in ``NETS``.

Modules are imported explicitly (no package scanning): adding a net means adding
its module here.
"""

from femurseg.models.nets import attention_unet3d, dynunet3d, unet3d, unetr3d, vnet3d  # noqa: F401
from femurseg.models.nets.attention_unet3d import AttentionUNet3d
from femurseg.models.nets.dynunet3d import DynUNet3d, NetPlan, plan
from femurseg.models.nets.unet3d import UNet3d
from femurseg.models.nets.unetr3d import UNETR3d
from femurseg.models.nets.vnet3d import VNet3d

__all__ = ["UNet3d", "VNet3d", "AttentionUNet3d", "DynUNet3d", "UNETR3d", "NetPlan", "plan"]
