"""What the hardware can do fast: the one bf16 check of femurseg.

Training warns when ``bf16`` is asked for on a CPU without native bf16 (it runs
convolutions 20-100x slower than fp32 there; ``docs/models.md``), and inference
chooses ``precision="auto"`` from the same answer.

Examples
--------
>>> import torch
>>> fast_bf16(torch.device("cpu")) in (True, False)
True
"""

from __future__ import annotations

import torch

__all__ = ["cpu_has_fast_bf16", "fast_bf16"]


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AVX-512 BF16 or AMX), so that bf16 is faster than fp32.

    PyTorch (written for torch 2.13) has no public query for this: the adapter asks
    ``torch.cpu._is_avx512_bf16_supported`` and ``torch.cpu._is_amx_tile_supported`` and
    answers ``False`` if a future version removes them (fp32 is always safe).
    """
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        return any(bool(check()) for check in checks if check is not None)
    except RuntimeError:
        return False


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 is the faster precision on ``device``: a CUDA GPU with bf16, or a CPU with native bf16."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu" and cpu_has_fast_bf16()
