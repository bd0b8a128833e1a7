"""Reading and preprocessing one subject: the step the cache and the data module share.

:func:`load_preprocessed` reads a manifest record's image and reference, resamples
and normalises them (:mod:`femurseg.data.preprocess`), derives the two-channel
partial-volume fractions and optionally crops all of them to the femur's bounding box.
The data module wraps the result in a ``tio.Subject`` in memory; the cache writes it
to disk. Errors name the subject and the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import SimpleITK as sitk

from femurseg.data.io import read_image, read_label
from femurseg.data.manifest import ManifestRecord
from femurseg.data.preprocess import (
    Preprocessing,
    crop_to_label,
    label_fractions,
    preprocess_image,
    preprocess_label,
)
from femurseg.errors import DataError

__all__ = ["PreprocessedSubject", "load_preprocessed"]


@dataclass
class PreprocessedSubject:
    """One subject on the network's grid.

    Attributes
    ----------
    image
        Preprocessed image.
    label
        Reference label map on the image's grid (``None`` without a reference).
    fractions
        Two-channel periosteal/endosteal fractions (``None`` when not asked for or without a reference).
    box
        Crop box ``(x0, y0, z0, x1, y1, z1)`` in voxels of the uncropped grid, or ``None``.
    """

    image: sitk.Image
    label: sitk.Image | None
    fractions: sitk.Image | None
    box: tuple[int, ...] | None


def load_preprocessed(
    record: ManifestRecord,
    settings: Preprocessing,
    crop: bool = False,
    fractions: bool = False,
    require_label: bool = True,
) -> PreprocessedSubject:
    """Read and preprocess one subject.

    Parameters
    ----------
    record
        The manifest row.
    settings
        Preprocessing settings (spacing, HU window, crop margin).
    crop
        Crop to the femur's bounding box plus ``settings.crop_margin_mm`` (when set and
        there is a reference).
    fractions
        Also compute the partial-volume fractions (:func:`~femurseg.data.preprocess.label_fractions`).
    require_label
        Read the reference even if the record names none (so that its absence is an error);
        ``False`` returns ``label=None`` for records without one.

    Raises
    ------
    DataError
        Naming the subject and file when reading fails.
    """
    try:
        image = preprocess_image(read_image(record.image), settings)
        source = read_label(record) if require_label or record.has_reference else None
    except DataError as error:
        raise DataError(f"subject {record.subject_id!r}: {error}") from error
    label = preprocess_label(source, image) if source is not None else None
    parts = label_fractions(source, image) if fractions and source is not None else None
    box = None
    if crop and label is not None and settings.crop_margin_mm is not None:
        image, label, box = crop_to_label(image, label, settings.crop_margin_mm)
        if parts is not None:
            parts = parts[box[0]:box[3], box[1]:box[4], box[2]:box[5]]
    return PreprocessedSubject(image, label, parts, box)
