"""Voxel FE model: conforming, positively oriented elements in patient mm, regions apart, densities and materials."""

from __future__ import annotations

import base64
import csv
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np
import pytest
import SimpleITK as sitk

from femurseg.data.synthetic import generate_subject
from femurseg.export.fe import element_volumes, voxel_mesh
from femurseg.export.fefiles import FESettings, export_fe
from femurseg.export.materials import LAWS, bin_materials


@pytest.fixture(scope="module")
def phantom():
    return generate_subject(0, "tiny")


def _mirrored(image: sitk.Image) -> sitk.Image:
    out = sitk.Image(image)
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    out.SetDirection((c, -s, 0, s, c, 0, 0, 0, -1))  # rotation and a mirror: determinant -1
    return out


@pytest.mark.parametrize("element", ["tet", "hex"])
def test_voxel_mesh_fills_the_femur_with_positive_elements_and_regions_apart(phantom, element):
    label = _mirrored(phantom.label)
    labels = sitk.GetArrayFromImage(label)
    density = sitk.GetArrayFromImage(phantom.image).astype(float) * 0.8 - 2.0
    mesh = voxel_mesh(label, density, element=element)
    per_voxel = 6 if element == "tet" else 1
    volumes = element_volumes(mesh)
    assert volumes.min() > 0 and not mesh.quality()["inverted_any"]
    voxel = float(np.prod(label.GetSpacing()))
    assert volumes.sum() == pytest.approx((labels >= 1).sum() * voxel, rel=1e-9)
    assert (mesh.region == 1).sum() == per_voxel * (labels == 1).sum()
    assert (mesh.region == 2).sum() == per_voxel * (labels == 2).sum()
    mean = (mesh.density_mg_cm3 * volumes).sum() / volumes.sum()
    assert mean == pytest.approx(density[labels >= 1].mean(), rel=1e-9)
    # nodes are voxel corners in LPS mm: each lies half a voxel from voxel centres
    index = np.array([label.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in mesh.nodes[:50]])
    np.testing.assert_allclose(index - np.floor(index), 0.5, atol=1e-6)


def test_tetrahedra_are_conforming(phantom):
    mesh = voxel_mesh(phantom.label, element="tet")
    faces = Counter(tuple(sorted(f)) for tet in mesh.elements.tolist()
                    for f in ((tet[0], tet[1], tet[2]), (tet[0], tet[1], tet[3]), (tet[0], tet[2], tet[3]),
                              (tet[1], tet[2], tet[3])))
    assert max(faces.values()) == 2  # every face is shared by two tetrahedra or lies on the surface
    quality = mesh.quality()
    assert quality["min_dihedral_deg"] > 40 and quality["max_aspect_ratio"] < 3  # near-isotropic tiny voxels


def test_coarsening_keeps_volume_and_density_close(phantom):
    labels = sitk.GetArrayFromImage(phantom.label)
    density = sitk.GetArrayFromImage(phantom.image).astype(float)
    mesh = voxel_mesh(phantom.label, density, coarsen=2, element="hex")
    volumes = element_volumes(mesh)
    voxel = float(np.prod(phantom.label.GetSpacing()))
    assert volumes.sum() == pytest.approx((labels >= 1).sum() * voxel, rel=0.1)
    assert np.allclose(volumes, voxel * 8)


def test_laws_and_binned_materials():
    assert set(LAWS.names()) >= {"morgan2003_femoral_neck", "morgan2003_pooled", "keyak1994"}
    assert LAWS.get("morgan2003_femoral_neck")(np.array([1.0]))[0] == pytest.approx(6850.0)
    assert LAWS.get("keyak1994")(np.array([0.5]))[0] == pytest.approx(33900.0 * 0.5 ** 2.2)
    density = np.array([-50.0, -40.0, 500.0, 990.0, 1000.0])  # bins of 262.5 mg/cm³; the third is empty
    materials = bin_materials(density, LAWS.get("morgan2003_femoral_neck"), bins=4)
    assert materials.element_material.tolist() == [0, 0, 1, 2, 2] and materials.count.tolist() == [2, 1, 2]
    assert materials.modulus_mpa[0] == 1.0  # a negative mean density gets the floor
    assert materials.modulus_mpa[2] == pytest.approx(6850.0 * 0.995 ** 1.49)
    assert np.all(np.diff(materials.modulus_mpa) > 0)
    with pytest.raises(ValueError, match="unknown density-modulus law"):
        FESettings(law="nope")


def _vtu_arrays(path):
    arrays = {}
    for node in ET.parse(path).getroot().iter("DataArray"):
        raw = base64.b64decode(node.text)
        dtype = {"Float64": "<f8", "Float32": "<f4", "Int64": "<i8", "Int32": "<i4", "UInt8": "u1"}[node.get("type")]
        arrays[node.get("Name")] = np.frombuffer(raw[8:8 + int(np.frombuffer(raw[:8], "<u8")[0])], dtype)
    return arrays


def test_export_fe_writes_vtu_inp_and_materials(phantom, tmp_path):
    report = export_fe(phantom.label, tmp_path, ("vtu", "inp"), FESettings(bins=8), hu_to_density=(0.8, -2.0),
                       image=phantom.image, source="scan.nii.gz")
    assert report["files"] == ["femur.vtu", "femur.inp", "materials.csv"]
    assert report["density_check"]["within_2_percent"] and report["quality"]["inverted_any"] is False
    n_elements = report["quality"]["elements"]
    arrays = _vtu_arrays(tmp_path / "femur.vtu")
    assert len(arrays["connectivity"]) == 4 * n_elements and len(arrays["density_mg_cm3"]) == n_elements
    assert set(np.unique(arrays["region"])) == {1, 2}
    rows = list(csv.DictReader((tmp_path / "materials.csv").open()))
    assert sum(int(r["elements"]) for r in rows) == n_elements
    text = (tmp_path / "femur.inp").read_text()
    assert text.count("*Material, name=") == len(rows) and "*Element, type=C3D4" in text
    elsets = re.findall(r"\*Elset, elset=(MAT\d+)\n([^*]*)", text)
    members = [int(v) for _, body in elsets for v in body.replace("\n", ",").split(",") if v.strip()]
    assert sorted(members) == list(range(1, n_elements + 1))  # each element in exactly one material
    node_lines = text.split("*Node\n")[1].split("*Element")[0].strip().splitlines()
    assert len(node_lines) == report["quality"]["nodes"]


def test_export_fe_without_density_uses_placeholder_materials(phantom, tmp_path):
    report = export_fe(phantom.label, tmp_path, ("inp",), FESettings(element="hex"))
    assert report["materials"]["law"] is None and "density_check" not in report
    assert "*Element, type=C3D8" in (tmp_path / "femur.inp").read_text()
    assert (tmp_path / "materials.csv").read_text().splitlines()[1].startswith("MAT001,cortical,17000")


def test_vtu_opens_in_vtk_when_installed(phantom, tmp_path):
    vtk = pytest.importorskip("vtk")
    report = export_fe(phantom.label, tmp_path, ("vtu",), hu_to_density=(1.0, 0.0), image=phantom.image)
    reader = vtk.vtkXMLUnstructuredGridReader()
    reader.SetFileName(str(tmp_path / "femur.vtu"))
    reader.Update()
    assert reader.GetOutput().GetNumberOfCells() == report["quality"]["elements"]


def test_export_command_fe_with_a_density_image(phantom, tmp_path, capsys):
    from femurseg.commands.export import main

    sitk.WriteImage(phantom.image, str(tmp_path / "scan.nii.gz"))
    sitk.WriteImage(phantom.label, str(tmp_path / "label.nii.gz"))
    density = sitk.Cast(phantom.image, sitk.sitkFloat32) * 0.8 - 2.0
    sitk.WriteImage(density, str(tmp_path / "density.nii.gz"))
    code = main(["--image", str(tmp_path / "scan.nii.gz"), "--label", str(tmp_path / "label.nii.gz"),
                 "--output", str(tmp_path / "out"), "--fe", "vtu,inp", "--density", str(tmp_path / "density.nii.gz"),
                 "--law", "keyak1994", "--fe-coarsen", "2", "--fe-element", "hex"])
    assert code == 0, capsys.readouterr().err
    fe = json.loads((tmp_path / "out" / "export.json").read_text())["fe"]
    assert fe["materials"]["law"] == "keyak1994" and fe["mesh"]["coarsen"] == 2
    assert "fe: " in capsys.readouterr().out
