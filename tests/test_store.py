"""The model store: versions, cards, checksums, production pointer, crash safety and concurrency.

Real ONNX files (tests/utils/models.py) in real folders; crash tests SIGKILL a real registering process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import onnx
import pytest

from model_store import MODEL_FILE, POINTER_FILE, ModelStore, StoreError, StoreErrorCode, sha256_file
from tests.utils.models import make_store, tiny_card, tiny_frontend, write_tiny_onnx

REPO = Path(__file__).resolve().parents[1]


def test_register_gives_versions_1_2_3_with_card_and_readme(tmp_path):
    store = ModelStore(tmp_path / "store")
    fe = tiny_frontend()
    onnx_path = write_tiny_onnx(tmp_path / "m.onnx", fe, 4)
    cards = [store.register(tiny_card(fe), onnx_path) for _ in range(3)]
    assert [c.version for c in cards] == [1, 2, 3] and store.versions("birds") == [1, 2, 3]
    folder = store.version_dir("birds", 2)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "card.json", "model.onnx"]
    card = json.loads((folder / "card.json").read_text())
    assert card["version"] == 2 and card["sha256"] == sha256_file(folder / MODEL_FILE)
    assert "# birds v2" in (folder / "README.md").read_text()
    assert store.production("birds") is None
    with pytest.raises(StoreError) as err:
        store.load("birds")
    assert err.value.code == StoreErrorCode.NO_PRODUCTION
    model = store.load("birds", 3)
    onnx.checker.check_model(onnx.load_from_string(model.onnx_bytes))


def test_load_verifies_sha256(tmp_path):
    store = make_store(tmp_path / "store", versions=1)
    path = store.version_dir("birds", 1) / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # flip one bit
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as err:
        store.load("birds")
    assert err.value.code == StoreErrorCode.CHECKSUM and str(path) in err.value.message
    with pytest.raises(StoreError):
        store.promote("birds", 1)  # a version that does not verify cannot be promoted


def test_promote_rollback_history(tmp_path):
    store = make_store(tmp_path / "store", versions=3)  # each promoted in turn
    assert store.production("birds") == 3 and store.history("birds") == [1, 2, 3]
    store.promote("birds", 1)
    assert store.production("birds") == 1 and store.history("birds") == [2, 3, 1]
    assert store.rollback("birds") == 3 and store.rollback("birds") == 2
    assert store.load("birds").card.version == 2
    with pytest.raises(StoreError) as err:
        store.rollback("birds")
    assert err.value.code == StoreErrorCode.NO_HISTORY
    with pytest.raises(StoreError) as err:
        store.promote("birds", 9)
    assert err.value.code == StoreErrorCode.NOT_FOUND


def test_pointer_to_missing_version_is_an_error(tmp_path):
    store = make_store(tmp_path / "store", versions=2)
    (store.root / "birds" / POINTER_FILE).write_text(json.dumps({"version": 7, "history": [7]}))
    with pytest.raises(StoreError) as err:
        store.load("birds")
    assert err.value.code == StoreErrorCode.NOT_FOUND and "v7" in err.value.message
    (store.root / "birds" / POINTER_FILE).write_text("{not json")
    with pytest.raises(StoreError) as err:
        store.production("birds")
    assert err.value.code == StoreErrorCode.BAD_CARD


@pytest.mark.parametrize("name", ["", "Birds", "../evil", "a/b", "-x", "x" * 65, "sp ace"])
def test_bad_model_names_are_refused(tmp_path, name):
    store = ModelStore(tmp_path / "store")
    with pytest.raises(StoreError) as err:
        store.versions(name)
    assert err.value.code == StoreErrorCode.BAD_NAME
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


REGISTER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    import shutil
    from model_store import ModelStore
    from tests.utils.models import tiny_card, tiny_frontend
    slow = float(sys.argv[3])
    real_copy = shutil.copyfile
    def slow_copy(src, dst, *a, **k):  # copy in 64 KiB steps so a kill lands mid-copy
        with open(src, "rb") as f, open(dst, "wb") as g:
            while block := f.read(1 << 16):
                g.write(block); g.flush(); time.sleep(slow)
        return dst
    if slow:
        shutil.copyfile = slow_copy
    card = ModelStore(sys.argv[1]).register(tiny_card(tiny_frontend()), sys.argv[2], promote=True)
    print(card.version, flush=True)
""")


@pytest.fixture
def big_onnx(tmp_path) -> Path:
    """A ~8 MB ONNX file: the tiny model with a large unused initializer."""
    import numpy as np
    from onnx import numpy_helper

    path = write_tiny_onnx(tmp_path / "big.onnx", tiny_frontend(), 4)
    model = onnx.load(path)
    model.graph.initializer.append(numpy_helper.from_array(np.ones(2_000_000, np.float32), "padding"))
    onnx.save(model, path)
    return path


def _script(tmp_path: Path) -> Path:
    script = tmp_path / "register.py"
    script.write_text(REGISTER.format(repo=str(REPO)))
    return script


@pytest.mark.parametrize("kill_after_s", [0.05, 0.3, 0.8])
def test_sigkill_mid_registration_leaves_no_half_version(tmp_path, big_onnx, kill_after_s):
    store = make_store(tmp_path / "store", versions=1)
    before = (store.root / "birds" / POINTER_FILE).read_bytes()
    proc = subprocess.Popen([sys.executable, str(_script(tmp_path)), str(store.root), str(big_onnx), "0.01"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Wait until the copy has started, then kill at a different point each time.
    deadline = time.monotonic() + 30
    while not list((store.root / "birds").glob(".incoming-*/model.onnx")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
        time.sleep(0.005)
    time.sleep(kill_after_s)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert store.versions("birds") == [1]  # no half version visible
    assert (store.root / "birds" / POINTER_FILE).read_bytes() == before
    assert store.load("birds").card.version == 1
    assert store.cleanup("birds") == 1 and not list((store.root / "birds").glob(".incoming-*"))
    assert store.register(tiny_card(tiny_frontend()), big_onnx).version == 2  # the store still works


def test_concurrent_registrations_get_distinct_versions(tmp_path):
    onnx_path = write_tiny_onnx(tmp_path / "m.onnx", tiny_frontend(), 4)
    root = tmp_path / "store"
    script = _script(tmp_path)
    procs = [subprocess.Popen([sys.executable, str(script), str(root), str(onnx_path), "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1].decode()[-500:] for o in outs]
    versions = sorted(int(o[0]) for o in outs)
    store = ModelStore(root)
    assert versions == [1, 2, 3, 4, 5, 6] == store.versions("birds")
    for v in versions:
        assert store.load("birds", v).card.version == v
    assert store.production("birds") in versions and sorted(store.history("birds")) == versions
