"""Validation metrics of the BirdCLEF competitions, in numpy only.

- :func:`padded_cmap`: BirdCLEF 2023. ``padding`` rows of all-positive truth and all-one scores are
  appended, then the macro average precision over every species is taken (species without positives
  then score from the padding alone instead of being undefined).
- :func:`macro_roc_auc`: BirdCLEF 2024. Macro ROC-AUC over the species with at least one positive
  (and at least one negative, without which AUC is undefined). Ties get the average rank.
- :func:`average_precision`: the step-wise AP of scikit-learn's ``average_precision_score``
  (``sum_k (R_k - R_{k-1}) P_k`` over distinct score thresholds, tied scores form one threshold).

Targets are binarised as ``y_true > 0`` (a secondary label counts as present).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["Metric", "average_precision", "macro_roc_auc", "padded_cmap", "roc_auc", "score_all", "score_blocks",
           "tracking"]

Metric = Literal["padded_cmap", "macro_roc_auc"]
"""A model-selection metric: one of :func:`padded_cmap` and :func:`macro_roc_auc`."""


def _check(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true shape {y_true.shape} differs from y_score shape {y_score.shape}")
    if y_true.ndim != 2:
        raise ValueError(f"expected (n_samples, n_species) arrays, got shape {y_true.shape}")
    if not np.isfinite(y_score).all():
        raise ValueError("y_score holds NaN or infinite values")
    return y_true > 0, y_score


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Average precision of one species.

    Args:
        y_true (np.ndarray): ``(n,)`` truth; ``> 0`` is positive.
        y_score (np.ndarray): ``(n,)`` scores, higher = more likely present.

    Returns:
        float: AP in [0, 1], or NaN when there is no positive.
    """
    truth = np.asarray(y_true) > 0
    score = np.asarray(y_score, dtype=np.float64)
    n_pos = int(truth.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    score, truth = score[order], truth[order]
    # The last index of each group of equal scores: one threshold per distinct score.
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    tps = np.cumsum(truth)[last]
    precision = tps / (last + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    ends = np.r_[starts[1:], len(xs)]
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1 .. end
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """ROC-AUC of one species (Mann-Whitney U with average ranks for ties).

    Returns:
        float: AUC in [0, 1], or NaN without both a positive and a negative.
    """
    truth = np.asarray(y_true) > 0
    n_pos = int(truth.sum())
    n_neg = len(truth) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(y_score, dtype=np.float64))
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def padded_cmap(y_true: np.ndarray, y_score: np.ndarray, padding: int = 5) -> float:
    """Padded class-mean average precision (BirdCLEF 2023).

    Args:
        y_true (np.ndarray): ``(n_samples, n_species)`` truth.
        y_score (np.ndarray): ``(n_samples, n_species)`` scores.
        padding (int): all-positive rows appended. (Default: ``5``)

    Returns:
        float: mean over species of the AP of the padded columns.
    """
    truth, score = _check(y_true, y_score)
    if padding < 0:
        raise ValueError(f"padding={padding} must be >= 0")
    ones = np.ones((padding, truth.shape[1]))
    truth = np.vstack([truth, ones])
    score = np.vstack([score, ones])
    aps = [average_precision(truth[:, j], score[:, j]) for j in range(truth.shape[1])]
    return float(np.nanmean(aps)) if aps and not np.isnan(aps).all() else float("nan")


def macro_roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Macro ROC-AUC over species with at least one positive (BirdCLEF 2024).

    Args:
        y_true (np.ndarray): ``(n_samples, n_species)`` truth.
        y_score (np.ndarray): ``(n_samples, n_species)`` scores.

    Returns:
        float: the mean AUC, NaN when no species qualifies.
    """
    truth, score = _check(y_true, y_score)
    aucs = [roc_auc(truth[:, j], score[:, j]) for j in range(truth.shape[1])]
    aucs = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(aucs)) if aucs else float("nan")


def score_all(y_true: np.ndarray, y_score: np.ndarray, codes: list[str]) -> dict:
    """Every validation metric at once.

    Args:
        y_true (np.ndarray): ``(n_samples, n_species)`` truth.
        y_score (np.ndarray): ``(n_samples, n_species)`` scores (probabilities or logits).
        codes (list[str]): species codes, in column order.

    Returns:
        dict: ``macro_roc_auc`` (float), ``padded_cmap`` (float) and ``per_species_ap``
        (``{code: AP}`` for species with at least one positive).
    """
    truth, score = _check(y_true, y_score)
    if len(codes) != truth.shape[1]:
        raise ValueError(f"{len(codes)} codes for {truth.shape[1]} columns")
    per_species = {code: average_precision(truth[:, j], score[:, j]) for j, code in enumerate(codes)
                   if truth[:, j].any()}
    return {
        "macro_roc_auc": macro_roc_auc(truth, score),
        "padded_cmap": padded_cmap(truth, score),
        "per_species_ap": per_species,
    }


def score_blocks(y_true: np.ndarray, y_score: np.ndarray, codes: list[str], blocks: int = 1) -> dict:
    """:func:`score_all` with ``padded_cmap`` and ``macro_roc_auc`` averaged over ``blocks`` equal runs of rows.

    Padded cmAP depends on how many positives each species has (the padding weighs more when there are
    few), so a validation set larger than the labelled sets it stands for scores lower for the same model;
    scoring it in blocks of the stand-in's size and averaging keeps the number comparable while using
    more windows. Per-species AP is over all rows.
    """
    truth, score = _check(y_true, y_score)
    if blocks < 1 or blocks > len(truth):
        raise ValueError(f"blocks={blocks} must be in [1, {len(truth)}]")
    result = score_all(truth, score, codes)
    if blocks > 1:
        parts = [score_all(t, s, codes) for t, s in zip(np.array_split(truth, blocks), np.array_split(score, blocks),
                                                         strict=True)]
        for key in ("padded_cmap", "macro_roc_auc"):
            values = [p[key] for p in parts if not np.isnan(p[key])]
            result[key] = float(np.mean(values)) if values else float("nan")
    return result


def tracking(values: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How one validation metric follows a reference across a run's epochs (e.g. pseudo-soundscape vs labelled
    soundscape padded cmAP): the largest and mean absolute difference, and the Spearman rank correlation
    (Pearson correlation of the average ranks; NaN with fewer than 3 epochs or a constant series)."""
    v, r = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    if v.shape != r.shape or v.ndim != 1:
        raise ValueError(f"values {v.shape} and reference {r.shape} must be equal-length series")
    diff = np.abs(v - r)
    rho = float("nan")
    if len(v) > 2 and np.ptp(v) > 0 and np.ptp(r) > 0:
        rho = float(np.corrcoef(_average_ranks(v), _average_ranks(r))[0, 1])
    return {"max_abs_diff": float(diff.max()) if len(diff) else float("nan"),
            "mean_abs_diff": float(diff.mean()) if len(diff) else float("nan"), "spearman": rho}
