"""Checkpoint sets: safe loading, compatibility checks and weight averaging.

A checkpoint written by :class:`femurseg.models.SegmentationModule` carries, beside
Lightning's keys, plain metadata ``checkpoint["femurseg"]`` (target, net name and
keyword arguments, preprocessing, patch size, classes) and the weights under
``state_dict`` with the prefix ``net.``. Checkpoints are read with
``torch.load(weights_only=True)``: no code is unpickled, and a file that needs
arbitrary objects is refused. Networks are rebuilt from the metadata through the
``NETS`` registry.

A set is either binary models of both contours (``periosteal`` and ``endosteal``
targets) or 3-class ``compartments`` models; every member must share the
preprocessing settings. Anything else is a :class:`~femurseg.errors.CheckpointError`.

Examples
--------
>>> checkpoints = load_checkpoints(periosteal=["p0.ckpt", "p1.ckpt"], endosteal=["e0.ckpt"])  # doctest: +SKIP
>>> checkpoints.kind, len(checkpoints.periosteal)                                          # doctest: +SKIP
('binary', 2)
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from femurseg.data.augment import mirror_axes
from femurseg.data.preprocess import Preprocessing
from femurseg.errors import CheckpointError
from femurseg.labels import OUT_CHANNELS, TARGETS

log = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "sha256_of", "CheckpointInfo", "CheckpointSet", "read_checkpoint", "load_checkpoints", "build_net", "average_weights"]

#: version of the ``checkpoint["femurseg"]`` metadata that SegmentationModule writes and this module reads
FORMAT_VERSION = 1



@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint's metadata and network weights.

    Attributes
    ----------
    path
        The file (or a description, for averaged weights).
    target
        ``periosteal``, ``endosteal`` or ``compartments``.
    net, net_kwargs
        Registry name (or dotted path) and keyword arguments of the network.
    preprocessing
        The settings the network was trained with.
    patch_size
        Training patch size, in the network's axis order.
    state_dict
        Network weights (``net.`` prefix removed).
    sha256
        Digest of the file, for the report.
    mirror_axes
        Axes its training augmentation mirrored (``"x"``, ``"none"``), or ``None`` if
        the checkpoint does not say; ``tta="auto"`` flips only along these.
    """

    path: str
    target: str
    net: str
    net_kwargs: dict[str, Any]
    preprocessing: Preprocessing
    patch_size: tuple[int, int, int]
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    sha256: str = ""
    mirror_axes: str | None = None

    def describe(self) -> dict[str, Any]:
        """Plain-data description for ``report.json``."""
        return {"path": self.path, "target": self.target, "net": self.net, "sha256": self.sha256}


@dataclass(frozen=True)
class CheckpointSet:
    """A compatible ensemble: binary ``periosteal`` + ``endosteal`` members, or ``compartments`` members."""

    periosteal: tuple[CheckpointInfo, ...] = ()
    endosteal: tuple[CheckpointInfo, ...] = ()
    compartments: tuple[CheckpointInfo, ...] = ()

    @property
    def kind(self) -> Literal["binary", "compartments"]:
        return "compartments" if self.compartments else "binary"

    @property
    def members(self) -> tuple[CheckpointInfo, ...]:
        return self.periosteal + self.endosteal + self.compartments

    @property
    def preprocessing(self) -> Preprocessing:
        return self.members[0].preprocessing

    @property
    def patch_size(self) -> tuple[int, int, int]:
        """The window size: the first member's training patch size."""
        return self.members[0].patch_size

    @property
    def mirror_axes(self) -> str:
        """Axes every member was trained to mirror: what ``tta="auto"`` flips (``"none"`` if any member is silent)."""
        common: set[str] | None = None
        for member in self.members:
            axes = set() if member.mirror_axes in (None, "none") else set(member.mirror_axes)
            common = axes if common is None else common & axes
        return "".join(sorted(common)) if common else "none"

    def describe(self) -> list[dict[str, Any]]:
        return [m.describe() for m in self.members]


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file (checkpoints in reports, bundled weights against their index)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Read one checkpoint safely.

    Raises
    ------
    CheckpointError
        If the file is missing, needs unpickling of arbitrary objects, lacks the
        ``femurseg`` metadata, has an unknown format version or target, or has no
        network weights.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: file not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path}: cannot be loaded safely (weights_only): {first}") from error
    meta = checkpoint.get("femurseg") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path}: no 'femurseg' metadata; was it written by SegmentationModule?")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format version {meta.get('format_version')!r}, this femurseg reads {FORMAT_VERSION}"
        )
    target = meta.get("target")
    if target not in TARGETS:
        raise CheckpointError(f"checkpoint {path}: unknown target {target!r}; valid: {', '.join(TARGETS)}")
    if meta.get("preprocessing") is None:
        raise CheckpointError(f"checkpoint {path}: no preprocessing settings (trained without a data module?)")
    state = {k[len("net."):]: v for k, v in checkpoint.get("state_dict", {}).items() if k.startswith("net.")}
    if not state:
        raise CheckpointError(f"checkpoint {path}: no network weights (state_dict keys 'net.*')")
    try:
        preprocessing = Preprocessing.from_dict(meta["preprocessing"])
        patch = tuple(int(p) for p in meta["patch_size"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path}: invalid metadata ({error})") from error
    if len(patch) != 3:
        raise CheckpointError(f"checkpoint {path}: patch_size {meta['patch_size']} is not three ints")
    _check_registered_net(path, meta.get("net"), meta.get("net_kwargs"))
    training = meta.get("training")
    if isinstance(training, dict) and training.get("stopped_by_time_cap"):
        log.warning("checkpoint %s: its training was cut short by a time cap (trainer.max_time) after %s steps; "
                    "it is not the configured training", path, training.get("global_step"))
    return CheckpointInfo(
        path=str(path), target=target, net=str(meta["net"]), net_kwargs=dict(meta.get("net_kwargs") or {}),
        preprocessing=preprocessing, patch_size=patch, state_dict=state, sha256=sha256_of(path),  # type: ignore[arg-type]
        mirror_axes=_mirror_axes(meta, checkpoint),
    )


_PLAIN = (str, int, float, bool, type(None))


def _is_plain(value: Any) -> bool:
    """Plain data only: numbers, strings, booleans, None and lists/tuples/dicts of them."""
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _check_registered_net(path: Path, net: Any, net_kwargs: Any) -> None:
    """Refuse a checkpoint whose net is not a registered name, or whose arguments are not plain data.

    A checkpoint is data from someone else: its ``net`` entry must name a built-in or
    installed plugin network, never a dotted import path (``os.system`` would run a
    command), so that loading a checkpoint can never import or run code.
    """
    from femurseg.models import NETS  # the registry is filled on import

    if not isinstance(net, str) or "." in net or net not in NETS:
        raise CheckpointError(
            f"checkpoint {path}: net {net!r} is not a registered network; a checkpoint may only name a registered "
            f"net ({', '.join(NETS.names())}) so that loading it never imports code. Register a custom net as an "
            "entry-point plugin (group 'femurseg.nets', docs/plugins.md) to segment with it"
        )
    if net_kwargs is not None and not (isinstance(net_kwargs, dict) and _is_plain(net_kwargs)):
        raise CheckpointError(f"checkpoint {path}: net_kwargs must be plain data (numbers, strings, lists)")


def _mirror_axes(meta: dict[str, Any], checkpoint: dict[str, Any]) -> str | None:
    """The training mirror axes: from the metadata, else from the data module's augmentation preset."""
    if isinstance(meta.get("mirror_axes"), str):
        return meta["mirror_axes"]
    preset = (checkpoint.get("datamodule_hyper_parameters") or {}).get("augmentation")
    try:
        return mirror_axes(preset) if isinstance(preset, str) else None
    except ValueError:
        return None


def build_net(info: CheckpointInfo) -> nn.Module:
    """Rebuild the network of a checkpoint, load its weights and put it in eval mode.

    The weights are stored channels-last (``torch.channels_last_3d``), the layout in
    which oneDNN and cuDNN run 3D convolutions fastest: on the CPU of
    ``docs/benchmarks.md`` it makes a 48³ window ~20 % faster under bf16 autocast,
    with outputs equal to the default layout up to float rounding.

    The net is built as its registration declares (:class:`~femurseg.models.registry.NetSpec`):
    with ``deep_supervision=False`` if it has deep supervision, and the weights of its
    declared ``auxiliary_heads`` are ignored.

    Raises
    ------
    CheckpointError
        If the net is unknown, its arguments are invalid, the weights do not fit,
        or its output channels do not match the target.
    """
    from femurseg.models import NETS  # the registry is filled on import
    from femurseg.models.registry import net_spec

    try:
        NETS.get_registered(info.net)  # a name read from a file: never import a dotted path
        spec = net_spec(info.net)
        net = NETS.create_registered(info.net, **spec.inference_kwargs(info.net_kwargs))
    except (KeyError, ImportError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {info.path}: cannot build net {info.net!r}: {error}") from error
    try:
        missing, unexpected = net.load_state_dict(info.state_dict, strict=False)
    except RuntimeError as error:  # shapes that do not fit
        raise CheckpointError(f"checkpoint {info.path}: weights do not fit net {info.net!r}: "
                              f"{str(error).strip().splitlines()[-1].strip()}") from error
    extra = [k for k in unexpected if not spec.is_auxiliary_weight(k)]  # deep-supervision heads are unused
    if missing or extra:
        raise CheckpointError(
            f"checkpoint {info.path}: weights do not fit net {info.net!r} (missing {missing[:3]}, unexpected {extra[:3]})"
        )
    expected = OUT_CHANNELS[info.target]
    if int(info.net_kwargs.get("out_channels", expected)) != expected:
        raise CheckpointError(
            f"checkpoint {info.path}: target {info.target!r} needs {expected} output channels, "
            f"net has {info.net_kwargs.get('out_channels')}"
        )
    return net.to(memory_format=torch.channels_last_3d).eval()


def load_pretrained(net: nn.Module, source: str | os.PathLike[str], *, net_name: str, target: str,
                    net_kwargs: dict[str, Any]) -> CheckpointInfo:
    """Initialise ``net`` in place with the weights of a bundled model or a checkpoint (fine-tuning).

    Parameters
    ----------
    net
        The freshly built network to initialise.
    source
        A checkpoint path (a bundled model's is :func:`femurseg.models.zoo.model_path`); read
        with :func:`read_checkpoint` (``weights_only``, never runs code).
    net_name, target, net_kwargs
        What ``net`` is; the source must have been trained with the same net,
        target and architecture arguments (``deep_supervision`` may differ: heads
        the source lacks keep their fresh weights).

    Returns
    -------
    CheckpointInfo
        The source, whose ``preprocessing`` the training data should match.

    Raises
    ------
    CheckpointError
        If the source cannot be read or is a different net, target or architecture.
    """
    path = Path(source)
    info = read_checkpoint(path)
    ignore = {"in_channels", "out_channels", "deep_supervision", "patch_size"}
    ours = {k: v for k, v in net_kwargs.items() if k not in ignore}
    theirs = {k: v for k, v in info.net_kwargs.items() if k not in ignore}
    if info.net != net_name or info.target != target or _normalised_kwargs(ours) != _normalised_kwargs(theirs):
        raise CheckpointError(
            f"pretrained weights {path}: trained as net {info.net!r}, target {info.target!r}, net_kwargs {theirs}; "
            f"this model is net {net_name!r}, target {target!r}, net_kwargs {ours}"
        )
    from femurseg.models.registry import net_spec

    spec = net_spec(net_name)
    missing, unexpected = net.load_state_dict(info.state_dict, strict=False)
    missing = [k for k in missing if not spec.is_auxiliary_weight(k)]
    unexpected = [k for k in unexpected if not spec.is_auxiliary_weight(k)]
    if missing or unexpected:
        raise CheckpointError(f"pretrained weights {path}: do not fit net {net_name!r} "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    log.info("initialised %s from %s (sha256 %s)", net_name, path, info.sha256[:12])
    return info


def _normalised_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with sequences as lists, so YAML lists and stored tuples compare equal."""
    return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in kwargs.items()}


def average_weights(members: Sequence[CheckpointInfo]) -> CheckpointInfo:
    """One checkpoint whose weights are the mean of ``members`` (same net and arguments).

    Raises
    ------
    CheckpointError
        If the members differ in target, network, arguments or weight shapes.
    """
    first = members[0]
    for other in members[1:]:
        if (other.target, other.net, other.net_kwargs) != (first.target, first.net, first.net_kwargs):
            raise CheckpointError(
                f"cannot average weights of {first.path} and {other.path}: target, net or net_kwargs differ"
            )
        if other.state_dict.keys() != first.state_dict.keys() or any(
            other.state_dict[k].shape != v.shape for k, v in first.state_dict.items()
        ):
            raise CheckpointError(f"cannot average weights of {first.path} and {other.path}: weight shapes differ")
    state = {}
    for key, value in first.state_dict.items():
        if value.is_floating_point():
            state[key] = torch.stack([m.state_dict[key].float() for m in members]).mean(0).to(value.dtype)
        else:
            state[key] = value.clone()
    return CheckpointInfo(
        path=f"mean of {len(members)}: " + ", ".join(m.path for m in members), target=first.target, net=first.net,
        net_kwargs=first.net_kwargs, preprocessing=first.preprocessing, patch_size=first.patch_size,
        state_dict=state, sha256="", mirror_axes=CheckpointSet(periosteal=tuple(members)).mirror_axes,
    )


def load_checkpoints(
    checkpoints: Sequence[str | os.PathLike[str]] | None = None,
    periosteal: Sequence[str | os.PathLike[str]] | None = None,
    endosteal: Sequence[str | os.PathLike[str]] | None = None,
    average: bool = False,
) -> CheckpointSet:
    """Load and check an ensemble.

    Parameters
    ----------
    checkpoints
        Checkpoints of any target, grouped by the target each one records.
    periosteal, endosteal
        Checkpoints that must have these targets.
    average
        Replace each target's members by one network with averaged weights
        (fold checkpoints of one configuration).

    Raises
    ------
    CheckpointError
        If no checkpoint is given, a file cannot be read, a checkpoint given as
        ``periosteal``/``endosteal`` has another target, ``compartments`` are mixed
        with binary targets, one contour is missing, or preprocessing differs.
    """
    groups: dict[str, list[CheckpointInfo]] = {t: [] for t in TARGETS}
    for path in checkpoints or ():
        info = read_checkpoint(path)
        groups[info.target].append(info)
    for role, paths in (("periosteal", periosteal), ("endosteal", endosteal)):
        for path in paths or ():
            info = read_checkpoint(path)
            if info.target != role:
                raise CheckpointError(f"checkpoint {path}: given as {role} but trained for target {info.target!r}")
            groups[role].append(info)
    members = [m for t in TARGETS for m in groups[t]]
    if not members:
        raise CheckpointError("no checkpoints given (--checkpoints, or --periosteal and --endosteal)")
    if groups["compartments"] and (groups["periosteal"] or groups["endosteal"]):
        raise CheckpointError(
            "cannot mix 3-class 'compartments' checkpoints with binary periosteal/endosteal ones: "
            f"{groups['compartments'][0].path} and {(groups['periosteal'] + groups['endosteal'])[0].path}"
        )
    if not groups["compartments"]:
        for role, other in (("periosteal", "endosteal"), ("endosteal", "periosteal")):
            if not groups[role]:
                raise CheckpointError(
                    f"{other} checkpoints ({groups[other][0].path}) need {role} checkpoints too, "
                    f"or use one 3-class 'compartments' set"
                )
    reference = members[0]
    for info in members[1:]:
        if info.preprocessing != reference.preprocessing:
            mine, theirs = info.preprocessing.to_dict(), reference.preprocessing.to_dict()
            keys = [k for k in mine if mine[k] != theirs.get(k)]
            raise CheckpointError(
                f"checkpoints {reference.path} and {info.path} were trained with different preprocessing "
                f"({', '.join(f'{k}: {theirs.get(k)} vs {mine[k]}' for k in keys)}); an ensemble needs one"
            )
    if average:
        groups = {t: [average_weights(g)] if len(g) > 1 else g for t, g in groups.items()}
    return CheckpointSet(*(tuple(groups[t]) for t in TARGETS))
