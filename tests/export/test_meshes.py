"""Surface meshes: closed, in patient millimetres (LPS/RAS), volume beside the voxel volume, files that read back."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import SimpleITK as sitk

trimesh = pytest.importorskip("trimesh")
pytest.importorskip("fast_simplification")

from femurseg.data.synthetic import generate_subject  # noqa: E402
from femurseg.export.frames import index_to_patient  # noqa: E402
from femurseg.export.meshes import MeshSettings, export_meshes, surface_mesh, write_surface  # noqa: E402


@pytest.fixture(scope="module")
def phantom():
    return generate_subject(0, "quick")


def _ball_label(direction=None, spacing=(0.8, 0.9, 1.5)) -> sitk.Image:
    z, y, x = np.indices((30, 40, 40))
    r = np.sqrt(((x - 20) * spacing[0]) ** 2 + ((y - 19) * spacing[1]) ** 2 + ((z - 14) * spacing[2]) ** 2)
    array = np.where(r < 9, 2, np.where(r < 13, 1, 0)).astype(np.uint8)
    label = sitk.GetImageFromArray(array)
    label.SetSpacing(spacing)
    label.SetOrigin((-30.0, 12.5, 400.0))
    if direction is not None:
        label.SetDirection(direction)
    return label


def _rotation_with_mirror() -> tuple[float, ...]:
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([1, 1, -1])  # determinant -1
    return tuple(rotation.ravel())


@pytest.mark.parametrize("surface", ["periosteal", "endosteal"])
def test_phantom_surfaces_are_closed_and_keep_the_voxel_volume_within_1_percent(phantom, surface):
    mesh = surface_mesh(phantom.label, surface)
    report = mesh.report
    assert report["watertight"] and report["winding_consistent"]
    assert report["bodies"] == 1
    assert abs(report["volume_difference"]) < 0.01
    assert report["volume_mm3"] > 0  # normals point outwards


def test_decimation_reaches_the_target_and_stays_closed(phantom):
    mesh = surface_mesh(phantom.label, "periosteal", MeshSettings(max_faces=3000))
    assert mesh.report["faces"] <= 3000 and mesh.report["decimation"].startswith("to ")
    assert mesh.report["watertight"] and abs(mesh.report["volume_difference"]) < 0.01


def test_smoothing_removes_the_staircase_without_shrinking(phantom):
    raw = surface_mesh(phantom.label, "periosteal", MeshSettings(smoothing_iterations=0, max_faces=None))
    smooth = surface_mesh(phantom.label, "periosteal", MeshSettings(max_faces=None))
    area = lambda m: trimesh.Trimesh(m.vertices, m.faces).area  # noqa: E731
    assert area(smooth) < 0.97 * area(raw)  # the terraces are gone
    assert abs(smooth.report["volume_mm3"] / raw.report["volume_mm3"] - 1) < 0.005


@pytest.mark.parametrize("frame", ["LPS", "RAS"])
def test_vertices_lie_on_the_mask_boundary_in_patient_mm_for_any_direction(frame):
    label = _ball_label(_rotation_with_mirror())
    mesh = surface_mesh(label, "periosteal", MeshSettings(frame=frame, smoothing_iterations=0, max_faces=None))
    lps = mesh.vertices * (np.array([-1, -1, 1]) if frame == "RAS" else 1)
    index = np.array([label.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in lps])
    array = sitk.GetArrayViewFromImage(label)
    inside = np.argwhere(array >= 1)[:, ::-1]
    assert np.all(index >= inside.min(axis=0) - 0.5 - 1e-6) and np.all(index <= inside.max(axis=0) + 0.5 + 1e-6)
    assert mesh.report["volume_mm3"] > 0  # a mirroring direction matrix does not turn the surface inside out
    ball = 4 / 3 * np.pi * 13 ** 3
    assert abs(mesh.report["volume_mm3"] / ball - 1) < 0.03


def test_ras_is_lps_with_x_and_y_negated():
    label = _ball_label()
    lps = surface_mesh(label, "endosteal", MeshSettings(frame="LPS"))
    ras = surface_mesh(label, "endosteal", MeshSettings(frame="RAS"))
    np.testing.assert_allclose(ras.vertices, lps.vertices * [-1, -1, 1], atol=1e-9)
    np.testing.assert_allclose(index_to_patient(label, "RAS")[:2], -index_to_patient(label, "LPS")[:2])


def test_a_femur_cut_by_the_field_of_view_still_closes():
    array = np.zeros((10, 12, 12), np.uint8)
    array[:, 3:9, 3:9] = 1  # touches the first and last slice
    array[:, 5:7, 5:7] = 2
    mesh = surface_mesh(sitk.GetImageFromArray(array), "periosteal", MeshSettings(smoothing_iterations=0))
    assert mesh.report["watertight"]


def test_empty_mask_is_reported_not_written(tmp_path):
    array = np.zeros((8, 8, 8), np.uint8)
    array[2:6, 2:6, 2:6] = 1
    reports = export_meshes(sitk.GetImageFromArray(array), tmp_path, ["stl"])
    assert "empty" in reports["endosteal"]["error"]
    assert (tmp_path / "periosteal.stl").is_file() and not (tmp_path / "endosteal.stl").exists()
    with pytest.raises(ValueError, match="unknown mesh format"):
        export_meshes(sitk.GetImageFromArray(array), tmp_path, ["obj"])


def _read_vtp(path):
    root = ET.parse(path).getroot()
    arrays = {}
    for node in root.iter("DataArray"):
        raw = base64.b64decode(node.text)
        n = int(np.frombuffer(raw[:8], "<u8")[0])
        dtype = {"Float64": "<f8", "Int64": "<i8"}[node.get("type")]
        arrays[node.get("Name")] = np.frombuffer(raw[8:8 + n], dtype)
    strings = {node.get("Name"): base64.b64decode(node.text)[8:].rstrip(b"\0").decode()
               for node in root.iter("Array")}
    return arrays, strings


def test_files_read_back_closed_with_the_frame_written_in_them(phantom, tmp_path):
    mesh = surface_mesh(phantom.label, "endosteal", MeshSettings(max_faces=5000))
    for kind in ("stl", "ply"):
        loaded = trimesh.load(write_surface(mesh, tmp_path / f"endosteal.{kind}", source="scan.nii.gz"))
        assert loaded.is_watertight and loaded.is_winding_consistent
        assert abs(loaded.volume / mesh.report["volume_mm3"] - 1) < 1e-4
    assert b"LPS mm" in (tmp_path / "endosteal.stl").read_bytes()[:80]
    assert b"comment frame: LPS" in (tmp_path / "endosteal.ply").read_bytes()[:1000]
    arrays, strings = _read_vtp(write_surface(mesh, tmp_path / "endosteal.vtp", source="scan.nii.gz"))
    np.testing.assert_allclose(arrays["Points"].reshape(-1, 3), mesh.vertices)
    np.testing.assert_array_equal(arrays["connectivity"].reshape(-1, 3), mesh.faces)
    assert strings["frame"] == "LPS" and strings["units"] == "mm" and strings["source"] == "scan.nii.gz"
    with pytest.raises(ValueError, match="unknown mesh format"):
        write_surface(mesh, tmp_path / "endosteal.obj")


def test_vtp_opens_in_vtk_when_installed(phantom, tmp_path):
    vtk = pytest.importorskip("vtk")
    mesh = surface_mesh(phantom.label, "periosteal", MeshSettings(max_faces=5000))
    reader = vtk.vtkXMLPolyDataReader()
    reader.SetFileName(str(write_surface(mesh, tmp_path / "p.vtp")))
    reader.Update()
    assert reader.GetOutput().GetNumberOfCells() == len(mesh.faces)
    assert reader.GetOutput().GetFieldData().GetAbstractArray("frame").GetValue(0) == "LPS"
