"""Checkpoint sets, ensembling, TTA, geometry of the output, the ``segment`` API."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from femurseg.data.preprocess import Preprocessing, preprocess_image
from femurseg.errors import CheckpointError
from femurseg.models.checkpoints import average_weights, load_checkpoints, read_checkpoint
from femurseg.inference.ensemble import EnsembleNetwork, mirror_flips
from femurseg.inference.predictor import InferenceSettings, Predictor, segment
from femurseg.models import NETS


class BandNet(nn.Module):
    """Foreground logit ``scale * min(x - low, high - x)``: a known, intensity-band 'segmenter'."""

    def __init__(self, *, in_channels: int, out_channels: int, low: float = -0.5, high: float = 9.0) -> None:
        super().__init__()
        self.low, self.high = low, high
        self.scale = nn.Parameter(torch.tensor(20.0))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = self.scale * torch.minimum(x - self.low, self.high - x)
        return torch.cat([torch.zeros_like(x), logit], dim=1)


@pytest.fixture(autouse=True)
def _register_bandnet(monkeypatch):
    """Register the test net for this module's tests only (the registry stays clean for others)."""
    monkeypatch.setitem(NETS._items, "test_band_net", BandNet)

SETTINGS = Preprocessing(spacing=(1.5, 1.5, 1.5))


def save_checkpoint(path, target="periosteal", net="unet3d", net_kwargs=None, seed=0, preprocessing=SETTINGS,
                    patch=(16, 16, 16), mirror_axes="x", datamodule=None):
    """A checkpoint laid out as SegmentationModule writes it (``mirror_axes=None``: an older one without the key)."""
    out = 3 if target == "compartments" else 2
    kwargs = {"in_channels": 1, "out_channels": out, **(net_kwargs or {"channels": [4, 8], "strides": [2]})}
    torch.manual_seed(seed)
    model = NETS.create(net, **kwargs)
    torch.save({
        "state_dict": {f"net.{k}": v for k, v in model.state_dict().items()},
        "femurseg": {"format_version": 1, "target": target, "net": net, "net_kwargs": kwargs,
                     "preprocessing": preprocessing.to_dict(), "patch_size": list(patch), "classes": [],
                     **({} if mirror_axes is None else {"mirror_axes": mirror_axes})},
        "epoch": 3,
        **({} if datamodule is None else {"datamodule_hyper_parameters": datamodule}),
    }, path)
    return path


def band_checkpoints(tmp_path):
    """Periosteal: anything denser than -250 HU; endosteal: -250..950 HU (trabecular in the phantom)."""
    p = save_checkpoint(tmp_path / "p.ckpt", "periosteal", "test_band_net", {"low": -0.5, "high": 9.0})
    e = save_checkpoint(tmp_path / "e.ckpt", "endosteal", "test_band_net", {"low": -0.5, "high": 0.3})
    return p, e


def phantom(direction=None, spacing=(0.8, 1.1, 2.0), size=(40, 36, 20)) -> tuple[sitk.Image, np.ndarray]:
    """A cortical shell (1500 HU) around trabecular bone (300 HU), off-centre, on any grid."""
    image = sitk.Image(size, sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin((-12.0, 5.0, 100.0))
    if direction is not None:
        image.SetDirection(direction)
    z, y, x = np.indices(size[::-1])
    points = np.stack([x, y, z], -1).reshape(-1, 3).astype(float)
    matrix = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(spacing)
    physical = points @ matrix.T + np.asarray(image.GetOrigin())
    centre = physical.mean(0) + np.array([3.0, -2.0, 0.0])
    radius = np.linalg.norm((physical - centre) / np.array([1.0, 1.0, 1.6]), axis=1).reshape(size[::-1])
    hu = np.where(radius < 7, 300, np.where(radius < 11, 1500, -1000)).astype(np.int16)
    array_image = sitk.GetImageFromArray(hu)
    array_image.CopyInformation(image)
    return array_image, hu


def test_ensembling_equals_the_mean_of_single_model_probabilities(tmp_path):
    paths = [save_checkpoint(tmp_path / f"{t}{i}.ckpt", t, seed=10 * i + j)
             for j, t in enumerate(("periosteal", "endosteal")) for i in range(2)]
    image, _ = phantom(size=(24, 20, 12))
    pre = preprocess_image(image, SETTINGS)
    settings = InferenceSettings(tta="none", precision="fp32", windows="all")
    together = Predictor(load_checkpoints(paths), settings).probabilities(pre)
    singles = [Predictor(load_checkpoints(periosteal=[paths[i]], endosteal=[paths[2 + i]]), settings).probabilities(pre)
               for i in range(2)]
    assert together.shape == (2, *sitk.GetArrayViewFromImage(pre).shape[::-1])
    assert torch.allclose(together, (singles[0] + singles[1]) / 2, atol=1e-5)
    assert not torch.allclose(singles[0], singles[1], atol=1e-3)   # the members really differ


def test_tta_flips_are_undone_on_an_asymmetric_volume():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 8, 10, 12)
    x[..., :3, :, :] += 3.0                                    # asymmetric along every axis
    x[..., :4, :] -= 2.0
    x[..., :5] += 1.0
    pointwise = nn.Conv3d(1, 2, 1)                             # flip-equivariant: TTA must change nothing
    plain = EnsembleNetwork([pointwise], [pointwise], flips=mirror_flips("none"))(x)
    flipped = EnsembleNetwork([pointwise], [pointwise], flips=mirror_flips("xyz"))(x)
    assert torch.allclose(plain, flipped, atol=1e-6)
    conv = nn.Conv3d(1, 2, 3, padding=1)                       # not equivariant: compare with the definition
    ensemble = EnsembleNetwork([conv], [conv], flips=mirror_flips("xz"))(x)
    expected = torch.zeros_like(ensemble[:, 0])
    for dims in ([], [2], [4], [2, 4]):
        p = torch.softmax(conv(x.flip(dims) if dims else x), 1)
        expected += (p.flip(dims) if dims else p)[:, 1] / 4
    assert torch.allclose(ensemble[:, 0], expected, atol=1e-6)
    assert mirror_flips("xyz")[0] == () and len(mirror_flips("xyz")) == 8
    with pytest.raises(ValueError, match="tta"):
        mirror_flips("xw")


def test_tta_auto_flips_only_along_the_training_mirror_axes(tmp_path):
    """A femur flipped head-to-foot is not anatomy: ``auto`` uses the axes every member was trained to mirror."""
    p, e = band_checkpoints(tmp_path)  # both record mirror_axes "x"
    predictor = Predictor(load_checkpoints([], [p], [e]))
    assert predictor.settings.tta == "x" and predictor.network.size == 2  # identity + left/right mirror
    image, _ = phantom()
    assert predictor.predict(image).report["settings"]["tta"] == "x"  # the resolved axes are reported
    # older checkpoints: the data module's augmentation preset says it; silence means no flips
    old = save_checkpoint(tmp_path / "old.ckpt", "endosteal", mirror_axes=None, datamodule={"augmentation": "default"})
    unflipped = save_checkpoint(tmp_path / "none.ckpt", "endosteal", mirror_axes=None, datamodule={"augmentation": "none"})
    silent = save_checkpoint(tmp_path / "silent.ckpt", "endosteal", mirror_axes=None)
    assert [read_checkpoint(c).mirror_axes for c in (old, unflipped, silent)] == ["x", "none", None]
    assert Predictor(load_checkpoints([], [p], [old])).settings.tta == "x"
    assert Predictor(load_checkpoints([], [p], [old, unflipped])).settings.tta == "none"  # common axes only
    assert Predictor(load_checkpoints([], [p], [silent])).settings.tta == "none"
    xyz = save_checkpoint(tmp_path / "xyz.ckpt", "endosteal", mirror_axes="xyz")
    assert Predictor(load_checkpoints([], [p], [xyz])).settings.tta == "x"
    assert Predictor(load_checkpoints([], [p], [xyz]), InferenceSettings(tta="xyz")).network.size == 8  # explicit wins
    folds = [save_checkpoint(tmp_path / f"f{i}.ckpt", seed=i, mirror_axes=m) for i, m in enumerate(("xyz", "xz"))]
    assert average_weights([read_checkpoint(f) for f in folds]).mirror_axes == "xz"


def test_compartment_members_give_periosteal_and_endosteal_probabilities():
    torch.manual_seed(1)
    net = nn.Conv3d(1, 3, 1)
    x = torch.randn(2, 1, 4, 4, 4)
    out = EnsembleNetwork(compartments=[net], moments=True)(x)
    p = torch.softmax(net(x), 1)
    assert torch.allclose(out[:, 0], p[:, 1] + p[:, 2], atol=1e-6) and torch.allclose(out[:, 1], p[:, 2], atol=1e-6)
    assert torch.allclose(out[:, 2], out[:, 0] ** 2, atol=1e-6)   # one member: no spread


@pytest.mark.parametrize("oblique", [False, True])
def test_segmentation_has_the_inputs_exact_grid_and_lands_on_the_bone(tmp_path, oblique):
    direction = sitk.VersorTransform((0.3, 0.2, -0.4), 0.5).GetMatrix() if oblique else (-1, 0, 0, 0, 1, 0, 0, 0, -1)
    image, hu = phantom(direction=direction)
    p, e = band_checkpoints(tmp_path)
    result = segment(image, periosteal=[p], endosteal=[e], tta="xy", precision="fp32", uncertainty=True,
                     keep_probabilities=True)
    for output in (result.label, result.probabilities, result.uncertainty):
        assert output.GetSize() == image.GetSize()
        assert output.GetSpacing() == image.GetSpacing() and output.GetOrigin() == image.GetOrigin()
        assert output.GetDirection() == image.GetDirection()
    label = sitk.GetArrayFromImage(result.label)
    bone, trabecular = hu > 0, hu == 300
    dice = 2 * ((label > 0) & bone).sum() / ((label > 0).sum() + bone.sum())
    dice_inner = 2 * ((label == 2) & trabecular).sum() / ((label == 2).sum() + trabecular.sum())
    assert dice > 0.9 and dice_inner > 0.75
    assert result.report["volume_cm3"]["periosteal"] == pytest.approx(bone.sum() * np.prod(image.GetSpacing()) / 1000,
                                                                      rel=0.1)
    assert result.report["mean_hu"]["cortical"] > result.report["mean_hu"]["trabecular"]
    assert result.probabilities.GetNumberOfComponentsPerPixel() == 2
    assert result.report["ensemble"]["predictions_per_contour"] == 4
    assert result.report["qc_flag"] in (True, False)


def test_checkpoint_errors(tmp_path):
    p = save_checkpoint(tmp_path / "p.ckpt", "periosteal")
    e = save_checkpoint(tmp_path / "e.ckpt", "endosteal")
    other = save_checkpoint(tmp_path / "e2.ckpt", "endosteal", preprocessing=Preprocessing(spacing=(2.0, 2.0, 2.0)))
    c = save_checkpoint(tmp_path / "c.ckpt", "compartments")
    with pytest.raises(CheckpointError, match="different preprocessing.*spacing"):
        load_checkpoints([p, e, other])
    with pytest.raises(CheckpointError, match="cannot mix"):
        load_checkpoints([p, e, c])
    with pytest.raises(CheckpointError, match="given as endosteal but trained for target 'periosteal'"):
        load_checkpoints(periosteal=[p], endosteal=[p])
    with pytest.raises(CheckpointError, match="need endosteal"):
        load_checkpoints([p])
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoints([tmp_path / "missing.ckpt"])
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"femurseg": {}, "payload": BandNet(in_channels=1, out_channels=2)}, unsafe)
    with pytest.raises(CheckpointError, match="weights_only"):
        read_checkpoint(unsafe)
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(CheckpointError, match="no 'femurseg' metadata"):
        read_checkpoint(plain)
    assert load_checkpoints([c]).kind == "compartments"


def test_weight_averaging_of_fold_checkpoints(tmp_path):
    folds = [read_checkpoint(save_checkpoint(tmp_path / f"p{i}.ckpt", seed=i)) for i in range(3)]
    mean = average_weights(folds)
    key = next(k for k, v in mean.state_dict.items() if v.is_floating_point())
    assert torch.allclose(mean.state_dict[key], sum(f.state_dict[key] for f in folds) / 3, atol=1e-7)
    e = save_checkpoint(tmp_path / "e.ckpt", "endosteal")
    loaded = load_checkpoints([f.path for f in folds] + [e], average=True)
    assert len(loaded.periosteal) == 1 and len(loaded.endosteal) == 1
    wide = read_checkpoint(save_checkpoint(tmp_path / "w.ckpt", net_kwargs={"channels": [8, 16], "strides": [2]}))
    with pytest.raises(CheckpointError, match="cannot average"):
        average_weights([folds[0], wide])


def test_windows_without_bone_are_skipped_as_background(tmp_path):
    image, _ = phantom(size=(60, 40, 16))                     # bone on one side, air elsewhere
    p, e = band_checkpoints(tmp_path)
    loaded = load_checkpoints(periosteal=[p], endosteal=[e])
    pre = preprocess_image(image, SETTINGS)
    # the band nets call anything above -250 HU bone, so windows below -300 HU are background to them
    skipping = Predictor(loaded, InferenceSettings(tta="none", patch_size=(8, 8, 8), skip_below_hu=-300.0,
                                                          windows="all"))
    calls = []
    skipping.network.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    fast = skipping.probabilities(pre)
    every = Predictor(loaded, InferenceSettings(tta="none", patch_size=(8, 8, 8), windows="all"))
    every.network.register_forward_hook(lambda module, inputs, output: calls.append(-len(inputs[0])))
    slow = every.probabilities(pre)
    evaluated, total = sum(c for c in calls if c > 0), -sum(c for c in calls if c < 0)
    assert 0 < evaluated < total
    assert torch.allclose(fast, slow, atol=1e-3)


def test_sparse_windows_default_matches_every_window_with_fewer_network_calls(tmp_path):
    image, _ = phantom(size=(60, 40, 16))                     # bone on one side, air elsewhere
    p, e = band_checkpoints(tmp_path)
    loaded = load_checkpoints(periosteal=[p], endosteal=[e])
    pre = preprocess_image(image, SETTINGS)
    calls: dict[str, list[int]] = {"sparse": [], "all": []}
    maps = {}
    for windows in calls:
        predictor = Predictor(loaded, InferenceSettings(tta="none", patch_size=(8, 8, 8), windows=windows))
        assert predictor.settings.windows == windows and InferenceSettings().windows == "sparse"
        predictor.network.register_forward_hook(lambda m, i, o, name=windows: calls[name].append(len(i[0])))
        maps[windows] = predictor.probabilities(pre)
    assert 0 < sum(calls["sparse"]) < 0.75 * sum(calls["all"])       # 174 of 245 windows
    assert torch.equal(maps["sparse"] > 0.5, maps["all"] > 0.5)
    bone = maps["all"][0] > 0.05
    assert torch.allclose(maps["sparse"][:, bone], maps["all"][:, bone], atol=1e-6)
    with pytest.raises(ValueError, match="windows"):
        Predictor(loaded, InferenceSettings(windows="some")).probabilities(pre)  # type: ignore[arg-type]


def test_refinement_is_on_by_default_recorded_and_can_be_switched_off(tmp_path):
    image, hu = phantom()
    p, e = band_checkpoints(tmp_path)
    refined = segment(image, periosteal=[p], endosteal=[e], tta="none", precision="fp32")
    plain = segment(image, periosteal=[p], endosteal=[e], tta="none", precision="fp32", refinement=None)
    assert refined.report["settings"]["refinement"]["min_peak"] == 0.5
    assert plain.report["settings"]["refinement"] is None
    bone = hu > 0
    errors = [int(((sitk.GetArrayFromImage(r.label) >= 1) != bone).sum()) for r in (refined, plain)]
    assert errors[0] <= errors[1]   # on a sharp edge, half maximum is the bone's own boundary

    from femurseg.commands.segment import main
    sitk.WriteImage(image, str(tmp_path / "scan.nii.gz"))
    assert main(["--periosteal", str(p), "--endosteal", str(e), "--input", str(tmp_path / "scan.nii.gz"),
                 "--output", str(tmp_path / "out"), "--tta", "none", "--no-qc", "--refine", "none"]) == 0
    report = json.loads((tmp_path / "out" / "scan" / "report.json").read_text())
    assert report["settings"]["refinement"] is None


@pytest.mark.parametrize("net", ["os.system", "subprocess.run", "builtins.eval", "femurseg.models.nets.unet3d.UNet3d"])
def test_a_checkpoint_naming_a_dotted_path_is_refused_without_running_it(tmp_path, net):
    """Checkpoints are data: a dotted ``net`` (``os.system`` + ``command``) must never be imported or called."""
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.ckpt"
    good = save_checkpoint(tmp_path / "good.ckpt", "periosteal")
    payload = torch.load(good, weights_only=True)
    payload["femurseg"]["net"] = net
    payload["femurseg"]["net_kwargs"] = {"command": f"touch {marker}"}
    torch.save(payload, crafted)
    with pytest.raises(CheckpointError, match="not a registered network"):
        read_checkpoint(crafted)
    with pytest.raises(CheckpointError, match="not a registered network"):
        segment(phantom()[0], checkpoints=[crafted, crafted])
    assert not marker.exists()


def test_registry_lookup_for_file_names_never_imports():
    with pytest.raises(KeyError, match="unknown net"):
        NETS.get_registered("os.system")
    with pytest.raises(KeyError):
        NETS.create_registered("os.system", command="true")
    assert NETS.get_registered("unet3d") is NETS.get("unet3d")


def test_validation_and_segment_give_the_same_probabilities(tmp_path):
    """The module validates with the inferer `segment` uses: same window, blending and padding."""
    from femurseg.models import SegmentationModule

    torch.manual_seed(0)
    module = SegmentationModule(net="unet3d", net_kwargs={"channels": [4, 8], "strides": [2]}, target="compartments",
                                patch_size=16, val_overlap=0.5, val_batch_size=3).eval()
    volume = torch.rand(1, 30, 22, 12) * 2 - 1  # (1, X, Y, Z), one axis shorter than the window
    with torch.no_grad():
        validation = module.predict_volume(volume)
    path = tmp_path / "c.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in module.net.state_dict().items()},
                "femurseg": {"format_version": 1, "target": "compartments", "net": "unet3d",
                             "net_kwargs": module.net_kwargs, "preprocessing": SETTINGS.to_dict(),
                             "patch_size": [16, 16, 16], "classes": module.classes}}, path)
    predictor = Predictor(load_checkpoints([path]), InferenceSettings(tta="none", windows="all", overlap=0.5,
                                                                      blend="gaussian", precision="fp32"))
    image = sitk.GetImageFromArray(volume[0].permute(2, 1, 0).numpy())
    maps = predictor.probabilities(image)  # P(periosteal), P(endosteal)
    assert torch.allclose(maps[0], 1 - validation[0], atol=1e-5)
    assert torch.allclose(maps[1], validation[2], atol=1e-5)
