"""Bundled default models: weights shipped inside the package, with their cards.

A bundled model is a femurseg checkpoint stripped to what inference needs (the
network weights and the ``femurseg`` metadata, plain data only), stored as
package data in ``femurseg/models/weights/<name>.pt`` and listed in
``femurseg/models/weights/index.json`` with its SHA-256 and its card
(provenance: the recipe command, seeds, git commit, training steps). Loading
checks the hash first and then reads the file with ``torch.load(weights_only=True)``
through :func:`femurseg.models.checkpoints.read_checkpoint`, so a bundled
model is never unpickled code.

``femurseg models`` lists them; ``femurseg segment SCAN --output DIR`` uses
:data:`DEFAULT_MODEL` when no checkpoint is given; ``femurseg models --package``
turns a training run's checkpoint into a bundled model (the last step of
``configs/default_model/build.sh``).

Examples
--------
>>> from femurseg.models.zoo import list_models, DEFAULT_MODEL
>>> DEFAULT_MODEL in [m.name for m in list_models()]   # doctest: +SKIP
True
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from femurseg.atomic import atomic_write_bytes, atomic_write_json
from femurseg.errors import CheckpointError
from femurseg.models.checkpoints import read_checkpoint, sha256_of

__all__ = ["DEFAULT_MODEL", "WEIGHTS_DIR", "BundledModel", "list_models", "get_model", "model_path",
           "package_checkpoint"]

#: the model ``femurseg segment`` uses when no checkpoint is given
DEFAULT_MODEL = "femur-ct-v5"
#: package data folder of the bundled weights and their index
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
INDEX = "index.json"
#: package data budget (the wheel must stay small)
MAX_BYTES = 25 * 1024 * 1024


@dataclass(frozen=True)
class BundledModel:
    """One bundled model: its file, hash and card."""

    name: str
    file: str
    sha256: str
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file

    def summary(self) -> str:
        """One paragraph for ``femurseg models``."""
        c = self.card
        lines = [f"{self.name}{' (default)' if self.name == DEFAULT_MODEL else ''}: {c.get('description', '')}",
                 f"  target: {c.get('target')}  net: {c.get('net')} {c.get('net_kwargs', {}).get('channels', '')}  "
                 f"spacing: {c.get('spacing_mm')} mm  window: {c.get('patch_size')}",
                 f"  trained on: {c.get('training_data', '')}",
                 f"  recipe: {c.get('recipe', '')}  (seed {c.get('seed')}, git {str(c.get('git_commit', ''))[:12]}, "
                 f"{c.get('training', {}).get('global_step')} steps)",
                 f"  file: {self.file}  sha256: {self.sha256}",
                 f"  card: {c.get('card_url', 'docs/model_card.md')}"]
        return "\n".join(lines)


def _index(weights_dir: Path = WEIGHTS_DIR) -> dict[str, Any]:
    path = weights_dir / INDEX
    if not path.is_file():
        return {"models": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def list_models(weights_dir: Path = WEIGHTS_DIR) -> list[BundledModel]:
    """The bundled models, sorted by name."""
    models = _index(weights_dir)["models"]
    return [BundledModel(name, m["file"], m["sha256"], m.get("card", {})) for name, m in sorted(models.items())]


def get_model(name: str | None = None, weights_dir: Path = WEIGHTS_DIR) -> BundledModel:
    """The bundled model ``name`` (default :data:`DEFAULT_MODEL`).

    Raises
    ------
    CheckpointError
        If no bundled model has that name.
    """
    name = name or DEFAULT_MODEL
    for model in list_models(weights_dir):
        if model.name == name:
            return model
    known = ", ".join(m.name for m in list_models(weights_dir)) or "none"
    raise CheckpointError(f"no bundled model {name!r}; bundled models: {known} (femurseg models lists them)")


def model_path(name: str | None = None, weights_dir: Path = WEIGHTS_DIR) -> Path:
    """Path of a bundled model's weights after checking their SHA-256 against the index.

    Raises
    ------
    CheckpointError
        If the model is unknown, its file is missing, or the hash differs (a
        corrupted or replaced file is never loaded).
    """
    model = get_model(name, weights_dir)
    path = weights_dir / model.file
    if not path.is_file():
        raise CheckpointError(f"bundled model {model.name!r}: weights file {path} is missing (reinstall femurseg)")
    actual = sha256_of(path)
    if actual != model.sha256:
        raise CheckpointError(f"bundled model {model.name!r}: {path} has SHA-256 {actual}, the index records "
                              f"{model.sha256}; the file is corrupted or was replaced (reinstall femurseg)")
    return path


def _git_commit(repo: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def package_checkpoint(
    checkpoint: str | os.PathLike[str],
    name: str,
    recipe: str,
    description: str = "",
    git_commit: str | None = None,
    weights_dir: Path = WEIGHTS_DIR,
) -> BundledModel:
    """Turn a training checkpoint into a bundled model and record it in the index.

    Keeps the network weights (``state_dict["net.*"]``) and the ``femurseg``
    metadata, adds the card (recipe, seed, git commit, training record, the run's
    ``config.yaml``), writes ``<weights_dir>/<name>.pt`` atomically and updates
    ``index.json`` with its SHA-256.

    Parameters
    ----------
    checkpoint
        ``last.ckpt`` or ``best.ckpt`` of a run (its folder's ``../config.yaml`` is recorded).
    name
        Versioned model name, e.g. ``femur-ct-v1``.
    recipe
        The command that rebuilds these weights.
    description
        One line for ``femurseg models``.
    git_commit
        Commit the training ran at (default: the repository's current ``HEAD``).

    Raises
    ------
    CheckpointError
        If the checkpoint cannot be read safely or the result exceeds the size budget.
    """
    source = Path(checkpoint)
    info = read_checkpoint(source)  # refuses pickled code and unregistered nets
    raw = torch.load(source, map_location="cpu", weights_only=True)
    meta = dict(raw["femurseg"])
    config_path = source.parent.parent / "config.yaml"
    config_text = config_path.read_text(encoding="utf-8") if config_path.is_file() else ""
    config: dict[str, Any] = {}
    if config_text:
        import yaml

        config = yaml.safe_load(config_text) or {}
    data = config.get("data") or {}
    pretrained = (config.get("model") or {}).get("pretrained")
    card = {
        "name": name,
        "description": description,
        "target": info.target,
        "classes": meta.get("classes"),
        "net": info.net,
        "net_kwargs": info.net_kwargs,
        "spacing_mm": list(info.preprocessing.spacing),
        "hu_window": list(info.preprocessing.hu_window),
        "patch_size": list(info.patch_size),
        "training_data": (f"synthetic phantoms only: {data.get('synthetic_n')} subjects of the "
                          f"'{data.get('synthetic_preset')}' preset from seed {data.get('synthetic_seed')}, "
                          f"augmentation '{data.get('augmentation')}'"
                          + (f"; fine-tuned from {pretrained}" if pretrained else "")) if data else "see config",
        "pretrained": pretrained,
        "recipe": recipe,
        "seed": config.get("seed_everything"),
        "git_commit": git_commit or _git_commit(Path(__file__).resolve().parents[2]),
        "training": meta.get("training", {}),
        "packaged": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source_checkpoint_sha256": info.sha256,
        "config": config_text,
        "card_url": "docs/model_card.md",
        "license": "Apache-2.0 (weights trained on synthetic data only; no third-party data)",
    }
    meta["card"] = card
    state = {k: v.contiguous() for k, v in raw["state_dict"].items() if k.startswith("net.")}
    payload = {"state_dict": state, "femurseg": meta}
    import io

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data_bytes = buffer.getvalue()
    if len(data_bytes) > MAX_BYTES:
        raise CheckpointError(f"bundled model {name!r} would be {len(data_bytes) / 2**20:.1f} MB, over the "
                              f"{MAX_BYTES / 2**20:.0f} MB budget of package data")
    weights_dir.mkdir(parents=True, exist_ok=True)
    target = weights_dir / f"{name}.pt"
    atomic_write_bytes(target, data_bytes)
    model = BundledModel(name, target.name, sha256_of(target), card)
    index = _index(weights_dir)
    index["models"][name] = {"file": model.file, "sha256": model.sha256, "card": card}
    atomic_write_json(weights_dir / INDEX, index, indent=1, sort_keys=True, allow_nan=True)
    return model
