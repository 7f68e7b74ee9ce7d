"""Training precision: bfloat16 autocast on CPUs that have it, float16 on CUDA, float32 weights always."""

from __future__ import annotations

import logging

import pytest
import torch

from tests.training.conftest import fast_config
from training import Checkpoint, train
from training.precision import autocast_dtype, cpu_has_bfloat16


def test_autocast_dtype_follows_the_device_and_the_setting():
    assert autocast_dtype(torch.device("cpu"), enabled=False) is None
    assert autocast_dtype(torch.device("cuda"), enabled=False) is None
    assert autocast_dtype(torch.device("cuda"), enabled=True) == torch.float16
    expected = torch.bfloat16 if cpu_has_bfloat16() else None
    assert autocast_dtype(torch.device("cpu"), enabled=True) == expected


@pytest.mark.parametrize(("amp", "channels_last"), [(True, True), (False, False)])
def test_mixed_precision_runs_are_repeatable_and_keep_float32_weights(tiny_data, tmp_path, caplog, amp,
                                                                      channels_last):
    caplog.set_level(logging.INFO, logger="training.loop")
    weights = []
    for name in ("a", "b"):
        cfg = fast_config(tiny_data, tmp_path / name, amp=amp, channels_last=channels_last, seed=3,
                          cache_dir=tmp_path / "cache")
        result = train(cfg)
        weights.append(Checkpoint.load(result.last_checkpoint).state_dict)
    dtype = torch.bfloat16 if amp and cpu_has_bfloat16() else torch.float32
    assert f"training precision: {dtype}" in caplog.text
    assert ("channels-last" if channels_last else "contiguous") in caplog.text
    floats = {k: v for k, v in weights[0].items() if v.is_floating_point()}
    assert floats and all(v.dtype == torch.float32 for v in floats.values())
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key  # the same seed gives the same weights
