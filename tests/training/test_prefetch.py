"""The training speed-ups keep results: preparing batches in a background thread trains the same weights."""

from __future__ import annotations

import torch

from tests.training.conftest import fast_config
from training import Checkpoint, train


def test_prefetching_batches_trains_the_same_weights_as_preparing_them_in_turn(tiny_data, tmp_path):
    weights = {}
    for prefetch in (True, False):
        cfg = fast_config(tiny_data, tmp_path / f"prefetch-{prefetch}", prefetch=prefetch, seed=5, epochs=2,
                          max_steps_per_epoch=3, drop_rate=0.3, cache_dir=tmp_path / "cache")
        weights[prefetch] = Checkpoint.load(train(cfg).last_checkpoint).state_dict
    assert weights[True].keys() == weights[False].keys()
    for key, value in weights[True].items():
        assert torch.equal(value, weights[False][key]), key

