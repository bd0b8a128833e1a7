"""SegmentationModule: deep supervision, schedules, EMA, compile, channels-last, checkpoints, 3-class nesting."""

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from femurseg.models import SegmentationModule
from femurseg.models.ema import ema_decay_at, update_ema
from femurseg.models.schedules import lr_factor

TINY = {"channels": (4, 8), "strides": (2,)}


def _phantom(size=16, seed=0):
    """Image ``(1, S, S, S)`` and 0/1/2 label of a cube with a core."""
    generator = torch.Generator().manual_seed(seed)
    label = torch.zeros(1, size, size, size, dtype=torch.uint8)
    label[:, 3:13, 3:13, 3:13] = 1
    label[:, 6:10, 6:10, 6:10] = 2
    image = label.float() + 0.1 * torch.randn(label.shape, generator=generator)
    return image, label


def _loader(n=2, batch_size=2):
    items = []
    for i in range(n):
        image, label = _phantom(seed=i)
        items.append({"image": {"data": image}, "label": {"data": label}, "subject_id": f"s{i}"})
    return DataLoader(items, batch_size=batch_size)


def _trainer(tmp_path, **kwargs):
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    return pl.Trainer(**(defaults | kwargs))


def test_deep_supervision_weighting():
    module = SegmentationModule(net_kwargs=TINY, deep_supervision_decay=0.5)
    target = torch.zeros(1, 8, 8, 8, dtype=torch.long)
    target[:, 2:6, 2:6, 2:6] = 1
    outputs = [torch.randn(1, 2, 8, 8, 8), torch.randn(1, 2, 4, 4, 4), torch.randn(1, 2, 2, 2, 2)]
    small = [torch.nn.functional.interpolate(target[:, None].float(), size=s, mode="nearest")[:, 0].long()
             for s in (8, 4, 2)]
    expected = sum(w * module.loss_fn(o, t) for w, o, t in zip((4 / 7, 2 / 7, 1 / 7), outputs, small))
    torch.testing.assert_close(module.supervised_loss(outputs, target), expected)
    torch.testing.assert_close(module.supervised_loss(outputs[0], target), module.loss_fn(outputs[0], target))


def test_deep_supervision_averages_soft_targets_over_the_coarser_voxels():
    module = SegmentationModule(net_kwargs=TINY, deep_supervision_decay=0.5)
    soft = torch.rand(1, 2, 8, 8, 8)
    soft[:, 0] = 1 - soft[:, 1]
    outputs = [torch.randn(1, 2, 8, 8, 8), torch.randn(1, 2, 4, 4, 4)]
    coarse = soft.view(1, 2, 4, 2, 4, 2, 4, 2).mean(dim=(3, 5, 7))        # 2×2×2 block means
    expected = 2 / 3 * module.loss_fn(outputs[0], soft) + 1 / 3 * module.loss_fn(outputs[1], coarse)
    torch.testing.assert_close(module.supervised_loss(outputs, soft), expected)


def test_training_uses_the_fractions_when_the_batch_has_them(monkeypatch):
    module = SegmentationModule(net_kwargs=TINY)
    image, label = _phantom()
    fractions = torch.stack([(label[0] >= 1).float(), (label[0] == 2).float()])
    fractions[1, 5] = 0.5                               # a partial-volume slab the hard label cannot express
    seen = []
    monkeypatch.setattr(module, "supervised_loss", lambda outputs, target: seen.append(target) or outputs.sum())
    monkeypatch.setattr(module, "log", lambda *args, **kwargs: None)
    module.training_step({"image": {"data": image[None]}, "label": {"data": label[None]}}, 0)
    module.training_step({"image": {"data": image[None]}, "label": {"data": label[None]},
                          "fractions": {"data": fractions[None]}}, 0)
    assert seen[0].dtype == torch.long and seen[0].shape == (1, 16, 16, 16)
    assert seen[1].shape == (1, 2, 16, 16, 16) and torch.allclose(seen[1][:, 1], fractions[None, 0])


def test_schedules():
    assert [lr_factor(s, 10, schedule="poly") for s in (0, 10)] == [1.0, 0.0]
    assert lr_factor(5, 10, schedule="poly") == pytest.approx(0.5**0.9)
    assert lr_factor(0, 100, schedule="cosine", warmup_steps=4) == 0.25
    assert lr_factor(3, 100, schedule="cosine", warmup_steps=4) == 1.0
    assert lr_factor(52, 100, schedule="cosine", warmup_steps=4) == pytest.approx(0.5)
    assert lr_factor(99, 100, schedule="constant", warmup_steps=4) == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(0, 10, schedule="step")


def test_schedule_drives_the_optimizer(tmp_path, schedule="cosine"):
    module = SegmentationModule(net_kwargs=TINY, schedule=schedule, warmup_steps=2, patch_size=16)
    trainer = _trainer(tmp_path, max_steps=4, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=_loader(n=8, batch_size=2))
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(1e-3 * lr_factor(4, 4, schedule=schedule, warmup_steps=2), abs=1e-9)


def test_ema_is_validated_and_saved_as_inference_weights(tmp_path, monkeypatch):
    import femurseg.models.module as module_file

    decays = []

    def counting_update(ema, net, decay):
        decays.append(decay)
        update_ema(ema, net, decay)

    monkeypatch.setattr(module_file, "update_ema", counting_update)
    torch.manual_seed(0)
    module = SegmentationModule(net_kwargs=TINY, ema_decay=0.9, patch_size=16, val_batch_size=1)
    initial = [p.detach().clone() for p in module.net.parameters()]
    trainer = _trainer(tmp_path, max_steps=3, limit_val_batches=1, accumulate_grad_batches=2)
    trainer.fit(module, train_dataloaders=_loader(n=6, batch_size=1), val_dataloaders=_loader(n=1, batch_size=1))
    assert decays == pytest.approx([ema_decay_at(0.9, t) for t in range(3)])  # once per optimizer step
    assert module.ema_net is not None
    assert all(not p.requires_grad for p in module.ema_net.parameters())
    # one step per optimizer step, with the ramped decay
    for ema, net, start in zip(module.ema_net.parameters(), module.net.parameters(), initial):
        assert not torch.equal(ema, net) and not torch.equal(ema, start)
    assert module.inference_net is module.ema_net
    assert ema_decay_at(0.9, 0) == pytest.approx(0.1) and ema_decay_at(0.9, 10**6) == 0.9

    path = tmp_path / "ema.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    state = checkpoint["state_dict"]
    for key, value in module.ema_net.state_dict().items():
        torch.testing.assert_close(state[f"net.{key}"], value)  # inference reads net.* = EMA
    for key, value in module.net.state_dict().items():
        torch.testing.assert_close(state[f"train_net.{key}"], value)
    assert checkpoint["femurseg"]["ema_decay"] == 0.9
    # resuming restores both; a module without EMA loads the EMA weights as its net
    restored = SegmentationModule.load_from_checkpoint(path, weights_only=True)
    assert torch.equal(next(restored.net.parameters()), next(module.net.parameters()))
    assert torch.equal(next(restored.ema_net.parameters()), next(module.ema_net.parameters()))
    plain = SegmentationModule.load_from_checkpoint(path, weights_only=True, ema_decay=None)
    assert plain.ema_net is None
    assert torch.equal(next(plain.net.parameters()), next(module.ema_net.parameters()))


def test_checkpoint_metadata_rebuilds_the_net_weights_only(tmp_path):
    from femurseg.models import NETS

    module = SegmentationModule(net="dynunet3d", net_kwargs={"channels": (4, 8), "max_stages": 2},
                                target="compartments", patch_size=16)
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=_loader())
    path = tmp_path / "plain.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    meta = checkpoint["femurseg"]
    assert meta["classes"] == ["background", "cortical", "trabecular"] and meta["patch_size"] == [16, 16, 16]
    assert meta["ema_decay"] is None and not any(k.startswith("train_net.") for k in checkpoint["state_dict"])
    net = NETS.create(meta["net"], **meta["net_kwargs"])
    net.load_state_dict({k[4:]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")})
    x = torch.randn(1, 1, 16, 16, 16)
    torch.testing.assert_close(net.eval()(x), module.eval()(x))


def test_compartment_predictions_nest():
    """The 3-class argmax map obeys endosteal ⊂ periosteal by construction, and is scored that way."""
    torch.manual_seed(0)
    module = SegmentationModule(net_kwargs=TINY, target="compartments", patch_size=16).eval()
    image, label = _phantom(size=20)
    probabilities = module.predict_volume(image)
    assert probabilities.shape == (3, 20, 20, 20)
    prediction = probabilities.argmax(0)
    endosteal, periosteal = prediction == 2, prediction >= 1
    assert not (endosteal & ~periosteal).any()
    scores = module.score(label[0].long(), label[0])
    assert scores == {"dice": 1.0, "dice_periosteal": 1.0, "dice_endosteal": 1.0}


def test_compile_and_channels_last(tmp_path):
    module = SegmentationModule(net_kwargs=TINY, compile=True, compile_kwargs={"backend": "eager"},
                                channels_last=True, ema_decay=0.99, patch_size=16)
    weight = next(p for p in module.net.parameters() if p.ndim == 5)
    assert weight.is_contiguous(memory_format=torch.channels_last_3d)
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=_loader())
    assert module.net._compiled_call_impl is not None and module.ema_net._compiled_call_impl is not None
    assert all(not k.startswith("_orig_mod") for k in module.net.state_dict())
    assert torch.isfinite(module(torch.randn(1, 1, 16, 16, 16))).all()


def test_rejects_bad_ema_decay():
    with pytest.raises(ValueError, match="ema_decay"):
        SegmentationModule(net_kwargs=TINY, ema_decay=1.0)


def test_warns_about_bf16_on_cpu_without_native_support(tmp_path, monkeypatch):
    import femurseg.models.module as module_file

    monkeypatch.setattr(module_file, "cpu_has_fast_bf16", lambda: False)
    module = SegmentationModule(net_kwargs=TINY, patch_size=16)
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=0, precision="bf16-mixed")
    with pytest.warns(UserWarning, match="bf16 on this CPU"):
        trainer.fit(module, train_dataloaders=_loader(n=2, batch_size=1))
