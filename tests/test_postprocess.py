"""Card-declared temporal smoothing (soundscape.postprocess) against formulas written out window by window."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from model_store import ModelCard, ModelStore, default_store_path
from model_store.card import Postprocess
from soundscape.audio import Audio
from soundscape.inference import Engine
from soundscape.postprocess import apply_postprocess, neighbour_offset, postprocess_report, smooth
from tests.utils.models import make_store, tiny_card, tiny_frontend

NEIGHBOURS = Postprocess(smoothing="neighbours", neighbour_weights=(0.2, 0.5, 0.3))  # asymmetric: catches a flip
DAMPED = Postprocess(smoothing="damped_max", damping=0.6)


def by_hand_neighbours(p: np.ndarray, weights: tuple[float, float, float], d: int) -> np.ndarray:
    """sum_j w_j p[t + j d] / sum_j w_j over the windows that exist, one window and species at a time."""
    n, c = p.shape
    out = np.zeros((n, c))
    for t in range(n):
        for s in range(c):
            num = den = 0.0
            for j, w in zip((-1, 0, 1), weights, strict=True):
                if 0 <= t + j * d < n:
                    num += w * float(p[t + j * d, s])
                    den += w
            out[t, s] = num / den
    return out


def by_hand_damped(p: np.ndarray, damping: float, d: int) -> np.ndarray:
    n, c = p.shape
    out = np.zeros((n, c))
    for t in range(n):
        for s in range(c):
            around = [float(p[u, s]) for u in (t - d, t + d) if 0 <= u < n]
            out[t, s] = max([float(p[t, s])] + [damping * a for a in around])
    return out


def probs(n: int, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, c)).astype(np.float32)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 9])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_neighbours_equal_the_formula(n, d):
    p = probs(n, seed=n * 10 + d)
    got = smooth(p, NEIGHBOURS, d)
    assert got.dtype == np.float32 and got.shape == p.shape
    np.testing.assert_allclose(got, by_hand_neighbours(p, NEIGHBOURS.neighbour_weights, d), rtol=0, atol=1e-7)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
@pytest.mark.parametrize("d", [1, 2])
def test_damped_max_equals_the_formula(n, d):
    p = probs(n, seed=n + 100 * d)
    np.testing.assert_allclose(smooth(p, DAMPED, d), by_hand_damped(p, DAMPED.damping, d), rtol=0, atol=1e-7)


def test_edges_hand_computed():
    """Three windows, one species, weights (0.2, 0.5, 0.3): the edge windows renormalise over what exists."""
    p = np.array([[1.0], [0.0], [0.5]], np.float32)
    want = [(0.5 * 1.0 + 0.3 * 0.0) / 0.8,             # first: no previous window
            0.2 * 1.0 + 0.5 * 0.0 + 0.3 * 0.5,         # middle: all three
            (0.2 * 0.0 + 0.5 * 0.5) / 0.7]             # last: no next window
    np.testing.assert_allclose(smooth(p, NEIGHBOURS)[:, 0], want, atol=1e-7)
    np.testing.assert_allclose(smooth(p, DAMPED)[:, 0], [1.0, 0.6, 0.5], atol=1e-7)


def test_one_window_and_no_windows_are_unchanged():
    p = probs(1)
    for rule in (NEIGHBOURS, DAMPED):
        np.testing.assert_allclose(smooth(p, rule), p, atol=1e-7)
        assert smooth(np.zeros((0, 3), np.float32), rule).shape == (0, 3)


def test_none_is_the_identity_and_the_default():
    p = probs(5)
    card = tiny_card(tiny_frontend())
    assert card.postprocess == Postprocess() and card.postprocess.smoothing == "none"
    out, report = apply_postprocess(p, card)
    assert out is p
    assert report.model_dump() == {"smoothing": "none", "applied": False, "neighbour_offset": None,
                                   "neighbour_weights": None, "damping": None, "note": ""}


def test_uniform_weights_are_a_running_mean():
    p = probs(6)
    flat = Postprocess(smoothing="neighbours", neighbour_weights=(1, 1, 1))
    want = np.stack([p[max(t - 1, 0) : t + 2].mean(axis=0) for t in range(6)])
    np.testing.assert_allclose(smooth(p, flat), want, atol=1e-7)


@pytest.mark.parametrize(("card_hop", "hop", "d"), [
    (5.0, 5.0, 1), (5.0, 2.5, 2), (5.0, 1.0, 5), (5.0, 5 / 3, 3), (5.0, 0.5, 10), (2.5, 2.5, 1), (2.5, 1.25, 2),
    (5.0, 2.0, None), (5.0, 10.0, None), (5.0, 3.0, None), (5.0, 4.9, None),
])
def test_neighbour_offset(card_hop, hop, d):
    assert neighbour_offset(card_hop, hop) == d


def test_other_hops_use_the_same_neighbours_in_time():
    """At hop 2.5 the windows on the 5 s grid (even indices) are smoothed with the same windows as at hop 5."""
    card = tiny_card(tiny_frontend(), postprocess=NEIGHBOURS)
    at_5 = probs(7, seed=3)
    at_2_5 = probs(13, seed=4)
    at_2_5[::2] = at_5  # windows starting at 0, 5, 10, ... 30 s
    smoothed_5, r5 = apply_postprocess(at_5, card, 5.0)
    smoothed_2_5, r25 = apply_postprocess(at_2_5, card, 2.5)
    assert (r5.neighbour_offset, r25.neighbour_offset) == (1, 2) and r5.applied and r25.applied
    np.testing.assert_array_equal(smoothed_2_5[::2], smoothed_5)
    skipped, r2 = apply_postprocess(at_2_5, card, 2.0)
    assert skipped is at_2_5 and not r2.applied and r2.neighbour_offset is None and "hop_s=2" in r2.note


def test_report_names_the_parameters_of_the_rule():
    card = tiny_card(tiny_frontend(), postprocess=NEIGHBOURS)
    assert postprocess_report(card).model_dump(mode="json") == {
        "smoothing": "neighbours", "applied": True, "neighbour_offset": 1, "neighbour_weights": [0.2, 0.5, 0.3],
        "damping": None, "note": ""}
    damped = postprocess_report(card.model_copy(update={"postprocess": DAMPED}), 2.5)
    assert (damped.applied, damped.neighbour_offset, damped.damping, damped.neighbour_weights) == (True, 2, 0.6, None)


@pytest.mark.parametrize("fields", [
    {"smoothing": "gaussian"},
    {"neighbour_weights": (0.5, 0.0, 0.5)},      # the window itself must count
    {"neighbour_weights": (-0.1, 1.0, 0.1)},
    {"neighbour_weights": (0.25, 0.5)},
    {"damping": 1.5},
    {"window": 3},                                # unknown field
])
def test_bad_rules_are_rejected(fields):
    with pytest.raises(ValidationError):
        Postprocess(**fields)


def test_card_round_trip_and_cards_without_the_field(tmp_path):
    card = tiny_card(tiny_frontend(), postprocess=NEIGHBOURS)
    card.save(tmp_path / "card.json")
    assert ModelCard.load(tmp_path / "card.json").postprocess == NEIGHBOURS
    doc = json.loads((tmp_path / "card.json").read_text())
    del doc["postprocess"]  # a card written before the field existed
    assert ModelCard.model_validate(doc).postprocess.smoothing == "none"
    store = ModelStore(default_store_path())
    assert store.load("birds", 1).card.postprocess.smoothing == "none"  # v1 was exported before smoothing
    assert store.load("birds").card.postprocess.smoothing == "neighbours"  # v2, the default recipe, declares it


def test_engine_predict_applies_the_card_rule(tmp_path):
    store = make_store(tmp_path / "store", postprocess=NEIGHBOURS)
    engine = Engine(store.load("birds"))
    x = np.random.default_rng(0).normal(0, 0.1, 16000 * 23).astype(np.float32)
    x[16000 * 6 : 16000 * 9] += np.sin(np.arange(16000 * 3) * 0.3).astype(np.float32)  # one loud window
    audio = Audio(samples=x, sample_rate=16000, source_sample_rate=16000, channels=1, format="WAV")
    raw = engine.predict(audio, postprocess=False)
    pred = engine.predict(audio)
    assert raw.postprocess is None and pred.postprocess is not None and pred.postprocess.applied
    np.testing.assert_allclose(pred.probabilities, by_hand_neighbours(raw.probabilities, (0.2, 0.5, 0.3), 1),
                               atol=1e-7)
    assert np.abs(pred.probabilities - raw.probabilities).max() > 1e-3
