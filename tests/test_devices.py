"""The one bf16 check (femurseg/devices.py)."""

import torch

from femurseg import devices


def test_fast_bf16_follows_the_cpu_check(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: True)
    assert devices.fast_bf16(torch.device("cpu"))
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: False)
    assert not devices.fast_bf16(torch.device("cpu"))
    assert not devices.fast_bf16(torch.device("meta"))


def test_cpu_check_survives_a_torch_without_the_private_queries(monkeypatch):
    assert devices.cpu_has_fast_bf16() in (True, False)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, name, raising=False)
    assert devices.cpu_has_fast_bf16() is False
