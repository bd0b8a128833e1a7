"""Human-readable descriptions of the registered networks (``femurseg nets``)."""

from __future__ import annotations

import inspect
from typing import Any

from femurseg.models.registry import NETS

__all__ = ["net_parameters", "count_parameters", "list_nets", "describe_net"]


def net_parameters(name: str) -> dict[str, Any]:
    """Keyword parameters of net ``name`` and their defaults (``inspect.Parameter.empty`` if required)."""
    signature = inspect.signature(NETS.get(name))
    return {p.name: p.default for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY}


def count_parameters(name: str, out_channels: int = 2) -> int:
    """Trainable parameters of net ``name`` with its defaults, 1 input and ``out_channels`` outputs."""
    net = NETS.create(name, in_channels=1, out_channels=out_channels)
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def _format(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return "<required>"
    if isinstance(value, tuple):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def list_nets() -> str:
    """One block per registered net: name, class, parameter count, parameters."""
    blocks = []
    for name in NETS.names():
        cls = NETS.get(name)
        params = ", ".join(f"{k}={_format(v)}" for k, v in net_parameters(name).items()
                           if k not in ("in_channels", "out_channels"))
        summary = (inspect.getdoc(cls) or "").splitlines()[0] if inspect.getdoc(cls) else ""
        blocks.append(
            f"{name}  ({cls.__module__}.{cls.__qualname__}, {count_parameters(name) / 1e6:.2f} M parameters)\n"
            f"    {summary}\n    {params}"
        )
    return "\n".join(blocks)


def describe_net(name: str) -> str:
    """The YAML ``model:`` block that selects net ``name`` with its default parameters."""
    lines = ["model:", f"  net: {name}", "  net_kwargs:"]
    for key, value in net_parameters(name).items():
        if key in ("in_channels", "out_channels"):
            continue
        lines.append(f"    {key}: {_format(value)}")
    return "\n".join(lines)
