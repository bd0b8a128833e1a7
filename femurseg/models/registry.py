"""The registries of the models layer: networks and losses, and what a network declares.

``NETS`` is filled by the modules of :mod:`femurseg.models.nets` (imported by
:mod:`femurseg.models`) and by third-party packages through the entry-point group
``femurseg.nets``::

    # pyproject.toml of a plugin package
    [project.entry-points."femurseg.nets"]
    tiny_unet = "my_package.nets:TinyUNet"

after which ``--model.net tiny_unet`` trains it.

A network declares at registration what it needs from femurseg and what it offers, as a
:class:`NetSpec` (the whole contract is in ``docs/plugins.md``)::

    @NETS.register("my_unet", metadata=NetSpec(deep_supervision=True, auxiliary_heads=("aux_heads",)))
    class MyUNet(nn.Module): ...

:func:`net_spec` reads the declaration back; nothing is discovered by inspecting
signatures or parameter names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from femurseg.registry import Registry

__all__ = ["NETS", "LOSSES", "NetSpec", "net_spec"]


@dataclass(frozen=True)
class NetSpec:
    """What a registered network declares about itself (timm's ``default_cfg``, for femurseg).

    Attributes
    ----------
    needs_patch_size
        The constructor takes ``patch_size`` (the training patch, ``(W, H, D)``
        voxels) and plans its topology from it;
        :class:`~femurseg.models.SegmentationModule` passes ``model.patch_size``
        unless ``net_kwargs`` gives one.
    deep_supervision
        The constructor takes ``deep_supervision: bool``; when it is true, ``forward``
        in training mode returns a list of logits, full resolution first, then
        coarser ones, which the module weights by ``deep_supervision_decay``. In eval
        mode ``forward`` returns one tensor. Inference rebuilds the net with
        ``deep_supervision=False``.
    auxiliary_heads
        Names of the submodules that exist only for deep supervision (``"aux_heads"``).
        Their weights, saved by training, are ignored when inference rebuilds the net
        without deep supervision; any other weight that does not fit is an error.

    Examples
    --------
    >>> spec = NetSpec(deep_supervision=True, auxiliary_heads=("aux_heads",))
    >>> spec.inference_kwargs({"channels": [8, 16], "deep_supervision": True})
    {'channels': [8, 16], 'deep_supervision': False}
    >>> spec.is_auxiliary_weight("aux_heads.0.weight"), spec.is_auxiliary_weight("head.weight")
    (True, False)
    """

    needs_patch_size: bool = False
    deep_supervision: bool = False
    auxiliary_heads: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.auxiliary_heads, str) or not all(
            isinstance(h, str) and h for h in self.auxiliary_heads
        ):
            raise TypeError(f"auxiliary_heads must be a tuple of submodule names, got {self.auxiliary_heads!r}")
        if self.auxiliary_heads and not self.deep_supervision:
            raise ValueError("auxiliary_heads are the deep-supervision heads: declare deep_supervision=True too")

    def inference_kwargs(self, net_kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor arguments to rebuild the net for inference: deep supervision off."""
        return {**net_kwargs, "deep_supervision": False} if self.deep_supervision else dict(net_kwargs)

    def is_auxiliary_weight(self, key: str) -> bool:
        """Whether state-dict ``key`` belongs to one of the :attr:`auxiliary_heads`."""
        return any(key.startswith(f"{head}.") for head in self.auxiliary_heads)


NETS: Registry = Registry("net", entry_point_group="femurseg.nets", metadata_type=NetSpec)
LOSSES: Registry = Registry("loss")


def net_spec(name: str) -> NetSpec:
    """The :class:`NetSpec` that net ``name`` (registry name or dotted path) declared; defaults if none.

    Raises
    ------
    KeyError, ImportError
        If ``name`` is not a registered net or importable path.
    """
    return NETS.metadata(name)
