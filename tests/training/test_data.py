"""Dataset reading, targets, problems report, cache, crops, split and sampling on real files."""

import csv
import os
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from tests.training.conftest import SPECIES, call
from training import TrainConfig
from training.data import (
    AudioCache,
    Clip,
    ClipDataset,
    ProblemReport,
    WeightedRankSampler,
    build_labels,
    call_energy,
    crop,
    holdout_split,
    make_targets,
    read_metadata,
    read_taxonomy,
    sampling_weights,
)

RATE = 16000


@pytest.fixture(scope="module")
def clips_and_problems(tiny_data):
    problems = ProblemReport()
    taxonomy = read_taxonomy(tiny_data / "taxonomy.csv")
    clips, names = read_metadata(tiny_data / "train_metadata.csv", tiny_data / "train_audio", problems,
                                 taxonomy=taxonomy)
    return clips, problems, taxonomy, names


def test_labels_and_targets(clips_and_problems):
    clips, _, taxonomy, names = clips_and_problems
    labels = build_labels(clips, taxonomy, names)
    codes = [lab["code"] for lab in labels]
    assert codes == sorted(SPECIES)
    assert labels[0] == {"code": "amered", "common_name": "Amered", "scientific_name": "Avis amered"}
    y = make_targets(clips, codes, secondary_weight=0.5)
    first = clips[0]  # amered_0 has one secondary label
    assert y[0, codes.index("amered")] == 1.0
    assert first.secondary and y[0, codes.index(first.secondary[0])] == 0.5
    assert set(np.unique(y)) <= {0.0, 0.5, 1.0}
    assert make_targets(clips, codes, 1.0)[0, codes.index(first.secondary[0])] == 1.0


def test_problems_are_reported_with_file_names(clips_and_problems, tmp_path, tiny_data):
    clips, problems, _, _ = clips_and_problems
    cache = AudioCache(tmp_path / "cache", RATE)
    usable = cache.prepare([c.path for c in clips], problems)
    assert problems.counts() == {"missing_file": 1, "unknown_label": 2, "unreadable_audio": 1}
    assert any(f.endswith("gone.ogg") for f in problems.files("missing_file"))
    assert any(f.endswith("zzznew/x.wav") for f in problems.files("unknown_label"))
    assert any(f.endswith("broken.wav") for f in problems.files("unreadable_audio"))
    assert usable.count(False) == 1 and len(usable) == sum(n for _, n in SPECIES.values()) + 1
    with open(problems.save(tmp_path / "problems.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {"kind", "file", "detail"} <= set(rows[0])


def test_bad_csv_names_the_file(tmp_path, tiny_data):
    bad = tmp_path / "meta.csv"
    bad.write_text("label,file\nx,y\n")
    with pytest.raises(ValueError, match=r"meta\.csv.*primary_label"):
        read_metadata(bad, tiny_data / "train_audio", ProblemReport())
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_metadata(tmp_path / "nope.csv", tiny_data / "train_audio", ProblemReport())


def test_cache_hit_in_second_epoch(clips_and_problems, tmp_path):
    clips = [c for c in clips_and_problems[0] if not c.path.name.startswith("broken")]
    cache = AudioCache(tmp_path / "cache", RATE)
    assert all(cache.prepare([c.path for c in clips], ProblemReport()))
    assert (cache.misses, cache.hits) == (len(clips), 0)
    ds = ClipDataset(clips, np.zeros((len(clips), 1), np.float32), cache, 5 * RATE)
    for epoch in (1, 2):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            ds[i]
    assert cache.misses == len(clips) and cache.hits == 2 * len(clips)  # no decoding after the first pass
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == len(clips)
    # a changed file is a new key
    os.utime(clips[0].path, ns=(1, 1))
    assert not cache.path_for(clips[0].path).is_file()


def test_crops_random_deterministic_and_padded(clips_and_problems, tmp_path):
    x = np.arange(10, dtype=np.float32)
    assert np.array_equal(crop(x, 4, None), x[:4])
    short = crop(x[:3], 6, np.random.default_rng(0))
    assert short.shape == (6,) and short.sum() == 3 and np.count_nonzero(short == 0) >= 3
    clips = [c for c in clips_and_problems[0] if not c.path.name.startswith("broken")]
    cache = AudioCache(tmp_path / "c", RATE)
    ds = ClipDataset(clips, make_targets(clips, sorted(SPECIES), 0.5), cache, 2 * RATE, seed=3)
    a, _ = ds[0]
    assert a.shape == (2 * RATE,) and np.array_equal(a.numpy(), ds[0][0].numpy())
    ds.set_epoch(1)
    assert not np.array_equal(a.numpy(), ds[0][0].numpy())  # a new crop each epoch


def test_holdout_split_holds_out_every_species_and_splits_a_single_clip_in_time(clips_and_problems, tmp_path):
    clips = [c for c in clips_and_problems[0] if not c.path.name.startswith("broken")]
    cache = AudioCache(tmp_path / "c", RATE)
    train, val = holdout_split(clips, 0.34, seed=0, cache=cache)
    val_labels = Counter(c.primary for c in val)
    # max(1, round(n * 0.34)) whole clips: amered 6 -> 2, bkcchi 4 -> 1, comrav 3 -> 1; houspa's one clip split
    assert (val_labels["amered"], val_labels["bkcchi"], val_labels["comrav"], val_labels["houspa"]) == (2, 1, 1, 1)
    whole = [c for c in train + val if c.span is None]
    assert sorted(str(c.path) for c in whole) == sorted(str(c.path) for c in clips if c.primary != "houspa")
    (t,), (v,) = [c for c in train if c.primary == "houspa"], [c for c in val if c.primary == "houspa"]
    n = len(cache.load(t.path))
    assert t.span[0] == 0.0 and t.span[1] == v.span[0] and v.span[1] == pytest.approx(n / RATE)
    assert 0.3 * n / RATE < t.span[1] < 0.95 * n / RATE  # the held-out end is a real part of the clip
    # a training crop of the split clip never reaches into the held-out end
    held = cache.load(v.path)[int(round(v.span[0] * RATE)):]
    ds = ClipDataset([t], np.zeros((1, 1), np.float32), cache, RATE, seed=0)
    for epoch in range(20):
        ds.set_epoch(epoch)
        crop_ = ds[0][0].numpy()
        assert len(t.samples(cache)) == int(round(t.span[1] * RATE))
        assert not any(np.array_equal(crop_[:64], held[i:i + 64]) for i in range(0, len(held) - 64, 97))
    assert holdout_split(clips, 0.34, seed=0, cache=cache) == (train, val)  # deterministic
    assert holdout_split(clips, 0.0, seed=0, cache=cache) == (clips, [])


def test_sampling_weights_and_rank_sharding(clips_and_problems):
    clips = clips_and_problems[0]
    counts = Counter(c.primary for c in clips)
    w = sampling_weights(clips, 0.5)
    raw = np.array([counts[c.primary] ** -0.5 for c in clips])
    assert np.allclose(w, raw / raw.sum())
    assert np.allclose(sampling_weights(clips, 0.0), 1 / len(clips))
    # a rare species' clip is drawn more often than a common one's
    assert w[[c.primary for c in clips].index("houspa")] > w[0]
    single = list(WeightedRankSampler(w, 20, seed=1))
    ranks = [list(WeightedRankSampler(w, 20, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 10
    assert sorted(ranks[0] + ranks[1]) == sorted(single)
    s = WeightedRankSampler(w, 20, seed=1)
    s.set_epoch(2)
    assert list(s) != single


def late_call_clip(path, seconds: float = 20.0, call_s: tuple[float, float] = (17.0, 20.0)) -> Clip:
    """A clip that is faint noise except for a 3 kHz call in ``call_s``."""
    rng = np.random.default_rng(0)
    x = 0.01 * rng.standard_normal(int(seconds * RATE))
    a, b = int(call_s[0] * RATE), int(call_s[1] * RATE)
    x[a:b] += call(3000.0, (b - a) / RATE, RATE, rng)
    sf.write(path, x.astype(np.float32), RATE, subtype="FLOAT")
    return Clip(path=path, primary="late")


def crop_starts(ds: ClipDataset, epochs: int = 50) -> list[int]:
    """Where (in the file) each epoch's crop of item 0 starts."""
    audio = np.asarray(ds.cache.load(ds.clips[0].path))
    starts = []
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        window = ds[0][0].numpy()
        assert np.array_equal(window, ds[0][0].numpy())  # deterministic per (seed, epoch, index)
        (start,) = [i for i in np.flatnonzero(audio == window[0]) if np.array_equal(audio[i : i + len(window)], window)]
        starts.append(int(start))
    return starts


def test_training_crops_hold_a_call_at_the_end_of_a_long_clip(tmp_path, monkeypatch):
    clip = late_call_clip(tmp_path / "late.wav")
    cache = AudioCache(tmp_path / "cache", RATE)
    window, call_start = 5 * RATE, 17 * RATE

    def share_with_call(p: float, clip: Clip = clip) -> float:
        ds = ClipDataset([clip], np.ones((1, 1), np.float32), cache, window, seed=0, call_crop_p=p)
        return float(np.mean([s + window > call_start for s in crop_starts(ds)]))

    default = TrainConfig.model_fields["call_crop_p"].default
    assert share_with_call(default) >= 0.8
    assert share_with_call(1.0) == 1.0
    assert share_with_call(0.0) <= 0.4  # uniform crops: about 3 s of 15 s of starts reach the call
    # computed once, kept next to the decoded audio, read back by a new cache
    (stored,) = (tmp_path / "cache").rglob("*.callenergy*.npy")
    assert stored.name.startswith(cache.path_for(clip.path).stem)
    monkeypatch.setattr("training.data.call_energy", lambda *a, **k: pytest.fail("computed again"))
    assert np.array_equal(AudioCache(tmp_path / "cache", RATE).call_energy(clip.path), np.load(stored))


def test_call_crops_stay_inside_the_span_and_short_clips_are_cropped_as_before(tmp_path):
    clip = late_call_clip(tmp_path / "late.wav")
    cache = AudioCache(tmp_path / "cache", RATE)
    window = 5 * RATE
    # the training part of a split clip (the call is beyond it): never a crop outside [0, 12 s)
    head = Clip(path=clip.path, primary="late", span=(0.0, 12.0))
    ds = ClipDataset([head], np.ones((1, 1), np.float32), cache, window, seed=1, call_crop_p=1.0)
    assert all(0 <= s <= 7 * RATE for s in crop_starts(ds))
    tail = Clip(path=clip.path, primary="late", span=(10.0, 20.0))
    ds = ClipDataset([tail], np.ones((1, 1), np.float32), cache, window, seed=1, call_crop_p=1.0)
    starts = crop_starts(ds)
    assert all(10 * RATE <= s <= 15 * RATE for s in starts) and all(s + window > 17 * RATE for s in starts)
    # a clip no longer than the window: today's padded crop, draw for draw
    short = late_call_clip(tmp_path / "short.wav", seconds=3.0, call_s=(1.0, 2.0))
    ds = ClipDataset([short], np.ones((1, 1), np.float32), cache, window, seed=2, call_crop_p=0.9)
    for epoch in range(5):
        ds.set_epoch(epoch)
        expected = crop(cache.load(short.path), window, np.random.default_rng((2, epoch, 0)))
        assert np.array_equal(ds[0][0].numpy(), expected)
    assert len(call_energy(np.zeros(100, np.float32), RATE)) == 0  # shorter than a frame: nothing to pick from
