"""Streaming: windows across block boundaries equal those of the whole file; memory stays bounded."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import soundfile as sf

from model_store import ModelStore
from soundscape.analyze import AnalyzeSettings, run_analysis, stream_windows
from soundscape.audio import decode
from soundscape.audio.functional import frame_windows
from soundscape.inference import Engine

from .conftest import tone_noise


@pytest.mark.parametrize(("n", "block", "hop", "min_partial"), [
    (16000 * 23 + 77, 16000 * 7, 5.0, 2.5),   # partial last window kept
    (16000 * 21, 16000 * 3 + 11, 5.0, 2.5),   # partial window dropped (1 s < 2.5 s)
    (16000 * 30, 16000 * 5, 2.0, 2.5),        # overlapping windows, blocks on window edges
    (16000 * 3, 1000, 5.0, 2.5),              # shorter than one window: one padded window
    (16000 * 17, 16000 * 60, 1.5, 0.0),       # one block holds everything
])
def test_stream_windows_equal_frame_windows(n, block, hop, min_partial):
    x = np.random.default_rng(n).normal(size=n).astype(np.float32)
    blocks = (x[a : a + block] for a in range(0, n, block))
    got = list(stream_windows(blocks, 16000, 5.0, hop, min_partial))
    want, starts = frame_windows(x, 16000, 5.0, hop, min_partial)
    assert [s for s, _ in got] == list(starts)
    np.testing.assert_array_equal(np.stack([w for _, w in got]), want)


@pytest.mark.parametrize("kind", ["mel", "waveform"])
def test_small_blocks_and_overlap_match_the_whole_file(store_root, waveform_store_root, tmp_path, kind):
    store_root = waveform_store_root if kind == "waveform" else store_root
    path = tmp_path / "rec.wav"
    sf.write(path, tone_noise(41.3, 48000, 3), 48000)
    settings = AnalyzeSettings(inputs=[str(path)], out=tmp_path / "out", store=store_root, workers=1,
                               formats=["json"], hop_s=2.0, block_s=3.3, batch_size=5, threshold=None)
    run_analysis(settings, progress=False)
    import json

    got = json.loads((tmp_path / "out" / "rec.json").read_text())
    model = ModelStore(store_root).load("birds")
    pred = Engine(model).predict(decode(path, sample_rate=16000), hop_s=2.0)
    assert [w["start_s"] for w in got["windows"]] == list(pred.starts_s)
    np.testing.assert_allclose([list(w["probabilities"].values()) for w in got["windows"]], pred.probabilities,
                               atol=1e-6)


@pytest.mark.slow
def test_multi_hour_file_runs_in_bounded_memory(store_root, tmp_path):
    """2.5 h at 16 kHz: 576 MB decoded (float32); every process of the run stays far below that."""
    hours, sr = 2.5, 16000
    path = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", sr, 1, "PCM_16") as f:
        for _ in range(int(hours * 6)):  # 10-minute blocks
            f.write(rng.normal(0, 0.05, sr * 600).astype(np.float32))
    decoded_mb = hours * 3600 * sr * 4 / 2**20
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "soundscape.cli", "--log-level", "WARNING", "analyze", str(path),
                             "--out", str(out), "--store", str(store_root), "--workers", "1", "--format",
                             "birdclef", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [ps, *ps.children(recursive=True)]
            peak = max(peak, *(p.memory_info().rss for p in tree))
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.02)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    peak_mb = peak / 2**20
    assert peak_mb < min(250, decoded_mb / 2), f"peak RSS {peak_mb:.0f} MB for {decoded_mb:.0f} MB of audio"
    rows = (out / "long.submission.csv").read_text().splitlines()
    assert len(rows) == 1 + int(hours * 3600 / 5)
    assert rows[-1].startswith(f"long_{int(hours * 3600)},")
