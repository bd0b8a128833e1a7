"""``qc.json``: the numbers and flags of :mod:`femurseg.inference.qc` on phantoms and broken labels."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from femurseg.data.synthetic import generate_subject
from femurseg.inference.qc import QCSettings, decoded_numbers, ensemble_agreement, label_numbers, quality_report
from femurseg.labels import endosteal_mask, periosteal_mask


@pytest.fixture(scope="module")
def phantom():
    case = generate_subject(0, "quick")
    return sitk.GetArrayFromImage(case.label), case.label.GetSpacing()


def test_a_phantom_reference_passes_with_plausible_numbers(phantom):
    label, spacing = phantom
    report = quality_report(label, spacing)
    assert report["pass"] and report["flags"] == []
    numbers = report["label"]
    assert numbers["edge_area_mm2"] == 0 and numbers["cut_at_first_slice"]  # the shaft leaves at the bottom: no flag
    assert 1.0 < numbers["cortical_thickness_mm"] < 4.0
    assert len(numbers["femurs"]) == 1 and 300 < numbers["femurs"][0]["cross_section_mm2"] < 3000


def test_a_femur_cut_by_the_in_plane_field_of_view_is_flagged(phantom):
    label, spacing = phantom
    columns = np.nonzero(periosteal_mask(label).any(axis=(0, 1)))[0]
    cut = label[:, :, : (columns.min() + columns.max()) // 2]  # the field of view ends mid-femur
    report = quality_report(cut, spacing)
    assert "field_of_view_edge" in report["flags"] and report["label"]["edge_area_mm2"] > 100


def test_implausible_labels_are_flagged(phantom):
    label, spacing = phantom
    no_trabecular = np.where(endosteal_mask(label), 1, label).astype(np.uint8)
    assert quality_report(no_trabecular, spacing)["flags"] == ["implausible_cortical_thickness"]
    blob = np.zeros_like(label)
    blob[10:14, 40:44, 40:44] = 1  # 0.5 cm³ sliver: neither a femur's volume nor cortex around marrow
    assert quality_report(blob, spacing)["flags"] == ["implausible_cortical_thickness", "implausible_volume"]
    thick = np.zeros_like(label)
    thick[:, 20:100, 20:80] = 1  # a 120 x 160 mm slab called femur: cross-section far too large
    assert "implausible_volume" in quality_report(thick, spacing)["flags"]
    assert quality_report(np.zeros_like(label), spacing)["flags"] == ["empty"]


def test_decoded_masks_and_extra_pieces(phantom):
    label, spacing = phantom
    outer, inner = periosteal_mask(label), endosteal_mask(label)
    clean = decoded_numbers(outer, inner)
    assert clean["endosteal_outside_fraction"] == 0 and len(clean["component_voxels"]) == 1
    assert quality_report(label, spacing, decoded=clean)["pass"]
    noisy = outer.copy()
    noisy[-12:, :20, :20] = True  # a pelvis-sized piece far from the femur
    inner_out = inner.copy()
    inner_out[-12:, :20, :20] = True
    report = quality_report(label, spacing, decoded=decoded_numbers(outer, inner_out))
    assert "endosteal_outside_periosteal" in report["flags"]
    report = quality_report(label, spacing, decoded=decoded_numbers(noisy, inner), femurs=1)
    assert report["pass"] and report["decoded"]["extra_component_fraction"] > 0.05  # removed: reported only
    two = label.copy()
    two[-12:, 2:20, 2:20] = 1  # a piece left in the label map (off the edge): two pieces for one femur
    assert quality_report(two, spacing, femurs=1)["flags"] == ["extra_components"]


def test_ensemble_agreement_from_member_maps_and_moments():
    shape = (20, 20, 20)
    a = torch.zeros(shape)
    a[5:15, 5:15, 5:15] = 1
    b = torch.zeros(shape)
    b[5:15, 5:15, 5:10] = 1  # half of a
    e1, e2 = a * 0.9, b * 0.9
    maps = torch.stack([(a + b) / 2, (e1 + e2) / 2, (a * a + b * b) / 2, (e1 * e1 + e2 * e2) / 2, a, b])
    numbers = ensemble_agreement(maps, (1.0, 1.0, 2.0), size=2)
    assert numbers["members"] == 2
    assert numbers["member_dice_min"] == pytest.approx(2 * 500 / 1500, abs=1e-4)
    assert numbers["member_volumes_cm3"] == [2.0, 1.0]
    assert numbers["volume_cv"] == pytest.approx(0.5 / 1.5, abs=1e-4)
    soft = float(2 * (e1 * e2).sum() / (e1.sum() + e2.sum()))  # the soft Dice of the two endosteal maps
    assert numbers["endosteal_soft_dice"] == pytest.approx(soft, abs=1e-4)
    flags = quality_report(np.zeros((4, 4, 4), np.uint8), (1, 1, 1), ensemble=numbers)["flags"]
    assert {"ensemble_disagreement", "volume_variation"} <= set(flags)


def test_uncertainty_in_the_cortical_shell(phantom):
    label, spacing = phantom
    spread = np.where(label == 1, 0.3, 0.0).astype(np.float32)
    report = quality_report(label, spacing, uncertainty=spread)
    assert report["ensemble"]["shell_uncertainty"] == pytest.approx(0.3) and "uncertain_cortex" in report["flags"]
    assert quality_report(label, spacing, QCSettings(max_shell_uncertainty=0.5), uncertainty=spread)["pass"]


def test_label_numbers_of_an_empty_map():
    numbers = label_numbers(np.zeros((3, 4, 5), np.uint8), (1.0, 1.0, 1.0))
    assert numbers["femurs"] == [] and numbers["cortical_thickness_mm"] is None


def test_summary_lists_the_flagged_scans_first(tmp_path):
    import csv

    from femurseg.inference.cohort import write_cohort_tables

    rows = [{"subject_id": "a", "qc_pass": True}, {"subject_id": "b", "qc_pass": False, "qc_flags": "extra_components"},
            {"subject_id": "c"}, {"subject_id": "d", "qc_pass": False, "qc_flags": "empty"}]
    write_cohort_tables(tmp_path, rows, [])
    summary = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [r["subject_id"] for r in summary] == ["b", "d", "a", "c"]
    assert [r["qc_pass"] for r in summary] == ["False", "False", "True", ""]


def test_femur_box_maps_the_final_femur_onto_the_network_grid():
    from femurseg.inference.qc import femur_box

    label = np.zeros((10, 20, 30), np.uint8)
    label[2:5, 4:8, 10:20] = 1
    image = sitk.GetImageFromArray(label)
    image.SetSpacing((1.0, 1.0, 2.0))
    image.SetOrigin((5.0, 0.0, 0.0))
    grid = ((5.0, 0.0, 0.0), (2.0, 2.0, 2.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))  # the network's 2 mm grid
    box = femur_box(label, image, grid, margin_mm=0.0)
    assert box == (slice(5, 11), slice(2, 5), slice(2, 5))  # x 15-24 mm, y 4-7 mm, z 4-8 mm at 2 mm
    assert femur_box(np.zeros_like(label), image, grid) is None
