"""Metrics against values computed by hand."""

import math

import numpy as np
import pytest

from training.metrics import average_precision, macro_roc_auc, padded_cmap, roc_auc, score_all


def test_average_precision_by_hand():
    # ranks: P (P=1, R=.5), N, P (P=2/3, R=1) -> .5 * 1 + .5 * 2/3
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(5 / 6)


def test_average_precision_ties_form_one_threshold():
    # threshold 0.5 admits one P and one N together (P=.5, R=.5); then P=2/3 at R=1
    assert average_precision([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))


def test_roc_auc_with_ties():
    # pos/neg pairs: (.8,.8)=.5, (.8,.1)=1, (.3,.8)=0, (.3,.1)=1 -> 2.5 / 4
    assert roc_auc([1, 0, 1, 0], [0.8, 0.8, 0.3, 0.1]) == pytest.approx(0.625)
    assert roc_auc([1, 1, 0], [0.2, 0.2, 0.2]) == pytest.approx(0.5)


def test_padded_cmap_example():
    y = np.array([[0, 0], [1, 0]])
    s = np.array([[0.2, 0.3], [0.1, 0.4]])
    # column 0 padded with one row: truth [0,1,1], scores [.2,.1,1] -> 1*.5 + 2/3*.5
    # column 1 padded: truth [0,0,1], scores [.3,.4,1] -> 1
    assert padded_cmap(y, s, padding=1) == pytest.approx((5 / 6 + 1.0) / 2)
    # the default padding of 5 rows lifts a hopeless column close to 1
    assert padded_cmap(y, s) > padded_cmap(y, s, padding=1)


def test_macro_auc_skips_species_without_positives():
    y = np.array([[0, 0, 1], [1, 0, 0], [0, 0, 1]])
    s = np.array([[0.9, 0.1, 0.8], [0.1, 0.2, 0.1], [0.3, 0.3, 0.7]])
    # column 0: the positive scores lowest -> 0; column 1: no positive (skipped); column 2: 1
    assert macro_roc_auc(y, s) == pytest.approx(0.5)


def test_score_all_keys_and_errors():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    s = np.array([[0.9, 0.2], [0.1, 0.3], [0.8, 0.1]])
    out = score_all(y, s, ["a", "b"])
    assert set(out) == {"macro_roc_auc", "padded_cmap", "per_species_ap"}
    assert out["per_species_ap"] == {"a": pytest.approx(1.0)}
    assert out["macro_roc_auc"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="codes"):
        score_all(y, s, ["a"])
    with pytest.raises(ValueError, match="shape"):
        padded_cmap(y, s[:, :1])


def test_score_blocks_averages_per_block_metrics_and_keeps_whole_set_per_species_ap():
    from training.metrics import score_blocks

    rng = np.random.default_rng(0)
    y = (rng.random((40, 3)) < 0.2).astype(np.float32)
    s = rng.random((40, 3))
    out = score_blocks(y, s, ["a", "b", "c"], blocks=2)
    halves = [padded_cmap(y[:20], s[:20]), padded_cmap(y[20:], s[20:])]
    assert out["padded_cmap"] == pytest.approx(np.mean(halves))
    assert out["padded_cmap"] != pytest.approx(padded_cmap(y, s))  # blocks matter: fewer positives per block
    assert out["per_species_ap"]["a"] == pytest.approx(average_precision(y[:, 0], s[:, 0]))
    assert score_blocks(y, s, ["a", "b", "c"], blocks=1)["padded_cmap"] == pytest.approx(padded_cmap(y, s))
    with pytest.raises(ValueError, match="blocks"):
        score_blocks(y, s, ["a", "b", "c"], blocks=0)


def test_tracking_reports_gap_and_rank_agreement_against_an_outside_formula():
    from scipy.stats import spearmanr

    from training.metrics import tracking

    ref = np.array([0.40, 0.45, 0.47, 0.46, 0.50])
    close = ref - np.array([0.03, 0.02, 0.04, 0.01, 0.02])
    out = tracking(close, ref)
    assert out["max_abs_diff"] == pytest.approx(0.04) and out["mean_abs_diff"] == pytest.approx(0.024)
    assert out["spearman"] == pytest.approx(spearmanr(close, ref).statistic)
    flipped = tracking(ref[::-1], ref)
    assert flipped["spearman"] == pytest.approx(spearmanr(ref[::-1], ref).statistic) and flipped["spearman"] < 0
    assert np.isnan(tracking(ref[:2], ref[:2])["spearman"])
    with pytest.raises(ValueError):
        tracking(ref, ref[:3])
