"""Networks, losses and the Lightning module that trains them."""

from femurseg.models import losses, nets  # noqa: F401  (fill the registries)
from femurseg.models.module import SegmentationModule
from femurseg.models.registry import LOSSES, NETS

__all__ = ["NETS", "LOSSES", "SegmentationModule"]
