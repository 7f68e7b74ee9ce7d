"""The same bad file gets the same error code from the service and from ``soundscape analyze``.

Table-driven over the fuzz corpus (:mod:`tests.reliability.payloads`): its named extremes and its seeds cut,
damaged and spliced at fixed places. Both entry points read through the one reader (``AudioStream``), so
the outcome must be equal file by file: both decode it, or both refuse it with the same code. Only the
service's own limits differ by design (upload bytes, duration), so the corpus stays under them.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from soundscape.analyze import AnalyzeSettings, run_analysis

from .conftest import MAX_DURATION_S, MAX_UPLOAD_BYTES
from .payloads import SEEDS, extremes


def corpus() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    files = {k: v for k, v in extremes().items() if k not in ("two_hours_declared", "four_gb_declared")}
    for name, data in SEEDS.items():
        for fraction in (0.05, 0.5, 0.97):
            files[f"{name}-cut{int(fraction * 100)}"] = data[: int(len(data) * fraction)]
        flipped = bytearray(data)
        flipped[len(data) // 2 : len(data) // 2 + 64] = rng.bytes(64)
        files[f"{name}-damaged"] = bytes(flipped)
        header = bytearray(data)
        header[8:24] = rng.bytes(16)
        files[f"{name}-bad-header"] = bytes(header)
        at = len(data) // 3
        files[f"{name}-spliced"] = data[:at] + rng.bytes(300) + data[at:]
    assert all(len(v) < MAX_UPLOAD_BYTES for v in files.values())
    return files


@pytest.fixture(scope="module")
def analyze_codes(tmp_path_factory, fuzz_server) -> dict[str, str]:
    """Outcome per file of one ``soundscape analyze`` run over the corpus (same model as the server)."""
    folder = tmp_path_factory.mktemp("codes-in")
    for name, data in corpus().items():
        (folder / f"{name}.wav").write_bytes(data)
    out = tmp_path_factory.mktemp("codes-out")
    summary = run_analysis(AnalyzeSettings(inputs=[str(folder)], out=out, store=fuzz_server.store, workers=2,
                                           formats=["birdclef"]), progress=False)
    assert summary["files"]["found"] == len(corpus())
    with open(out / "failures.csv", newline="") as f:
        failed = {r["path"].rsplit("/", 1)[-1][: -len(".wav")]: r["error_code"] for r in csv.DictReader(f)}
    return {name: failed.get(name, "ok") for name in corpus()}


@pytest.mark.parametrize("name", sorted(corpus()))
def test_service_and_analyze_agree(fuzz_server, analyze_codes, name):
    data = corpus()[name]
    r = fuzz_server.client.post("/v1/predict", files={"file": (f"{name}.wav", data, "application/octet-stream")})
    service = "ok" if r.status_code == 200 else r.json()["error"]
    assert r.status_code in (200, 400), r.text  # under every limit: decodes, or bad audio
    assert service == analyze_codes[name], (name, r.json())


def test_the_corpus_exercises_several_codes(analyze_codes):
    codes = set(analyze_codes.values())
    assert {"ok", "truncated_audio", "corrupt_audio", "not_audio", "empty_audio", "non_finite_samples"} <= codes
    assert MAX_DURATION_S >= 6  # the corpus's longest valid file
