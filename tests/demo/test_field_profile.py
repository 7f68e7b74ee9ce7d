"""The ``field`` profile of the demo data: SNR, propagation, label shift, unknown species, window rules, CLI."""

from __future__ import annotations

import ast
import csv
import dataclasses
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.stats

from soundscape.cli import main
from soundscape.demo import FIELD_SPECIES, PROFILES, generate_dataset
from soundscape.demo.encode import encode
from soundscape.demo.field import plan_field_soundscape, render_field_soundscape
from soundscape.propagation import band_power, band_snr_db, rt60_of_ir

FIELD = PROFILES["field"]
SNR_LO, SNR_HI = FIELD.snr_db
RT60_LO, RT60_HI = FIELD.rt60_s


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _labels_by_soundscape(root: Path) -> dict[str, list[set[str]]]:
    out: dict[str, list[set[str]]] = {}
    for r in _rows(root / "soundscape_labels.csv"):
        out.setdefault(r["soundscape_id"], []).append(set(r["birds"].split()))
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("field") / "tiny", seed=0, size="tiny", profile="field")


@pytest.fixture(scope="module")
def manifest(tiny: Path) -> dict:
    return json.loads((tiny / "dataset.json").read_text())


def _hi_over_mid_db(x: np.ndarray, sr: int) -> float:
    """Energy above 8 kHz relative to 2-4 kHz, dB."""
    return 10 * np.log10(band_power(x, sr, None, (8000.0, 0.45 * sr)) / band_power(x, sr, None, (2000.0, 4000.0)))


@pytest.fixture(scope="module")
def placed(manifest: dict) -> dict[str, Any]:
    """Re-render tiny's labelled soundscapes part by part and measure every placed call independently.

    SNR: the placed call against the noise bed alone, in 1-11 kHz, over the phrase spans that
    dataset.json records (not the generator's own mask).
    """
    calls: list[dict[str, Any]] = []
    shipped: list[bool] = []
    recomposed: list[float] = []
    for s in range(manifest["counts"]["soundscapes"]):
        scape = render_field_soundscape(0, s, size="tiny", keep_parts=True)
        sr = scape.plan.sample_rate
        # the parts are what was shipped: the encoded mix is the file, and the mix is bed + calls
        shipped.append(hashlib.sha256(encode(scape.mix, sr, "ogg")).hexdigest()
                       == manifest["files"][f"soundscapes/sc{s:04d}.ogg"])
        total = scape.bed.copy()
        for call in scape.calls:
            total[call.offset:call.offset + len(call.audio)] += call.audio
        recomposed.append(float(np.abs(scape.scale * total - scape.mix).max()))
        assert [c.event for c in scape.calls] == manifest["soundscapes"][f"sc{s:04d}"]["events"]
        for call in scape.calls:
            ev, m = call.event, len(call.audio)
            mask = np.zeros(m, dtype=bool)
            for a, b in ev["phrases"]:
                mask[max(int(round(a * sr)) - call.offset, 0):max(int(round(b * sr)) - call.offset, 0)] = True
            bed = scape.bed[call.offset:call.offset + m]
            calls.append({
                "event": ev, "sr": sr,
                "snr_db": band_snr_db(call.audio, bed, sr, mask),
                "rt60_s": rt60_of_ir(call.ir, sr),
                # high-band loss of the propagated call relative to the bout as sung (species-independent)
                "hi_loss_db": _hi_over_mid_db(call.dry, sr) - _hi_over_mid_db(call.audio, sr),
                "dry_hi_db": _hi_over_mid_db(call.dry, sr),
            })
    return {"calls": calls, "shipped": shipped, "recomposed": recomposed}


def test_placed_calls_are_at_their_band_snr_against_the_bed(placed: dict[str, Any]) -> None:
    assert all(placed["shipped"]), "the re-rendered parts must be the shipped soundscapes"
    assert max(placed["recomposed"]) < 1e-9
    calls = placed["calls"]
    assert len(calls) >= 15
    measured = np.array([c["snr_db"] for c in calls])
    recorded = np.array([c["event"]["snr_db"] for c in calls])
    assert measured.min() >= SNR_LO - 0.5 and measured.max() <= SNR_HI + 0.5, measured
    np.testing.assert_allclose(measured, recorded, atol=0.25)
    assert measured.min() < 0 and measured.max() > 6, "the SNRs must spread over the range"


def test_distance_tied_to_snr_and_reverberation_of_the_site(placed: dict[str, Any], manifest: dict) -> None:
    calls = placed["calls"]
    snr = np.array([c["event"]["snr_db"] for c in calls])
    dist = np.array([c["event"]["distance_m"] for c in calls])
    assert dist.min() >= 10 and dist.max() <= 300
    rule = 10 * 30 ** ((SNR_HI - snr) / (SNR_HI - SNR_LO))
    ratio = dist / rule
    assert ((ratio >= 0.85 - 1e-3) & (ratio <= 1.15 + 1e-3) | (dist == 10) | (dist == 300)).all(), ratio
    assert scipy.stats.spearmanr(snr, dist).statistic < -0.9, "quieter calls must be further away"
    for c in calls:  # DRR and low-pass follow distance
        ev = c["event"]
        assert ev["drr_db"] == pytest.approx(12 - 13.5 * np.log10(ev["distance_m"] / 10), abs=0.1)
        assert ev["lowpass_hz"] == pytest.approx(np.clip(20000 * np.sqrt(10 / ev["distance_m"]), 3500, 20000),
                                                  rel=0.01)
    # one RT60 per site, and the impulse responses the calls went through decay at that rate
    for sid, info in manifest["soundscapes"].items():
        assert RT60_LO <= info["rt60_s"] <= RT60_HI
        assert {ev["rt60_s"] for ev in info["events"]} == {info["rt60_s"]}, sid
    measured = np.array([c["rt60_s"] for c in calls])
    site = np.array([c["event"]["rt60_s"] for c in calls])
    np.testing.assert_allclose(measured, site, rtol=0.05)
    assert measured.min() >= 0.95 * RT60_LO and measured.max() <= 1.05 * RT60_HI


def test_lowpass_removes_high_band_energy_with_distance(placed: dict[str, Any]) -> None:
    calls = [c for c in placed["calls"] if c["dry_hi_db"] > -40]  # species with something above 8 kHz
    dist = np.array([c["event"]["distance_m"] for c in calls])
    loss = np.array([c["hi_loss_db"] for c in calls])
    near, far = loss[dist <= 30], loss[dist >= 150]
    assert len(near) >= 3 and len(far) >= 3
    assert far.min() > near.max() + 6, (near, far)
    assert scipy.stats.spearmanr(dist, loss).statistic > 0.7


def test_unknown_species_are_heard_but_never_labelled(tiny: Path, manifest: dict) -> None:
    unknown = set(manifest["unknown_species"])
    assert unknown == {"unklau", "unkwar", "unkfin"}
    taxonomy = {r["primary_label"] for r in _rows(tiny / "taxonomy.csv")}
    metadata = _rows(tiny / "train_metadata.csv")
    in_metadata = {r["primary_label"] for r in metadata} | {
        code for r in metadata for code in ast.literal_eval(r["secondary_labels"])}
    labelled = {b for r in _rows(tiny / "soundscape_labels.csv") for b in r["birds"].split()}
    assert not unknown & (taxonomy | in_metadata | labelled)
    assert not any(p.startswith(tuple(f"train_audio/{u}" for u in unknown)) for p in manifest["files"])
    events = [ev for info in manifest["soundscapes"].values() for ev in info["events"]]
    assert {ev["species"] for ev in events if not ev["labelled"]} == unknown, "every unknown species is heard"
    assert all(ev["species"] in taxonomy for ev in events if ev["labelled"])
    resembles = manifest["conditions"]["unknown_species"]
    assert set(resembles) == unknown and all(v["resembles"] in taxonomy for v in resembles.values())
    assert 1.05 <= resembles["unkfin"]["pitch_ratio"] <= 1.10


def test_long_tail_of_one_clip_species_and_similar_pairs(tiny: Path, manifest: dict) -> None:
    counts = Counter(r["primary_label"] for r in _rows(tiny / "train_metadata.csv"))
    one_clip = sorted(code for code, n in counts.items() if n == 1)
    assert one_clip == sorted(manifest["conditions"]["one_clip_species"]) and len(one_clip) == 3
    assert counts.most_common(1)[0] == ("silwhi", 6) and "palwhi" in one_clip  # the common/rare pair
    assert [s.code for s in FIELD_SPECIES][-1] == "palwhi"
    assert FIELD.sizes["small"].clips_per_species == (60, 50, 42, 35, 29, 24, 19, 15, 11, 7, 4, 1, 1, 1)
    pairs = {tuple(p["species"]): p["pitch_ratio"] for p in manifest["conditions"]["similar_pairs"]}
    assert pairs == {("silwhi", "palwhi"): 1.07, ("coptri", "emetri"): 1.06}
    emetri = {s.code: s for s in FIELD_SPECIES}["emetri"].phrase[0]
    assert (emetri.f_start, emetri.f_end, emetri.rate, emetri.depth) == (5512.0, 4028.0, 14.0, 0.03)


def test_every_species_is_labelled_somewhere_in_small(tiny: Path, manifest: dict) -> None:
    # the plan (drawn before any audio) of small's labelled soundscapes forces species s mod 14 into sc s
    small = FIELD.sizes["small"]
    plans = [plan_field_soundscape(0, s, size="small") for s in range(small.n_soundscapes)]
    assert [p.known[0] for p in plans] == [FIELD_SPECIES[s % 14].code for s in range(small.n_soundscapes)]
    one_clip = [s.code for s, n in zip(FIELD_SPECIES, small.clips_per_species, strict=True) if n == 1]
    assert set(one_clip) <= {p.known[0] for p in plans}
    # ... and a forced species is always placed and labelled (tiny, rendered): the plan is what was rendered
    labels = _labels_by_soundscape(tiny)
    for s in range(manifest["counts"]["soundscapes"]):
        plan = plan_field_soundscape(0, s, size="tiny")
        heard = {ev["species"] for ev in manifest["soundscapes"][f"sc{s:04d}"]["events"] if ev["labelled"]}
        assert heard <= set(plan.known)
        assert plan.known[0] in set().union(*labels[f"sc{s:04d}"])


def test_window_rules_at_most_4_species_and_a_quarter_nocall(tiny: Path, manifest: dict) -> None:
    for sid, windows in _labels_by_soundscape(tiny).items():
        assert len(windows) == 12
        assert max(len(w - {"nocall"}) for w in windows) <= 4, windows
        assert sum(w == {"nocall"} for w in windows) >= 3, windows
        q0, q1 = manifest["soundscapes"][sid]["quiet_s"]
        assert q1 - q0 in (15, 20)
        assert all(windows[w] == {"nocall"} for w in range(int(q0) // 5, int(q1) // 5))
        for ev in manifest["soundscapes"][sid]["events"]:
            assert not ev["labelled"] or all(b <= q0 or a >= q1 for a, b in ev["phrases"])
            assert 4.0 <= ev["bout_s"] <= 20.0 and ev["end_s"] - ev["start_s"] <= ev["bout_s"] + 0.01
    cond = manifest["conditions"]
    assert cond["max_species_per_window"] == 4 and cond["min_nocall_fraction"] == 0.25


def test_window_limit_redraws_or_gives_up_bouts() -> None:
    strict = dataclasses.replace(FIELD, max_species_per_window=1)
    scape = render_field_soundscape(0, 0, size="tiny", profile=strict)
    assert max(len(w.split()) for w in scape.labels) == 1
    assert scape.dropped > 0, "a limit of one species per window must cost some bouts"


def test_unlabelled_soundscapes_have_no_labels_or_events(tiny: Path, manifest: dict) -> None:
    files = sorted((tiny / "unlabelled").glob("*.ogg"))
    assert len(files) == FIELD.sizes["tiny"].n_unlabelled == manifest["counts"]["unlabelled"] == 4
    assert manifest["conditions"]["unlabelled"]["count"] == 4
    for f in files:
        assert manifest["files"][f"unlabelled/{f.name}"] == hashlib.sha256(f.read_bytes()).hexdigest()
    stems = {f.stem for f in files}
    rows = _rows(tiny / "soundscape_labels.csv")
    assert not stems & {r["soundscape_id"] for r in rows}
    assert not stems & set(manifest["soundscapes"])
    assert len(rows) == 12 * manifest["counts"]["soundscapes"]
    assert not any(stem in json.dumps(manifest["soundscapes"]) for stem in stems)


def test_events_record_the_acoustics(manifest: dict) -> None:
    assert manifest["profile"] == "field"
    for info in manifest["soundscapes"].values():
        for ev in info["events"]:
            assert {"snr_db", "distance_m", "lowpass_hz", "rt60_s", "drr_db"} <= set(ev)
    for key in ("snr_db", "distance_m", "lowpass_hz", "rt60_s", "drr_db", "bout_s", "species_prior",
                "max_species_per_window", "min_nocall_fraction", "unknown_species", "similar_pairs",
                "one_clip_species", "unlabelled"):
        assert key in manifest["conditions"], key
    assert manifest["conditions"]["snr_db"]["band_hz"] == [1000.0, 11000.0]
    assert manifest["conditions"]["species_prior"]["exponent"] == 0.2


def test_cli_field_profile_is_deterministic_and_seeded(tiny: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "again"
    assert main(["demo-data", str(out), "--profile", "field", "--size", "tiny", "--seed", "0"]) == 0
    assert "field" in capsys.readouterr().out
    assert _tree_hashes(out) == _tree_hashes(tiny), "the same seed must give byte-identical files"
    other = generate_dataset(tmp_path / "seed1", seed=1, size="tiny", profile="field")
    a, b = _tree_hashes(tiny), _tree_hashes(other)
    audio = [p for p in a if p.startswith(("soundscapes/", "unlabelled/")) and p in b]
    assert audio and all(a[p] != b[p] for p in audio)
    assert _rows(tiny / "soundscape_labels.csv") != _rows(other / "soundscape_labels.csv")


def test_cli_help_lists_profiles(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo-data", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--profile", "{clean,field}", "(default: clean)", "clean =", "field =", "unlabelled"):
        assert needle in text, needle


def test_bad_profile_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rough"):
        generate_dataset(tmp_path, profile="rough")
