"""The training speed-ups keep results: preparing batches in a background thread trains the same weights; micro-
batches bound memory."""

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



def test_micro_batches_of_the_whole_batch_train_the_same_weights_and_smaller_ones_train_on(tiny_data, tmp_path):
    """``micro_batch`` sums a batch's gradient over passes: one pass of the whole batch is the ordinary step, bit for
    bit; passes of 2 windows train too, with BatchNorm on each pass's statistics (so other weights)."""
    runs = {}
    for micro in (0, 4, 2):
        cfg = fast_config(tiny_data, tmp_path / f"micro-{micro}", micro_batch=micro, seed=5, epochs=2,
                          max_steps_per_epoch=3, cache_dir=tmp_path / "cache")
        result = train(cfg)
        runs[micro] = (Checkpoint.load(result.last_checkpoint).state_dict, result)
    whole, micro4, micro2 = (runs[k][0] for k in (0, 4, 2))
    assert all(torch.equal(value, micro4[key]) for key, value in whole.items())
    assert any(not torch.equal(value, micro2[key]) for key, value in whole.items() if value.is_floating_point())
    assert all(torch.isfinite(value).all() for value in micro2.values() if value.is_floating_point())
    losses = [row["train_loss"] for row in runs[2][1].history]
    assert len(losses) == 2 and all(0 < loss < 10 for loss in losses)
