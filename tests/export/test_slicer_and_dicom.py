"""``segmentation.seg.nrrd`` (read back with slicerio) and ``seg.dcm`` (highdicom, pydicom, dciodvfy)."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk

from femurseg.data.synthetic import generate_subject
from femurseg.export.outputs import ExportRequest, export_outputs


@pytest.fixture(scope="module")
def phantom():
    case = generate_subject(1, "tiny")
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    for image in (case.image, case.label):  # an oblique grid: geometry must survive both formats
        image.SetDirection((c, -s, 0, s, c, 0, 0, 0, 1))
    return case


def test_seg_nrrd_reads_back_in_slicerio_with_names_colours_and_voxels(phantom, tmp_path):
    slicerio = pytest.importorskip("slicerio")
    pytest.importorskip("nrrd")
    report = export_outputs(phantom.label, tmp_path, ExportRequest(seg_nrrd=True), image=phantom.image)
    assert report["seg_nrrd"]["file"] == "segmentation.seg.nrrd"
    seg = slicerio.read_segmentation(str(tmp_path / "segmentation.seg.nrrd"))
    names = {s["name"]: s for s in seg["segments"]}
    assert set(names) == {"femur cortical bone", "femur trabecular bone"}
    assert names["femur cortical bone"]["labelValue"] == 1 and names["femur trabecular bone"]["labelValue"] == 2
    assert names["femur cortical bone"]["terminology"]["anatomicRegion"] == ["SCT", "71341001", "Femur"]
    assert names["femur trabecular bone"]["color"] == [0.0, 0.78, 1.0]
    label = sitk.GetArrayFromImage(phantom.label)
    np.testing.assert_array_equal(seg["voxels"], label.transpose(2, 1, 0))
    ijk_to_lps = seg["ijkToLPS"]
    for index in [(0, 0, 0), (5, 7, 3)]:
        np.testing.assert_allclose(ijk_to_lps @ (*index, 1), (*phantom.label.TransformIndexToPhysicalPoint(index), 1))


def _seg_pixels(seg_path, series_folder):
    import highdicom as hd
    import pydicom

    seg = hd.seg.segread(seg_path)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(series_folder))
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    return seg, seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True, relabel=False)


def _dciodvfy_errors(path):
    if shutil.which("dciodvfy") is None:
        return None
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


def test_dicom_seg_of_a_dicom_series_references_it_and_has_the_label_voxels(phantom, tmp_path):
    pytest.importorskip("highdicom")
    from femurseg.commands.export import main
    from femurseg.data.io import read_image
    from femurseg.export.dicomseg import write_ct_series

    series = tmp_path / "series"
    written = write_ct_series(phantom.image, series, description="test series")
    scan = read_image(series)  # as femurseg reads any DICOM folder
    label = sitk.Cast(phantom.label, sitk.sitkUInt8)
    label.CopyInformation(scan)
    sitk.WriteImage(label, str(tmp_path / "label.nii.gz"))
    code = main(["--image", str(series), "--label", str(tmp_path / "label.nii.gz"), "--output", str(tmp_path / "out"),
                 "--dicom-seg", "--seg-nrrd"])
    assert code == 0
    report = json.loads((tmp_path / "out" / "export.json").read_text())["dicom_seg"]
    assert report["references"] == "source series" and not (tmp_path / "out" / "ct").exists()
    seg, pixels = _seg_pixels(tmp_path / "out" / "seg.dcm", series)
    np.testing.assert_array_equal(pixels, sitk.GetArrayFromImage(phantom.label))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == written[0].SeriesInstanceUID
    assert seg.StudyInstanceUID == written[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == written[0].FrameOfReferenceUID
    coded = {d.SegmentLabel: (d.SegmentedPropertyCategoryCodeSequence[0].CodeValue,
                              d.SegmentedPropertyTypeCodeSequence[0].CodeValue,
                              d.AnatomicRegionSequence[0].CodeValue) for d in seg.SegmentSequence}
    assert coded == {"femur cortical bone": ("85756007", "3138006", "71341001"),
                     "femur trabecular bone": ("85756007", "3138006", "71341001")}
    errors = _dciodvfy_errors(tmp_path / "out" / "seg.dcm")
    assert not errors, errors


def test_dicom_seg_of_a_nifti_scan_references_a_derived_series(phantom, tmp_path):
    pytest.importorskip("highdicom")
    report = export_outputs(phantom.label, tmp_path, ExportRequest(dicom_seg=True), image=phantom.image,
                            source="scan.nii.gz")
    assert report["dicom_seg"]["references"] == "derived series ct/"
    derived = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "ct")))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(derived), sitk.GetArrayFromImage(phantom.image))
    np.testing.assert_allclose(derived.GetDirection(), phantom.image.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(derived.GetOrigin(), phantom.image.GetOrigin(), atol=1e-4)
    _, pixels = _seg_pixels(tmp_path / "seg.dcm", tmp_path / "ct")
    np.testing.assert_array_equal(pixels, sitk.GetArrayFromImage(phantom.label))
    for path in (tmp_path / "seg.dcm", tmp_path / "ct" / "00001.dcm"):
        errors = _dciodvfy_errors(path)
        assert not errors, errors
