"""The Python API: ``soundscape.predict`` equals the service's JSON for the same file; ``soundscape.embed``.

Against a real ``soundscape serve`` of the bundled model and the demo soundscapes it was trained on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import soundscape
from model_store import ModelStore, default_store_path
from soundscape.demo import generate_dataset
from soundscape.options import UnknownSpeciesError
from tests.utils.server import Server

BUNDLED_VERSION = ModelStore(default_store_path()).production("birds")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def soundscapes(tmp_path_factory) -> list[Path]:
    demo = generate_dataset(tmp_path_factory.mktemp("api-demo"), seed=0, size="tiny")
    return sorted((demo / "soundscapes").glob("*.ogg"))


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Server:
    srv = Server(tmp_path_factory.mktemp("api-service"), default_store_path())
    yield srv
    srv.stop()


def served(service: Server, path: Path, **params) -> dict:
    r = service.client.post("/v1/predict", params=params, files={"file": (path.name, path.read_bytes())})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("params", [{}, {"hop_s": 2.5, "species": ["coptri", "Pale Whistler", "vibwar"]}])
def test_predict_equals_the_services_json_for_the_same_file(service, soundscapes, params):
    df = soundscape.predict(soundscapes[:2], **params)
    assert df.index.names == ["file", "start_time", "end_time"]
    assert df.attrs["model"] == {"name": "birds", "version": BUNDLED_VERSION}
    for path in soundscapes[:2]:
        doc = served(service, path, **params)
        mine = df.loc[str(path)]
        assert list(mine.columns) == list(doc["summary"])  # the service's column order (names resolved to codes)
        assert [(s, e) for s, e in mine.index] == [(w["start_s"], w["end_s"]) for w in doc["windows"]]
        # the JSON rounds to 6 decimals: equal to that precision
        np.testing.assert_allclose(mine.to_numpy(), [list(w["probabilities"].values()) for w in doc["windows"]],
                                   rtol=0, atol=5.01e-7)


def test_arrays_and_files_and_embeddings(soundscapes):
    samples, rate = sf.read(soundscapes[0], dtype="float32")
    from_file = soundscape.predict(soundscapes[0])
    from_array = soundscape.predict([samples, samples[: rate * 7]], sample_rate=rate)
    assert from_array.index.get_level_values("file").unique().tolist() == ["array_0", "array_1"]
    assert len(from_array.loc["array_1"]) == 1  # 7 s: one window (the 2-s tail is under the 2.5-s minimum)
    np.testing.assert_allclose(from_array.loc["array_0"].to_numpy(), from_file.to_numpy(), atol=2e-3)
    emb = soundscape.embed(str(soundscapes[0]))
    assert emb.shape == (12, 1280) and emb.index.equals(from_file.index)
    assert emb.dtypes.unique().tolist() == [np.float32]


def test_bad_options_are_refused_like_the_services(soundscapes, tmp_path):
    with pytest.raises(UnknownSpeciesError, match="dodo"):
        soundscape.predict(soundscapes[0], species=["dodo"])
    with pytest.raises(ValueError, match="hop_s"):
        soundscape.predict(soundscapes[0], hop_s=0.5)
    with pytest.raises(ValueError, match="sample_rate"):
        soundscape.predict(np.zeros(32000, np.float32))
    listed = tmp_path / "species.txt"
    listed.write_text("Copper Triller\n# comment\nvibwar\n")
    assert list(soundscape.predict(soundscapes[0], species_list=listed).columns) == ["coptri", "vibwar"]
    assert isinstance(soundscape.predict([]), pd.DataFrame)


def test_missing_extras_are_named_in_one_line(tmp_path):
    """Without pandas the API says to install [batch]; without torch a training verb says [train]."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('pandas', 'torch', 'pyarrow'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Block())\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    api = subprocess.run([sys.executable, "-c", "import soundscape; soundscape.predict([])"], env=env,
                         capture_output=True, text=True, cwd=tmp_path)
    assert api.returncode == 1 and "needs the [batch] extra" in api.stderr
    assert "pip install 'soundscape[batch]'" in api.stderr
    verb = subprocess.run([sys.executable, "-m", "soundscape.cli", "export", "runs/x/best.pt"], env=env,
                          capture_output=True, text=True, cwd=tmp_path)
    assert verb.returncode == 2, verb.stderr
    assert verb.stderr.strip().splitlines() == ["soundscape export needs the [train] extra (module 'torch' is not "
                                                "installed): pip install 'soundscape[train]'"]
