"""The registries of the models layer: networks and losses.

``NETS`` is filled by the modules of :mod:`femurseg.models.nets` (imported by
:mod:`femurseg.models`) and by third-party packages through the entry-point group
``femurseg.nets``::

    # pyproject.toml of a plugin package
    [project.entry-points."femurseg.nets"]
    tiny_unet = "my_package.nets:TinyUNet"

after which ``--model.net tiny_unet`` trains it.
"""

from __future__ import annotations

from femurseg.registry import Registry

__all__ = ["NETS", "LOSSES"]

NETS: Registry = Registry("net", entry_point_group="femurseg.nets")
LOSSES: Registry = Registry("loss")
