"""``FemurDataModule``: manifest → preprocessed TorchIO subjects → patch queue.

Training patches come from a ``tio.Queue`` fed by a :class:`ClassBalancedSampler`
(foreground weighted, ``label_probabilities`` per class); validation sees whole preprocessed volumes, one subject per batch,
evaluated by the module with a sliding window. Under DDP each rank's queue reads a
disjoint share of the training subjects (a ``DistributedSampler`` given to the
queue as ``subject_sampler``), reshuffled every epoch; the loader's own sampler is a
one-replica ``DistributedSampler`` over that queue, which Lightning never wraps in a
second one.

Before anything is written (``splits.json``, cache entries) the cohort is
validated (:mod:`femurseg.data.validate`): every problem is reported at once.
Subjects are preprocessed once into the cache (:mod:`femurseg.data.cache`) by
``prepare_data`` (rank 0) and loaded lazily, memory-mapped, by every rank; with
``cache_dir=None`` they are preprocessed in memory at ``setup``.

Without a manifest, the built-in synthetic QCT cohort is generated once into a
cache folder and used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import torch
import torchio as tio
from torch.utils.data import DistributedSampler

from femurseg.data.augment import Preset, make_augmentation, mirror_axes
from femurseg.data.cache import CacheDtype, SubjectCache
from femurseg.data.folds import Splits, load_or_create_splits
from femurseg.data.loading import load_preprocessed
from femurseg.data.manifest import ManifestRecord, parse_manifest, read_manifest
from femurseg.data.preprocess import Preprocessing
from femurseg.data.sampling import ClassBalancedSampler
from femurseg.data.validate import DEFAULT_MAX_VOXELS, ValidationSettings, validate_manifest
from femurseg.errors import DataError
from femurseg.voxels import as_triple

__all__ = ["FemurDataModule", "load_subject"]

log = logging.getLogger(__name__)


def load_subject(
    record: ManifestRecord, settings: Preprocessing, crop: bool = False, fractions: bool = False
) -> tio.Subject:
    """Read and preprocess one subject into a ``tio.Subject`` with ``image`` and ``label``.

    With ``crop`` and ``settings.crop_margin_mm`` set, both are cropped to the
    femur's bounding box plus the margin (as the cache does for training subjects).
    With ``fractions``, the subject also holds the two-channel ``fractions`` image
    (:func:`~femurseg.data.preprocess.label_fractions`), cropped alike.

    Raises
    ------
    DataError
        Naming the subject and file when reading fails.
    """
    loaded = load_preprocessed(record, settings, crop=crop, fractions=fractions)
    image, label, parts = loaded.image, loaded.label, loaded.fractions
    assert label is not None  # require_label: read_label raised otherwise
    image_data, affine = tio.io.sitk_to_nib(image)
    label_data, _ = tio.io.sitk_to_nib(label)
    images: dict[str, tio.Image] = {
        "image": tio.ScalarImage(tensor=torch.as_tensor(image_data, dtype=torch.float32), affine=affine),
        "label": tio.LabelMap(tensor=torch.as_tensor(label_data, dtype=torch.uint8), affine=affine),
    }
    if parts is not None:
        images["fractions"] = tio.ScalarImage(tensor=torch.as_tensor(tio.io.sitk_to_nib(parts)[0]).float(),
                                              affine=affine)
    return tio.Subject(**images, subject_id=record.subject_id)


class _RankQueueSampler(DistributedSampler):
    """The train loader's sampler: this rank's patch queue in order, reshuffled by ``set_epoch``.

    The queue already holds only this rank's subjects (its ``subject_sampler`` splits
    them across ranks), so the loader reads it sequentially: one replica, no shuffle,
    no padding. Because it is a ``DistributedSampler``, Lightning leaves it in place
    instead of wrapping the loader in a second one, whatever
    ``Trainer(use_distributed_sampler=...)`` says (Lightning 2.x: "If ``True`` and a
    distributed sampler was already added, Lightning will not replace the existing
    one"). Lightning calls ``set_epoch`` on it every epoch; the queue never calls it
    on its ``subject_sampler``, so it is forwarded from here.
    """

    def __init__(self, queue: tio.Queue, subject_sampler: DistributedSampler) -> None:
        super().__init__(queue, num_replicas=1, rank=0, shuffle=False)
        self.subject_sampler = subject_sampler

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.subject_sampler.set_epoch(epoch)


class FemurDataModule(pl.LightningDataModule):
    """Cohort data for training, validation and testing.

    Parameters
    ----------
    manifest
        Cohort CSV (DESIGN.md §4). ``None`` uses the synthetic cohort.
    experiment_dir
        Folder of the experiment; its ``splits.json`` is made once and reused.
    fold
        Cross-validation fold to train, or ``"all"`` to train on every non-test subject.
    num_folds, test_fraction, split_seed
        How ``splits.json`` is made the first time.
    spacing, hu_window
        Preprocessing: target spacing in mm (x, y, z) and HU window.
    patch_size
        Training patch size in voxels (an int or three ints).
    batch_size, samples_per_volume, queue_length, num_workers
        Queue settings: patches per batch, patches drawn per subject load, patches
        held, and worker processes that load subjects.
    augmentation
        Augmentation preset.
    label_probabilities
        ``LabelSampler`` probability of centring a patch on each label value
        (0 background, 1 cortical, 2 trabecular).
    centre_jitter
        How far (fraction of the half patch) a sampled centre moves, so the
        structure is seen anywhere in the patch, not only mid-patch (see
        :class:`~femurseg.data.sampling.ClassBalancedSampler`).
    synthetic_n, synthetic_seed, synthetic_preset, synthetic_dir
        The synthetic cohort used without a manifest, and where it is generated once.
    validate
        Validate the manifest and every file before anything is written or trained.
    max_voxels
        Validation refuses images whose header declares more voxels.
    cache_dir
        Preprocessing cache folder (``None``: preprocess in memory at every setup).
    cache_dtype
        Stored image dtype in the cache.
    crop_margin_mm
        If set, training subjects are cropped to the femur's bounding box plus this
        margin (validation and test subjects are never cropped).
    partial_volume
        Give training subjects the periosteal and endosteal partial-volume
        fractions (``fractions``), which :class:`~femurseg.models.SegmentationModule`
        then uses as soft targets; ``False`` trains on the nearest-neighbour labels.
        Soft targets remove most of the volume bias that a coarse training grid
        puts on the thin cortex (docs/data.md).
    """

    def __init__(
        self,
        manifest: str | None = None,
        experiment_dir: str = "runs/femurseg",
        fold: int | Literal["all"] = 0,
        num_folds: int = 10,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
        hu_window: tuple[float, float] = (-1000.0, 2000.0),
        patch_size: int | tuple[int, int, int] = 96,
        batch_size: int = 2,
        samples_per_volume: int = 8,
        queue_length: int = 64,
        num_workers: int = 0,
        augmentation: Preset = "default",
        label_probabilities: dict[int, float] | None = None,
        centre_jitter: float = 0.0,
        synthetic_n: int = 40,
        synthetic_seed: int = 0,
        synthetic_preset: str = "quick",
        synthetic_dir: str = "~/.cache/femurseg/synthetic",
        validate: bool = True,
        max_voxels: int = DEFAULT_MAX_VOXELS,
        cache_dir: str | None = "~/.cache/femurseg/preprocessed",
        cache_dtype: CacheDtype = "float32",
        crop_margin_mm: float | None = None,
        partial_volume: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.manifest = manifest
        self.experiment_dir = Path(experiment_dir)
        self.fold = fold
        self.preprocessing = Preprocessing(
            spacing=tuple(spacing), hu_window=tuple(hu_window), crop_margin_mm=crop_margin_mm
        )
        self.cache = (
            SubjectCache(cache_dir, self.preprocessing, cache_dtype, validated=validate) if cache_dir is not None else None
        )
        self._validated = False
        self.patch_size = as_triple(patch_size, "patch_size")
        self.label_probabilities = label_probabilities or {0: 0.2, 1: 0.4, 2: 0.4}
        self.splits: Splits | None = None
        self.train_subjects: list[tio.Subject] = []
        self.val_subjects: list[tio.Subject] = []
        self.test_subjects: list[tio.Subject] = []

    # where the data comes from ---------------------------------------------
    @property
    def manifest_path(self) -> Path:
        """The manifest in use: the configured one, or the synthetic cohort's."""
        if self.manifest is not None:
            return Path(self.manifest).expanduser()
        from femurseg.data.synthetic import GENERATOR_VERSION

        h = self.hparams
        name = f"{h.synthetic_preset}_n{h.synthetic_n}_seed{h.synthetic_seed}_v{GENERATOR_VERSION}"
        return Path(h.synthetic_dir).expanduser() / name / "manifest.csv"

    @property
    def mirror_axes(self) -> str:
        """Axes the training augmentation mirrors (``"x"`` or ``"none"``), recorded in checkpoints for TTA."""
        return mirror_axes(self.hparams.augmentation)

    @property
    def splits_path(self) -> Path:
        return self.experiment_dir / "splits.json"

    def prepare_data(self) -> None:
        """Generate the synthetic cohort if needed, validate, make ``splits.json``, fill the cache.

        Runs on rank 0 only. Nothing is written before validation has passed.
        """
        path = self.manifest_path
        if self.manifest is None and not path.exists():
            from femurseg.data.synthetic import write_cohort

            h = self.hparams
            log.info("generating the synthetic cohort (%d subjects) in %s", h.synthetic_n, path.parent)
            write_cohort(path.parent, n=h.synthetic_n, seed=h.synthetic_seed, preset=h.synthetic_preset)
        records = self._records(validate=self.hparams.validate)
        splits = self._splits(records)
        if self.cache is not None:
            train, val = splits.select(self.fold)
            for subject in sorted(set(train) | set(val) | set(splits.test)):
                self.cache.get(records[subject], crop=subject in train)

    def setup(self, stage: str | None = None) -> None:
        """Read the split and make the subjects this stage needs (lazy when cached)."""
        # under a Trainer, prepare_data (rank 0) has validated before any rank's setup
        unchecked = not self._validated and getattr(self, "trainer", None) is None
        records = self._records(validate=self.hparams.validate and unchecked)
        self.splits = self._splits(records)
        train, val = self.splits.select(self.fold)
        if stage in (None, "fit"):
            self.train_subjects = [self._subject(records[s], crop=True, fractions=self.hparams.partial_volume)
                                   for s in train]
        if stage in (None, "fit", "validate"):
            self.val_subjects = [self._subject(records[s]) for s in val]
        if stage in (None, "test"):
            self.test_subjects = [self._subject(records[s]) for s in self.splits.test]

    def _records(self, validate: bool) -> dict[str, ManifestRecord]:
        """The manifest's records; with ``validate``, all files are checked first (ManifestError)."""
        if validate:
            # subjects cached after an earlier validation, with unchanged files, skip the content pass
            skip: set[str] = set()
            if self.cache is not None:
                records, _ = parse_manifest(self.manifest_path)
                skip = {r.subject_id for r in records if all(p.exists() for p in r.files.values())
                        and self.cache.is_validated(r)}
            settings = ValidationSettings(max_voxels=self.hparams.max_voxels)
            report = validate_manifest(self.manifest_path, settings, skip_content=skip)
            report.raise_if_problems()
            self._validated = True
            return {r.subject_id: r for r in report.records}
        return {r.subject_id: r for r in read_manifest(self.manifest_path)}

    def _splits(self, records: dict[str, ManifestRecord]) -> Splits:
        return load_or_create_splits(
            self.splits_path, list(records), [r.group for r in records.values()],
            num_folds=self.hparams.num_folds, test_fraction=self.hparams.test_fraction, seed=self.hparams.split_seed,
        )

    def _subject(self, record: ManifestRecord, crop: bool = False, fractions: bool = False) -> tio.Subject:
        if self.cache is not None:
            return self.cache.get(record, crop=crop).subject(fractions=fractions)
        return load_subject(record, self.preprocessing, crop=crop, fractions=fractions)

    # loaders ----------------------------------------------------------------
    def train_dataloader(self) -> tio.SubjectsLoader:
        if not self.train_subjects:
            raise DataError(f"fold {self.fold} has no training subjects")
        dataset = tio.SubjectsDataset(self.train_subjects, transform=self._training_transform())
        world_size, rank = self._distributed()
        subject_sampler = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=self.hparams.split_seed
        )
        sampler = ClassBalancedSampler(self.patch_size, "label", self.label_probabilities,
                                       self.hparams.centre_jitter)
        queue = tio.Queue(
            dataset,
            max_length=self.hparams.queue_length,
            samples_per_volume=self.hparams.samples_per_volume,
            sampler=sampler,
            subject_sampler=subject_sampler,
            num_workers=self.hparams.num_workers,
            shuffle_subjects=False,
            shuffle_patches=True,
        )
        return tio.SubjectsLoader(
            queue, batch_size=self.hparams.batch_size, num_workers=0,
            sampler=_RankQueueSampler(queue, subject_sampler),
        )

    def val_dataloader(self) -> tio.SubjectsLoader | list:
        if not self.val_subjects:
            return []
        return tio.SubjectsLoader(tio.SubjectsDataset(self.val_subjects), batch_size=1, num_workers=0)

    def test_dataloader(self) -> tio.SubjectsLoader:
        return tio.SubjectsLoader(tio.SubjectsDataset(self.test_subjects), batch_size=1, num_workers=0)

    # helpers ----------------------------------------------------------------
    def _training_transform(self) -> tio.Transform:
        """Pad volumes smaller than a patch, then augment."""
        transforms: list[tio.Transform] = [tio.CropOrPad(self.patch_size, padding_mode="minimum", only_pad=True)]
        augmentation = make_augmentation(self.hparams.augmentation)
        if augmentation is not None:
            transforms.append(augmentation)
        return tio.Compose(transforms)

    def _distributed(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.world_size, trainer.global_rank
        return 1, 0
