import pytest
import torch
import torchio as tio

from femurseg.data.datamodule import FemurDataModule
from femurseg.data.synthetic import GENERATOR_VERSION


@pytest.fixture()
def datamodule(tiny_cohort, tmp_path):
    dm = FemurDataModule(
        manifest=str(tiny_cohort), experiment_dir=str(tmp_path / "exp"), fold=0, num_folds=3, test_fraction=0.15,
        spacing=(4.0, 4.0, 4.0), patch_size=16, batch_size=4, samples_per_volume=4, queue_length=16,
        augmentation="none", label_probabilities={0: 0.0, 1: 0.5, 2: 0.5}, cache_dir=str(tmp_path / "cache"),
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_setup_follows_split_and_preprocesses(datamodule):
    splits = datamodule.splits
    assert (datamodule.experiment_dir / "splits.json").exists()
    assert len(splits.test) == 1 and len(splits.folds) == 3
    train_ids = {s["subject_id"] for s in datamodule.train_subjects}
    val_ids = {s["subject_id"] for s in datamodule.val_subjects}
    assert train_ids == set(splits.folds[0].train) and val_ids == set(splits.folds[0].val)
    subject = datamodule.train_subjects[0]
    assert subject["image"].spacing == (4.0, 4.0, 4.0)
    assert subject["image"].data.dtype == torch.float32
    assert -1.0 <= subject["image"].data.min() and subject["image"].data.max() <= 1.0
    assert set(torch.unique(subject["label"].data).tolist()) == {0, 1, 2}
    assert subject["image"].shape == subject["label"].shape


def test_queue_yields_foreground_centred_patches(datamodule):
    loader = datamodule.train_dataloader()
    batches = list(loader)
    n_patches = sum(b["image"][tio.DATA].shape[0] for b in batches)
    assert n_patches == len(datamodule.train_subjects) * 4
    batch = batches[0]
    assert batch["image"][tio.DATA].shape == (4, 1, 16, 16, 16)
    centre = batch["label"][tio.DATA][:, 0, 8, 8, 8]
    assert (centre > 0).all()  # background probability 0: every patch centred on bone


def test_patches_are_shuffled_across_epochs(datamodule):
    loader = datamodule.train_dataloader()
    loader.sampler.set_epoch(0)
    first = [tuple(b["subject_id"]) for b in loader]
    loader.sampler.set_epoch(1)
    second = [tuple(b["subject_id"]) for b in loader]
    assert first != second


def test_train_loader_reads_the_queue_in_order_with_a_sampler_lightning_keeps(datamodule):
    from torch.utils.data import DistributedSampler

    loader = datamodule.train_dataloader()
    # a DistributedSampler already: Lightning never wraps it in a second one, whatever use_distributed_sampler says
    assert isinstance(loader.sampler, DistributedSampler)
    assert list(loader.sampler) == list(range(len(loader.dataset)))
    loader.sampler.set_epoch(3)
    assert loader.sampler.subject_sampler.epoch == 3  # forwarded to the queue's subject sampler


def test_ranks_get_disjoint_subjects(datamodule, monkeypatch):
    seen = []
    for rank in (0, 1):
        monkeypatch.setattr(datamodule, "_distributed", lambda rank=rank: (2, rank))
        seen.append({sid for b in datamodule.train_dataloader() for sid in b["subject_id"]})
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert seen[0] | seen[1] == {s["subject_id"] for s in datamodule.train_subjects}


def test_fold_all_trains_on_every_non_test_subject(tiny_cohort, tmp_path):
    dm = FemurDataModule(manifest=str(tiny_cohort), experiment_dir=str(tmp_path / "exp"), fold="all", num_folds=3,
                         spacing=(4.0, 4.0, 4.0), patch_size=16, cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_subjects) == 7 and dm.val_subjects == [] and dm.val_dataloader() == []


def test_synthetic_cohort_is_generated_once(tmp_path):
    dm = FemurDataModule(experiment_dir=str(tmp_path / "exp"), num_folds=2, synthetic_n=3, synthetic_preset="tiny",
                         synthetic_dir=str(tmp_path / "cache"), test_fraction=0.0, cache_dir=None)
    dm.prepare_data()
    manifest = dm.manifest_path
    assert manifest.exists() and manifest.parent.name == f"tiny_n3_seed0_v{GENERATOR_VERSION}"
    stamp = manifest.stat().st_mtime_ns
    dm.prepare_data()
    assert manifest.stat().st_mtime_ns == stamp


def test_cached_subjects_skip_the_content_pass(datamodule, tiny_cohort, tmp_path, monkeypatch):
    import femurseg.data.validate as validate

    checked = []
    real = validate._content_problems
    monkeypatch.setattr(validate, "_content_problems",
                        lambda record, settings: checked.append(record.subject_id) or real(record, settings))
    datamodule.prepare_data()
    assert checked == []  # validated and cached by the fixture's prepare_data, files unchanged
    fresh = FemurDataModule(manifest=str(tiny_cohort), experiment_dir=str(tmp_path / "exp"), num_folds=3,
                            spacing=(4.0, 4.0, 4.0), patch_size=16, cache_dir=str(tmp_path / "other_cache"))
    fresh.prepare_data()
    assert len(checked) == 8
