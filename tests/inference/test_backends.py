"""Inference backends: same probabilities as PyTorch, export cache reused and invalidated, clear errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from femurseg.data.preprocess import Preprocessing
from femurseg.errors import BackendError
from femurseg.inference import backends
from femurseg.inference.backends import export_key, resolve_backend
from femurseg.inference.predictor import InferenceSettings, Predictor
from femurseg.models import NETS
from femurseg.models.checkpoints import load_checkpoints, read_checkpoint

PATCH = (16, 16, 16)
NET_KWARGS = {"in_channels": 1, "out_channels": 3, "channels": [4, 8], "strides": [2]}


def _exporter_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def _needs(runtime: str) -> pytest.MarkDecorator:
    missing = not _exporter_installed() or importlib.util.find_spec(runtime) is None
    return pytest.mark.skipif(missing, reason=f"{runtime} and the ONNX exporter (onnx, onnxscript) not installed")


def save_checkpoint(path, seed=0):
    """A 3-class unet3d checkpoint laid out as SegmentationModule writes it."""
    torch.manual_seed(seed)
    net = NETS.create("unet3d", **NET_KWARGS)
    with torch.no_grad():  # instance-norm affine weights away from 1/0, so every layer matters
        for name, parameter in net.named_parameters():
            if "norm" in name or name.endswith(".1.weight") or name.endswith(".1.bias"):
                parameter.add_(0.3 * torch.randn_like(parameter))
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "femurseg": {"format_version": 1, "target": "compartments", "net": "unet3d", "net_kwargs": NET_KWARGS,
                             "preprocessing": Preprocessing(spacing=(1.5, 1.5, 1.5)).to_dict(),
                             "patch_size": list(PATCH), "classes": [], "mirror_axes": "x"}}, path)
    return path


def preprocessed_volume(size=(37, 29, 23)) -> sitk.Image:
    """A smooth scaled-intensity volume (a bright ball in soft tissue, noise) as the sliding window sees it."""
    rng = np.random.default_rng(0)
    z, y, x = np.indices(size[::-1], dtype=np.float32)
    ball = np.sqrt((x - 20) ** 2 + (y - 14) ** 2 + (z - 11) ** 2)
    array = np.where(ball < 8, 0.6, -0.3) + 0.05 * rng.standard_normal(size[::-1])
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((1.5, 1.5, 1.5))
    return image


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "c.ckpt")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def reference(checkpoint):
    """PyTorch's probabilities, sparse windows and mirror flips as by default."""
    predictor = Predictor(load_checkpoints([checkpoint]), InferenceSettings(precision="fp32", batch_size=3))
    return predictor.probabilities(preprocessed_volume())


@pytest.mark.parametrize("backend", [pytest.param("onnxruntime", marks=_needs("onnxruntime")),
                                     pytest.param("openvino", marks=_needs("openvino"))])
@pytest.mark.parametrize("windows", ["sparse", "all"])
def test_backend_gives_torch_probabilities(backend, windows, checkpoint, export_dir, reference):
    settings = InferenceSettings(precision="fp32", batch_size=3, backend=backend, windows=windows)
    predictor = Predictor(load_checkpoints([checkpoint]), settings, export_dir=export_dir)
    assert predictor.settings.backend == backend and predictor.device == torch.device("cpu")
    assert predictor.network.size == 2  # one member, two mirror flips
    result = predictor.probabilities(preprocessed_volume())
    expected = reference if windows == "sparse" else Predictor(
        load_checkpoints([checkpoint]), InferenceSettings(precision="fp32", batch_size=3, windows="all"),
    ).probabilities(preprocessed_volume())
    assert result.shape == expected.shape == (2, 37, 29, 23)
    assert float((result - expected).abs().max()) < 1e-4
    # the 0/1/2 decision per voxel: periosteal > 0.5, endosteal > 0.5
    labels = [(p[0] > 0.5).int() + (p[1] > 0.5).int() for p in (result, expected)]
    assert float((labels[0] == labels[1]).float().mean()) >= 0.995
    assert float(expected[0].std()) > 0.01  # the network is not constant: the comparison means something


@pytest.mark.skipif(not _exporter_installed() or importlib.util.find_spec("onnxruntime") is None,
                    reason="onnxruntime and the ONNX exporter not installed")
def test_export_cache_reused_and_invalidated(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "model.ckpt", seed=1)
    cache = tmp_path / "cache"
    settings = InferenceSettings(backend="onnxruntime", tta="none")
    Predictor(load_checkpoints([path]), settings, export_dir=cache)
    first = sorted(cache.glob("*.onnx"))
    assert [p.name for p in first] == [export_key(read_checkpoint(path), PATCH)]
    assert first[0].name.startswith(read_checkpoint(path).sha256)
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporaries left

    calls = []
    real_export = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: calls.append(1) or real_export(*a, **k))
    stamp = first[0].stat().st_mtime_ns
    Predictor(load_checkpoints([path]), settings, export_dir=cache)
    assert calls == [] and first[0].stat().st_mtime_ns == stamp  # loaded, not exported again

    save_checkpoint(path, seed=2)  # the checkpoint changes in place: new weights, same file name
    predictor = Predictor(load_checkpoints([path]), settings, export_dir=cache)
    assert calls == [1] and len(list(cache.glob("*.onnx"))) == 2
    window = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 1, *PATCH), dtype=np.float32))
    member = predictor.network.compartments[0]
    from femurseg.models.checkpoints import build_net

    with torch.no_grad():
        expected = build_net(read_checkpoint(path))(window)
    assert float((member(window) - expected).abs().max()) < 1e-4  # the new weights, not the cached old ones

    Predictor(load_checkpoints([path]), InferenceSettings(backend="onnxruntime", tta="none", patch_size=(16, 16, 24)),
              export_dir=cache)
    assert len(list(cache.glob("*.onnx"))) == 3  # another window size is another graph


def test_export_key_of_weights_without_a_file(checkpoint):
    info = read_checkpoint(checkpoint)
    from dataclasses import replace

    unnamed = replace(info, sha256="")
    changed = replace(unnamed, state_dict={k: v + 1 if k.endswith("head.weight") else v
                                           for k, v in info.state_dict.items()})
    assert export_key(info, PATCH).startswith(info.sha256) and export_key(info, PATCH).endswith("-16x16x16-v1.onnx")
    assert export_key(unnamed, PATCH) == export_key(replace(unnamed), PATCH) != export_key(changed, PATCH)


def test_missing_runtime_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("openvino", "onnxruntime") else real(name, *a))
    with pytest.raises(BackendError, match=r"femurseg\[openvino\]"):
        resolve_backend("openvino")
    with pytest.raises(BackendError, match=r"femurseg\[onnx\]"):
        resolve_backend("onnxruntime")
    assert resolve_backend("auto") == "torch"  # nothing else installed
    assert backends.available_backends() == ["torch"]
    with pytest.raises(ValueError, match="valid: auto, torch, onnxruntime, openvino"):
        resolve_backend("tensorrt")


def test_auto_is_recorded_resolved(checkpoint, export_dir):
    predictor = Predictor(load_checkpoints([checkpoint]), InferenceSettings(backend="auto", tta="none"),
                          export_dir=export_dir)
    assert predictor.settings.backend in backends.available_backends()
    assert predictor.settings.to_dict()["backend"] == predictor.settings.backend
