"""The ensemble as one network: mean softmax over checkpoints and mirror flips, per window.

:class:`EnsembleNetwork` maps a batch of windows ``(N, 1, D, H, W)`` to the two
probability maps every later step uses, channel 0 the periosteal probability
``P(label ≥ 1)`` and channel 1 the endosteal probability ``P(label = 2)``:

- binary members: ``P`` is the mean foreground softmax of the periosteal models,
  ``E`` that of the endosteal models;
- 3-class members: ``P = p_cortical + p_trabecular`` and ``E = p_trabecular``,
  averaged over models.

Each member sees every mirror flip of the window (test-time augmentation); its
output is flipped back before averaging. Because sliding-window blending is linear,
ensembling per window equals ensembling whole-volume probabilities, while one
accumulator suffices. With ``moments=True`` two more channels hold the mean of
``P²`` and ``E²`` over the ensemble, from which the ensemble's standard deviation
(disagreement) follows, and one channel per **member** holds that member's ``P``
(channels 4 onwards), from which :mod:`~femurseg.inference.qc` measures pairwise
Dice and volume spread. A member is one checkpoint (its flips averaged) when a
contour has several checkpoints, otherwise one flip of the single checkpoint.

Examples
--------
>>> member = torch.nn.Conv3d(1, 2, 1)
>>> ensemble = EnsembleNetwork(periosteal=[member], endosteal=[member], flips=mirror_flips("xyz"))
>>> ensemble(torch.zeros(2, 1, 8, 8, 8)).shape
torch.Size([2, 2, 8, 8, 8])
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["EnsembleNetwork", "mirror_flips"]

_AXES = {"x": 0, "y": 1, "z": 2}


def mirror_flips(tta: str) -> list[tuple[int, ...]]:
    """All combinations of mirror flips over the axes named in ``tta``.

    Parameters
    ----------
    tta
        ``"none"`` (no augmentation) or axis letters of the network's grid, e.g.
        ``"xyz"`` (8 flips, nnU-Net's default) or ``"xy"`` (4 flips).

    Returns
    -------
    list of tuple of int
        Spatial axes (0, 1, 2) to flip, the identity ``()`` first.
    """
    if tta == "none":
        return [()]
    if not tta or any(c not in _AXES for c in tta) or len(set(tta)) != len(tta):
        raise ValueError(f"tta must be 'none' or distinct axis letters from 'xyz', got {tta!r}")
    axes = sorted(_AXES[c] for c in tta)
    return [combo for r in range(len(axes) + 1) for combo in itertools.combinations(axes, r)]


class EnsembleNetwork(nn.Module):
    """Mean probabilities of several networks over mirror flips (see the module docstring).

    Parameters
    ----------
    periosteal, endosteal
        Binary networks (2 output channels) of each contour.
    compartments
        3-class networks (background, cortical, trabecular); exclusive with the above.
    flips
        Spatial axes to flip per augmentation (:func:`mirror_flips`).
    moments
        Also output the ensemble means of ``P²`` and ``E²`` (channels 2 and 3) and
        each member's ``P`` (channels 4 to ``4 + members - 1``).
    """

    def __init__(
        self,
        periosteal: Sequence[nn.Module] = (),
        endosteal: Sequence[nn.Module] = (),
        compartments: Sequence[nn.Module] = (),
        flips: Sequence[tuple[int, ...]] = ((),),
        moments: bool = False,
    ) -> None:
        super().__init__()
        if compartments and (periosteal or endosteal):
            raise ValueError("an ensemble is either binary (periosteal + endosteal) or 3-class (compartments)")
        if not compartments and not (periosteal and endosteal):
            raise ValueError("a binary ensemble needs periosteal and endosteal networks")
        self.periosteal = nn.ModuleList(periosteal)
        self.endosteal = nn.ModuleList(endosteal)
        self.compartments = nn.ModuleList(compartments)
        self.flips = [tuple(f) for f in flips]
        self.moments = moments

    @property
    def size(self) -> int:
        """Predictions averaged per contour: members × flips."""
        return max(len(self.periosteal), len(self.compartments)) * len(self.flips)

    @property
    def members(self) -> int:
        """Members whose periosteal maps are output with ``moments``: checkpoints, or flips of a single one."""
        nets = len(self.compartments) or len(self.periosteal)
        return nets if nets > 1 else len(self.flips)

    @property
    def channels(self) -> int:
        """Output channels: 2, or with ``moments`` 4 plus one per member."""
        return 4 + self.members if self.moments else 2

    def _probabilities(self, net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        """Softmax ``(N, C, D, H, W)`` of ``net`` for each flip, flipped back."""
        out = []
        for flip in self.flips:
            dims = [2 + a for a in flip]
            logits = net(x.flip(dims) if dims else x)
            if isinstance(logits, (list, tuple)):
                logits = logits[0]
            probabilities = torch.softmax(logits.float(), dim=1)
            out.append(probabilities.flip(dims) if dims else probabilities)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, D, H, W)`` windows → ``(N, channels, D, H, W)`` float32 (see :attr:`channels`)."""
        result = torch.zeros((x.shape[0], self.channels, *x.shape[2:]), dtype=torch.float32, device=x.device)
        if self.compartments:
            sources = [(net, None) for net in self.compartments]
        else:
            sources = [(net, 0) for net in self.periosteal] + [(net, 1) for net in self.endosteal]
        counts = [0, 0]
        per_flip = (len(self.compartments) or len(self.periosteal)) == 1  # members are the flips
        member = 0
        for net, channel in sources:
            for f, p in enumerate(self._probabilities(net, x)):
                pairs = [(0, p[:, 1] + p[:, 2]), (1, p[:, 2])] if channel is None else [(channel, p[:, 1])]
                for c, value in pairs:
                    result[:, c] += value
                    if self.moments:
                        result[:, c + 2] += value * value
                        if c == 0:
                            result[:, 4 + (f if per_flip else member)] += value / (1 if per_flip else len(self.flips))
                    counts[c] += 1
            if channel != 1:
                member += 1
        for c in range(2):
            result[:, c:4:2] /= counts[c]
        return result
