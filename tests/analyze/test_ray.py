"""The Ray engine (a local Ray with 2 CPUs) writes exactly what the local engine writes."""

from __future__ import annotations

import pytest

from soundscape.analyze import AnalyzeSettings, run_analysis

from .conftest import output_files

FORMATS = ["csv", "parquet", "birdclef", "raven", "audacity", "json"]


@pytest.mark.slow
def test_ray_engine_equals_local_engine(store_root, recordings, tmp_path):
    common = dict(inputs=[str(recordings)], store=store_root, workers=2, formats=FORMATS, embeddings=True,
                  threshold=0.3)
    local = run_analysis(AnalyzeSettings(out=tmp_path / "local", **common), progress=False)
    ray = run_analysis(AnalyzeSettings(out=tmp_path / "ray", engine="ray", num_cpus=2, **common), progress=False)
    assert ray["files"] == local["files"]
    assert ray["detections_per_species"] == local["detections_per_species"]
    local_files, ray_files = output_files(tmp_path / "local"), output_files(tmp_path / "ray")
    assert sorted(ray_files) == sorted(local_files)
    assert len(local_files) == 3 * 7 + 2  # 3 files x (6 formats + embeddings), failures.csv, submission.csv
    for name, data in local_files.items():
        assert ray_files[name] == data, name

    again = run_analysis(AnalyzeSettings(out=tmp_path / "ray", engine="ray", num_cpus=2, **common),
                         progress=False)
    assert again["files"]["skipped_finished"] == 3  # the same journal semantics
