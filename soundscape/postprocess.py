"""Temporal context at inference: the card's smoothing of a file's per-window probabilities.

A model card declares the rule (``card.postprocess``, :class:`model_store.card.Postprocess`); the window
pipeline (:meth:`soundscape.pipeline.WindowPipeline.finish`, run by the HTTP service, batch analysis and
:meth:`soundscape.inference.Engine.predict`) calls :func:`apply_postprocess` once on a whole file's
``(n_windows, n_labels)`` probabilities, before any species, threshold or top-k filter and before
summaries, so every entry point gives the same numbers for the same file.

Rules, per species, over one file's windows in time order (``d`` is the neighbour offset below; a
neighbour ``t - d`` or ``t + d`` that falls outside the file does not exist):

- ``none``: unchanged.
- ``neighbours``: ``p'[t] = sum_j w_j * p[t + j*d] / sum_j w_j`` over the ``j`` in ``{-1, 0, +1}`` whose
  window exists, ``(w_-1, w_0, w_+1) = neighbour_weights``. The weights are renormalised over the windows
  that exist: the first and last windows average only themselves and their one neighbour, and a
  one-window file is unchanged.
- ``damped_max``: ``p'[t] = max(p[t], damping * max(p[t - d], p[t + d]))`` over the neighbours that exist.

Other hops: a window's neighbours are the windows that start the card's hop (``frontend.hop_s``) earlier
and later. At the card's hop ``d = 1``. At a requested hop ``h`` (the service's ``hop_s`` query,
``analyze --hop-s``) with ``frontend.hop_s / h`` a whole number, ``d`` is that number (5 s card hop:
``h = 2.5`` gives ``d = 2``, ``h = 1`` gives ``d = 5``), so every window is smoothed with the same
neighbours in time as at the card's hop. At any other hop (``h = 2``, ``h = 10``) no window starts exactly
one card hop away, and smoothing is skipped; :class:`PostprocessReport` (``postprocess`` in every answer)
says which happened.

Smoothing needs a file's whole sequence of windows; batch analysis streams audio in blocks but keeps a
file's probabilities (a few bytes per window and label) and smooths them once the file is read, so the
result does not depend on ``--block-s``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from model_store.card import ModelCard, Postprocess

__all__ = ["PostprocessReport", "apply_postprocess", "neighbour_offset", "postprocess_report", "smooth"]

_TOLERANCE = 1e-6


class PostprocessReport(BaseModel):
    """What was done to a file's probabilities after the model (the card's ``postprocess`` at this hop)."""

    smoothing: Literal["none", "neighbours", "damped_max"] = Field(
        ..., description="The model card's smoothing rule.", examples=["neighbours"])
    applied: bool = Field(..., description="True when the probabilities were smoothed (false for 'none', and "
                          "when the request's hop is not a whole fraction of the card's hop).", examples=[True])
    neighbour_offset: int | None = Field(
        None, description="Windows between a window and each neighbour (1 at the card's hop); null when not "
        "applied.", examples=[1])
    neighbour_weights: tuple[float, float, float] | None = Field(
        None, description="Weights of previous, own and next window ('neighbours' only).",
        examples=[[0.25, 0.5, 0.25]])
    damping: float | None = Field(None, description="Factor on the neighbours ('damped_max' only).",
                                  examples=[0.5])
    note: str = Field("", description="Why smoothing was skipped, when it was.",
                      examples=["hop_s=2 is not the card's hop 5 s divided by a whole number"])


def neighbour_offset(card_hop_s: float, hop_s: float) -> int | None:
    """Index offset of the windows one card hop away at ``hop_s``, or None when there are none.

    Examples:
        >>> neighbour_offset(5.0, 5.0), neighbour_offset(5.0, 2.5), neighbour_offset(5.0, 2.0)
        (1, 2, None)
    """
    ratio = card_hop_s / hop_s
    d = round(ratio)
    return d if d >= 1 and abs(ratio - d) <= _TOLERANCE * ratio else None


def smooth(probabilities: np.ndarray, rule: Postprocess, offset: int = 1) -> np.ndarray:
    """Apply ``rule`` to one file's probabilities (the module docstring gives the formulas).

    Args:
        probabilities (np.ndarray): ``(n_windows, n_labels)``, windows in time order.
        rule (Postprocess): the card's rule.
        offset (int): windows between a window and each neighbour (``d``). (Default: ``1``)

    Returns:
        np.ndarray: ``(n_windows, n_labels)`` float32 (computed in float64); the input itself for ``none``.
    """
    if rule.smoothing == "none":
        return probabilities
    if offset < 1:
        raise ValueError(f"offset must be >= 1, got {offset}")
    p = np.asarray(probabilities, dtype=np.float64)
    d = offset
    if rule.smoothing == "neighbours":
        w_prev, w_self, w_next = rule.neighbour_weights
        num = w_self * p
        den = np.full((len(p), 1), w_self)
        if len(p) > d:
            num[d:] += w_prev * p[:-d]
            den[d:] += w_prev
            num[:-d] += w_next * p[d:]
            den[:-d] += w_next
        out = num / den
    else:  # damped_max
        out = p.copy()
        if len(p) > d:
            out[d:] = np.maximum(out[d:], rule.damping * p[:-d])
            out[:-d] = np.maximum(out[:-d], rule.damping * p[d:])
    return out.astype(np.float32)


def postprocess_report(card: ModelCard, hop_s: float | None = None) -> PostprocessReport:
    """What :func:`apply_postprocess` does for ``card`` at ``hop_s`` (None: the card's hop)."""
    rule = card.postprocess
    if rule.smoothing == "none":
        return PostprocessReport(smoothing="none", applied=False)
    params = ({"neighbour_weights": rule.neighbour_weights} if rule.smoothing == "neighbours"
              else {"damping": rule.damping})
    card_hop = card.frontend.hop_s
    hop = card_hop if hop_s is None else hop_s
    d = neighbour_offset(card_hop, hop)
    if d is None:
        return PostprocessReport(smoothing=rule.smoothing, applied=False, **params,
                                 note=f"hop_s={hop:g} is not the card's hop {card_hop:g} s divided by a whole "
                                      "number: no windows one card hop apart, smoothing skipped")
    return PostprocessReport(smoothing=rule.smoothing, applied=True, neighbour_offset=d, **params)


def apply_postprocess(probabilities: np.ndarray, card: ModelCard,
                      hop_s: float | None = None) -> tuple[np.ndarray, PostprocessReport]:
    """The card's postprocessing of one whole file's probabilities at window step ``hop_s``.

    Args:
        probabilities (np.ndarray): ``(n_windows, n_labels)`` of one file, windows in time order, as the
            model gave them.
        card (ModelCard): the model's card (``postprocess`` and ``frontend.hop_s``).
        hop_s (float | None): step between the windows (None: the card's hop).

    Returns:
        tuple: the probabilities to report (float32; the input itself when nothing applies) and the
        :class:`PostprocessReport` that goes into the answer.
    """
    report = postprocess_report(card, hop_s)
    if not report.applied:
        return probabilities, report
    return smooth(probabilities, card.postprocess, report.neighbour_offset or 1), report
