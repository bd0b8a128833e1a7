"""Foreground-weighted patch sampling: ``label_probabilities`` per class, fast on large volumes.

:class:`ClassBalancedSampler` has the semantics of TorchIO's ``LabelSampler``:
a patch is centred on a voxel of class ``v`` with probability
``label_probabilities[v]`` (renormalised over the classes present), uniformly
among that class's voxels that can centre a whole patch. TorchIO builds a dense
float64 probability map and its cumulative sum for every subject load: 3.7 s for
a 358×358×162 volume here, more than reading the subject from the cache. This
sampler counts the classes in one pass (``bincount``), then draws a class and a
voxel of it, by rejection for common classes and from the class's voxel indices
for rare ones: about 0.1 s for the same volume.

Examples
--------
>>> sampler = ClassBalancedSampler(96, "label", {0: 0.2, 1: 0.4, 2: 0.4})
>>> patches = list(sampler(subject, num_patches=8))       # doctest: +SKIP
>>> patches[0]["image"].shape                             # doctest: +SKIP
(1, 96, 96, 96)
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Mapping

import numpy as np
import torch
import torchio as tio
from torchio.data.sampler.sampler import RandomSampler

__all__ = ["ClassBalancedSampler"]

log = logging.getLogger(__name__)

#: classes at least this frequent (in the valid centre region) are drawn by rejection
_REJECTION_FRACTION = 0.05


class ClassBalancedSampler(RandomSampler):
    """Random patches centred on each label class with the given probabilities.

    Parameters
    ----------
    patch_size
        Patch size in voxels, an int or ``(w, h, d)``.
    label_name
        Name of the label map in the subject.
    label_probabilities
        Probability of centring a patch on each label value (need not sum to 1).
        Classes absent from a subject are skipped and the rest renormalised; a
        subject with none of them is sampled uniformly (with a warning).
    centre_jitter
        Fraction of the half patch by which the drawn centre is moved, uniformly
        and independently per axis (then clipped so the patch stays inside the
        volume). ``0`` (default) is TorchIO's ``LabelSampler``: a drawn voxel is
        always the patch centre, so the structure sits mid-patch. ``1`` puts the
        drawn voxel anywhere in the patch, so the network also learns the
        structure near a window's edge, where sliding-window inference meets it
        (the real-CT benchmark showed ``0`` made predictions depend on where the
        window grid falls).

    Notes
    -----
    Randomness comes from ``torch``'s generator, so ``torch.manual_seed`` makes
    the patches reproducible, as with TorchIO's samplers.
    """

    def __init__(
        self, patch_size: int | tuple[int, int, int], label_name: str = "label",
        label_probabilities: Mapping[int, float] | None = None,
        centre_jitter: float = 0.0,
    ) -> None:
        super().__init__(patch_size)
        if not 0.0 <= centre_jitter <= 1.0:
            raise ValueError(f"centre_jitter must be in [0, 1], got {centre_jitter}")
        self.centre_jitter = float(centre_jitter)
        probabilities = dict(label_probabilities or {0: 0.2, 1: 0.4, 2: 0.4})
        if any(p < 0 for p in probabilities.values()) or not any(p > 0 for p in probabilities.values()):
            raise ValueError(f"label_probabilities must be >= 0 with one > 0, got {probabilities}")
        self.label_name = label_name
        self.label_probabilities = {int(k): float(v) for k, v in probabilities.items() if v > 0}

    def _generate_patches(
        self, subject: tio.Subject, num_patches: int | None = None
    ) -> Generator[tio.Subject, None, None]:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
        label = subject[self.label_name].data[0].numpy()
        low = self.patch_size.astype(int) // 2  # the centre convention of TorchIO's samplers
        high = np.array(label.shape) - (self.patch_size.astype(int) - 1) // 2
        interior = label[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
        counts = np.bincount(interior.ravel(), minlength=max(self.label_probabilities) + 1)
        classes = [v for v in self.label_probabilities if v < len(counts) and counts[v] > 0]
        weights = np.array([self.label_probabilities[v] for v in classes])
        if not classes:
            log.warning("subject %r: no voxel of labels %s can centre a patch; sampling uniformly",
                        subject.get("subject_id"), sorted(self.label_probabilities))
        indices: dict[int, np.ndarray] = {}
        left = num_patches
        while left is None or left > 0:
            if classes:
                value = classes[int(rng.choice(len(classes), p=weights / weights.sum()))]
                centre = self._draw(interior, value, counts[value], indices, rng)
                if self.centre_jitter > 0.0:
                    reach = np.floor(self.centre_jitter * (self.patch_size.astype(int) - 1) / 2).astype(int)
                    shift = np.array([rng.integers(-r, r + 1) for r in reach])
                    centre = np.clip(centre + shift, 0, np.array(interior.shape) - 1)
            else:
                centre = np.array([rng.integers(n) for n in interior.shape])
            yield self.extract_patch(subject, tuple(int(c) for c in centre))  # interior index = patch start
            if left is not None:
                left -= 1

    @staticmethod
    def _draw(
        interior: np.ndarray, value: int, count: int, indices: dict[int, np.ndarray], rng: np.random.Generator
    ) -> np.ndarray:
        """An index of a random voxel of ``value`` in ``interior``."""
        if count >= _REJECTION_FRACTION * interior.size:
            while True:
                candidates = rng.integers(0, interior.shape, size=(64, 3))
                hits = candidates[interior[tuple(candidates.T)] == value]
                if len(hits):
                    return hits[0]
        if value not in indices:
            indices[value] = np.flatnonzero(interior.ravel() == value)
        return np.array(np.unravel_index(indices[value][rng.integers(len(indices[value]))], interior.shape))
