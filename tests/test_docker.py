"""``make docker-check``: the Dockerfile builds with podman and its image serves a prediction.

Containers cannot be started in this sandbox, so ``scripts/docker_check.py`` runs the built image's ``CMD`` as
its ``USER`` in a chroot of the image and drives it over HTTP (``/readyz``, ``/v1/predict``, the server's uid,
no torch, the size). Skipped, with the reason, where podman is missing or this is not root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from model_store import ModelStore, default_store_path

ROOT = Path(__file__).resolve().parents[1]
MISSING_TOOL = 3  # scripts/docker_check.py's exit code when podman/debootstrap/root is missing


@pytest.mark.slow
def test_make_docker_check_builds_the_image_and_serves_a_prediction(tmp_path):
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (Debian: apt-get install -y podman debootstrap): the image is not built")
    if os.geteuid() != 0:
        pytest.skip("running the image's CMD in a chroot of the image needs root")
    report = tmp_path / "report.json"
    run = subprocess.run(["make", "-s", "docker-check", f"DOCKER_CHECK_ARGS=--report {report} --image "
                          "soundscape:test --log-dir " + str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=3600)
    if run.returncode == MISSING_TOOL:
        pytest.skip(f"docker check cannot run here: {run.stderr.strip().splitlines()[-1]}")
    assert run.returncode == 0, run.stderr[-4000:]
    doc = json.loads(report.read_text())
    assert doc["ok"] and doc["ready_s"] < 60
    bundled = ModelStore(default_store_path()).production("birds")
    assert doc["predict"] == {"model": {"name": "birds", "version": bundled}, "windows": 2, "labels": 14}
    assert doc["config"]["User"] == "soundscape" and doc["server_uid"] == 10001  # not root
    assert doc["torch_importable"] is False
    # what the Dockerfile adds to its FROM image (python:3.11-slim, or the debootstrap stand-in here)
    assert doc["added_mb"] < 320, doc
