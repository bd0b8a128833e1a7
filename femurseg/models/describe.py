"""Human-readable descriptions of the registered networks and losses (``femurseg nets``).

``femurseg nets`` lists every net with its class, parameter count (with its
defaults, 1 input channel, 2 classes) and keyword parameters;
``femurseg nets --describe NAME`` prints the ``model:`` YAML block that selects it,
with every default spelled out, ready to paste into a config;
``femurseg nets --losses`` lists the losses and their parameters.
"""

from __future__ import annotations

import inspect
from typing import Any

import yaml

from femurseg.models.registry import LOSSES, NETS, net_spec

__all__ = ["net_parameters", "count_parameters", "list_nets", "list_losses", "describe_net"]

_FILLED_IN = ("in_channels", "out_channels")


def net_parameters(name: str) -> dict[str, Any]:
    """Keyword parameters of net ``name`` and their defaults (``inspect.Parameter.empty`` if required)."""
    signature = inspect.signature(NETS.get(name))
    return {p.name: p.default for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY}


def count_parameters(name: str, out_channels: int = 2, **kwargs: Any) -> int:
    """Trainable parameters of net ``name`` with its defaults (or ``kwargs``), 1 input, ``out_channels`` classes."""
    net = NETS.create(name, in_channels=1, out_channels=out_channels, **kwargs)
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _format(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return "<required>"
    return yaml.safe_dump(_plain(value), default_flow_style=True).strip().removesuffix("\n...").strip()


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj)
    return doc.splitlines()[0] if doc else ""


def list_nets() -> str:
    """One block per registered net: name, class, parameter count, summary, declared spec, parameters."""
    blocks = []
    for name in NETS.names():
        cls = NETS.get(name)
        params = ", ".join(f"{k}={_format(v)}" for k, v in net_parameters(name).items() if k not in _FILLED_IN)
        blocks.append(
            f"{name}  ({cls.__module__}.{cls.__qualname__}, {count_parameters(name) / 1e6:.2f} M parameters)\n"
            f"    {_summary(cls)}\n    declares: {_declared(name)}\n    {params}"
        )
    return "\n".join(blocks)


def _declared(name: str) -> str:
    """The net's :class:`~femurseg.models.registry.NetSpec` in words (``femurseg nets``)."""
    spec = net_spec(name)
    words = ["needs patch_size"] if spec.needs_patch_size else []
    if spec.deep_supervision:
        heads = f" (heads: {', '.join(spec.auxiliary_heads)})" if spec.auxiliary_heads else ""
        words.append(f"deep supervision{heads}")
    return ", ".join(words) or "nothing (no patch size, no deep supervision)"


def list_losses() -> str:
    """One block per registered loss: name, class, summary, parameters."""
    blocks = []
    for name in LOSSES.names():
        cls = LOSSES.get(name)
        signature = inspect.signature(cls)
        params = ", ".join(f"{p.name}={_format(p.default)}" for p in signature.parameters.values())
        blocks.append(f"{name}  ({cls.__module__}.{cls.__qualname__})\n    {_summary(cls)}\n    {params}")
    return "\n".join(blocks)


def describe_net(name: str) -> str:
    """The YAML ``model:`` block that selects net ``name`` with all its default parameters.

    ``in_channels`` and ``out_channels`` are left out: the module fills them in
    from the target; so is ``patch_size`` for nets that declare
    ``NetSpec(needs_patch_size=True)`` (filled in from ``model.patch_size``, itself
    linked to ``data.patch_size``). Required
    parameters (none for the built-in nets) appear as ``null`` with a comment.

    Examples
    --------
    >>> print(describe_net("unet3d").splitlines()[2])
    model:
    """
    cls = NETS.get(name)
    filled_in = _FILLED_IN + (("patch_size",) if net_spec(name).needs_patch_size else ())
    kwargs = {k: (None if v is inspect.Parameter.empty else _plain(v))
              for k, v in net_parameters(name).items() if k not in filled_in}
    required = [k for k, v in net_parameters(name).items() if v is inspect.Parameter.empty and k not in _FILLED_IN]
    block = yaml.safe_dump({"model": {"net": name, "net_kwargs": kwargs}}, sort_keys=False,
                           default_flow_style=None)
    header = [f"# {name}: {_summary(cls)}", f"# {count_parameters(name) / 1e6:.2f} M parameters with these defaults"]
    header += [f"# required: {', '.join(required)}"] if required else []
    if net_spec(name).needs_patch_size:
        header.append("# net_kwargs.patch_size: filled in from model.patch_size (linked to data.patch_size)")
    return "\n".join(header) + "\n" + block.rstrip()
