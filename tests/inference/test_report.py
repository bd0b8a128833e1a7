"""Per-femur reports: the side comes from the patient coordinates, not the array order."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from femurseg.inference.report import side_reports


def _scan(direction_x: float) -> tuple[sitk.Image, sitk.Image]:
    label = np.zeros((10, 10, 40), np.uint8)
    label[2:8, 2:8, 2:8] = 2      # array-left femur: 216 voxels
    label[2:8, 2:8, 30:34] = 1    # array-right femur: 144 voxels
    image = sitk.GetImageFromArray(np.full(label.shape, 300, np.int16))
    image.SetSpacing((5.0, 1.0, 1.0))
    image.SetOrigin((-100.0, 0.0, 0.0))
    image.SetDirection((direction_x, 0, 0, 0, 1, 0, 0, 0, 1))
    mask = sitk.GetImageFromArray(label)
    mask.CopyInformation(image)
    return image, mask


def test_two_femurs_get_their_sides_and_volumes_from_patient_coordinates():
    image, label = _scan(1.0)
    right, left = side_reports(image, label)
    # x grows to the patient's left (LPS): array column 30 is further left than column 2
    assert (right["side"], left["side"]) == ("right", "left")
    assert right["volume_cm3"]["trabecular"] == 216 * 5 / 1000 and left["volume_cm3"]["cortical"] == 144 * 5 / 1000
    flipped_right, flipped_left = side_reports(*_scan(-1.0))  # same arrays, x axis pointing the other way
    assert flipped_left["volume_cm3"]["trabecular"] == 216 * 5 / 1000
    assert flipped_right["volume_cm3"]["cortical"] == 144 * 5 / 1000


def test_no_femur_gives_no_side():
    image, label = _scan(1.0)
    empty = sitk.GetImageFromArray(np.zeros(sitk.GetArrayViewFromImage(label).shape, np.uint8))
    empty.CopyInformation(image)
    assert side_reports(image, empty) == []
