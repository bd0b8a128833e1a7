"""Networks, losses and the Lightning module that trains them."""

from femurseg.models import losses, nets  # noqa: F401  (fill the registries)
from femurseg.models.module import SegmentationModule
from femurseg.models.registry import LOSSES, NETS, NetSpec, net_spec

__all__ = ["NETS", "LOSSES", "NetSpec", "net_spec", "SegmentationModule"]
