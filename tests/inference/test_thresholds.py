"""Volume-calibrated thresholds: the bisection, decoding, the file, the two commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from femurseg.models.checkpoints import load_checkpoints
from femurseg.inference.postprocess import Postprocessing, decode_probabilities
from femurseg.inference.predictor import InferenceSettings, Predictor
from femurseg.commands.thresholds import main
from femurseg.inference.thresholds import (
    Thresholds, ThresholdsError, fit_thresholds, read_thresholds, volume_threshold,
)
from femurseg.data.manifest import read_manifest

from .test_predictor import BandNet, phantom, save_checkpoint  # noqa: F401  (BandNet registered by the fixture)
from .test_predictor import _register_bandnet  # noqa: F401


def test_volume_threshold_zeroes_the_mean_relative_error():
    rng = np.random.default_rng(0)
    values = [rng.uniform(0, 1, 10_000), rng.uniform(0, 1, 5_000)]
    # truths: 30 % and 30 % of the voxels → t = 0.7 on both (uniform values)
    t = volume_threshold(values, truths=[3000.0, 1500.0], voxel_volumes=[1.0, 1.0])
    assert abs(t - 0.7) < 0.01
    counts = [(v > t).sum() for v in values]
    assert abs(np.mean([counts[0] / 3000, counts[1] / 1500]) - 1) < 0.01
    # voxel volumes count: the same values with voxels of 2 units need half the voxels
    assert abs(volume_threshold(values, [6000.0, 3000.0], [2.0, 2.0]) - 0.7) < 0.01
    # unreachable volumes are clamped to the search range
    assert volume_threshold(values, [1e9, 1e9], [1.0, 1.0]) == 0.05
    assert volume_threshold(values, [1e-3, 1e-3], [1.0, 1.0]) == 0.95
    with pytest.raises(ValueError, match="one entry per subject"):
        volume_threshold(values, [1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        volume_threshold(values, [1.0, 0.0], [1.0, 1.0])


def test_decoding_uses_the_thresholds_and_rejects_them_for_argmax():
    p = np.array([0.3, 0.45, 0.6]); e = np.array([0.1, 0.35, 0.5])
    outer, inner = decode_probabilities(p, e, "threshold", (0.4, 0.3))
    assert outer.tolist() == [False, True, True] and inner.tolist() == [False, True, True]
    assert decode_probabilities(p, e)[0].tolist() == [False, False, True]
    with pytest.raises(ValueError, match="argmax"):
        decode_probabilities(p, e, "argmax", (0.4, 0.3))
    assert Postprocessing(thresholds=[0.4, 0.3]).thresholds == (0.4, 0.3)
    for bad in [(0.0, 0.5), (0.5, 1.0), (0.5,)]:
        with pytest.raises(ValueError, match="thresholds"):
            Postprocessing(thresholds=bad)


def _soft_band_checkpoints(tmp_path, scale=4.0):
    """Band nets with soft edges that cut too high: at 0.5 both masks are too small."""
    paths = []
    for target, (low, high) in {"periosteal": (0.2, 9.0), "endosteal": (-0.5, 0.0)}.items():
        path = save_checkpoint(tmp_path / f"{target}.ckpt", target, "test_band_net", {"low": low, "high": high})
        checkpoint = torch.load(path, weights_only=True)
        checkpoint["state_dict"]["net.scale"] = torch.tensor(scale)
        torch.save(checkpoint, path)
        paths.append(path)
    return paths


def _labelled_manifest(tmp_path, n=2):
    rows = ["subject_id,image,label"]
    for i in range(n):
        image, hu = phantom(spacing=(0.8 + 0.1 * i, 1.1, 2.0))
        label = sitk.GetImageFromArray(np.where(hu == 300, 2, np.where(hu == 1500, 1, 0)).astype(np.uint8))
        label.CopyInformation(image)
        sitk.WriteImage(image, str(tmp_path / f"s{i}.nii.gz"))
        sitk.WriteImage(label, str(tmp_path / f"s{i}_label.nii.gz"))
        rows.append(f"s{i},s{i}.nii.gz,s{i}_label.nii.gz")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "manifest.csv"


def test_fit_removes_the_volume_bias(tmp_path):
    periosteal, endosteal = _soft_band_checkpoints(tmp_path)
    manifest = _labelled_manifest(tmp_path)
    predictor = Predictor(load_checkpoints([], [periosteal], [endosteal]), InferenceSettings(tta="none"))
    fitted = fit_thresholds(predictor, read_manifest(manifest))
    assert fitted.periosteal < 0.5 and fitted.endosteal < 0.5          # both nets cut too high
    for name in ("periosteal", "trabecular"):
        # too small at 0.5; after the fit the error is the step of the tiny phantom's few distinct values
        assert fitted.error_at_default[name]["mean"] < -20
        assert abs(fitted.error_fitted[name]["mean"]) < 7
    assert fitted.subjects == ["s0", "s1"] and len(fitted.checkpoints["periosteal"][0]) == 64
    assert fitted.settings["tta"] == "none"


def test_commands_fit_write_and_apply_thresholds(tmp_path, capsys):
    periosteal, endosteal = _soft_band_checkpoints(tmp_path)
    manifest = _labelled_manifest(tmp_path, n=3)
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"test": ["s2"], "folds": []}))
    out = tmp_path / "thresholds.json"
    code = main(["--periosteal", str(periosteal), "--endosteal", str(endosteal), "--input", str(manifest),
                 "--splits", str(splits), "--output", str(out), "--tta", "none"])
    assert code == 0 and "2 subjects (1 test subjects left out)" in capsys.readouterr().out
    fitted = read_thresholds(out)
    assert fitted.subjects == ["s0", "s1"]

    from femurseg.commands.segment import main as segment_main

    def volumes(folder, *extra):
        assert segment_main(["--periosteal", str(periosteal), "--endosteal", str(endosteal), "--input",
                             str(tmp_path / "s2.nii.gz"), "--output", str(folder), "--tta", "none", "--no-qc",
                             "--refine", "none", *extra]) == 0   # thresholds act on the networks' contours
        report = json.loads((folder / "s2" / "report.json").read_text())
        return report["volume_cm3"], report["settings"]["postprocessing"]["thresholds"]

    label = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "s2_label.nii.gz")))
    voxel = np.prod(sitk.ReadImage(str(tmp_path / "s2.nii.gz")).GetSpacing()) / 1000
    truth = (label >= 1).sum() * voxel
    default, used_default = volumes(tmp_path / "seg_default")
    calibrated, used = volumes(tmp_path / "seg_fitted", "--thresholds", str(out))
    assert list(used_default) == [0.5, 0.5] and list(used) == [fitted.periosteal, fitted.endosteal]
    assert abs(calibrated["periosteal"] - truth) < abs(default["periosteal"] - truth)   # the held-out scan too

    # a file fitted for other checkpoints is refused, naming the file
    other = save_checkpoint(tmp_path / "other.ckpt", "periosteal", "test_band_net", {"low": -0.5, "high": 9.0})
    code = segment_main(["--periosteal", str(other), "--endosteal", str(endosteal), "--input",
                         str(tmp_path / "s2.nii.gz"), "--output", str(tmp_path / "seg_other"), "--thresholds", str(out)])
    assert code == 2 and "other checkpoints" in capsys.readouterr().err and not (tmp_path / "seg_other").exists()


def test_thresholds_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ThresholdsError, match="bad.json"):
        read_thresholds(bad)
    out = Thresholds(periosteal=1.5, endosteal=0.4).write(tmp_path / "range.json")
    with pytest.raises(ThresholdsError, match="periosteal threshold must be in"):
        read_thresholds(out)
