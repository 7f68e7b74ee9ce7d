"""Where models are written and read: the user store (platformdirs or SOUNDSCAPE_STORE_PATH), the read-only
bundled store, the serving rule, and a package that imports where ``fcntl`` does not exist (Windows)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import app
import model_store
import soundscape
import training
from app.core.config import Settings
from model_store import ModelStore, StoreError, StoreErrorCode, bundled_store_path, serving_store_path, user_store_path
from model_store.locations import WRITE_BUNDLED_ENV
from soundscape.analyze.settings import AnalyzeSettings
from soundscape.cli import main
from tests.utils.models import tiny_card, tiny_frontend, write_tiny_onnx

REPO = Path(__file__).resolve().parents[1]


def publish(store: Path, tmp_path: Path, *, promote: bool = True) -> None:
    fe = tiny_frontend()
    ModelStore(store).register(tiny_card(fe), write_tiny_onnx(tmp_path / "m.onnx", fe, 4), promote=promote)


def test_user_store_is_the_env_path_else_the_user_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert user_store_path() == tmp_path / "data" / "soundscape" / "models"
    monkeypatch.setenv("SOUNDSCAPE_STORE_PATH", str(tmp_path / "mine"))
    assert user_store_path() == tmp_path / "mine"


def test_the_bundled_store_is_read_only(monkeypatch, tmp_path):
    store = ModelStore(bundled_store_path())
    for write in (lambda: publish(bundled_store_path(), tmp_path), lambda: store.promote("birds", 1),
                  lambda: store.rollback("birds"), lambda: store.cleanup("birds")):
        with pytest.raises(StoreError) as err:
            write()
        assert err.value.code == StoreErrorCode.READ_ONLY
    assert not list(bundled_store_path().rglob(".lock"))  # nothing written, not even a lock file
    monkeypatch.setenv(WRITE_BUNDLED_ENV, "1")  # maintainers rebuilding it
    assert store.cleanup("birds") == 0


def test_serving_reads_the_user_store_once_it_has_a_production_model(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert serving_store_path("birds") == bundled_store_path()
    assert Settings().store_path == bundled_store_path()
    assert AnalyzeSettings(inputs=["x.wav"], out=tmp_path).store == bundled_store_path()
    publish(user_store_path(), tmp_path, promote=False)
    assert serving_store_path("birds") == bundled_store_path()  # registered, not production
    ModelStore(user_store_path()).promote("birds", 1)
    assert serving_store_path("birds") == user_store_path() == Settings().store_path
    assert AnalyzeSettings(inputs=["x.wav"], out=tmp_path).store == user_store_path()
    assert Settings(model_name="other").store_path == bundled_store_path()  # per model name
    assert Settings(store_path=tmp_path / "given").store_path == tmp_path / "given"  # a given store is used as is


def test_writing_verbs_default_to_the_user_store_and_say_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SOUNDSCAPE_STORE_PATH", str(tmp_path / "user"))
    for verb in ("export", "retrain", "build-default-model"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        text = "".join(capsys.readouterr().out.split())  # argparse wraps long paths anywhere
        assert f"theuserstore,{tmp_path / 'user'}" in text and "read-only" in text, verb
    publish(tmp_path / "user", tmp_path)
    assert main(["models", "list"]) == 0
    assert "tiny" in capsys.readouterr().out  # the user store's model (it is production there)
    assert main(["models", "cleanup"]) == 0  # in the user store: the bundled one would refuse (read-only)
    assert main(["models", "cleanup", "--store", str(bundled_store_path())]) == 1
    assert "read_only_store" in capsys.readouterr().err


def test_every_module_imports_without_fcntl():
    """As on Windows: no module of the package imports a POSIX-only module at import time."""
    names = sorted({m.name for pkg in (app, model_store, soundscape, training)
                    for m in pkgutil.walk_packages(pkg.__path__, f"{pkg.__name__}.")})
    code = ("import importlib, sys\nsys.modules['fcntl'] = None\nfailed = []\n"
            f"for name in {names!r}:\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except ModuleNotFoundError as exc:\n"  # an extra that is not installed is not this test's business
            "        if exc.name == 'fcntl': failed.append((name, str(exc)))\n"
            "    except Exception as exc:\n        failed.append((name, repr(exc)))\n"
            "print(failed)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout[-2000:]
    assert len(names) > 50
