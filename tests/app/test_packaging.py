"""The serving install (what the Dockerfile runs): `pip install .` with no extras gives a working
`soundscape serve` and `import app`, and no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_pip_install_without_extras_serves_without_torch(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    # pip's cache is shared with the developer's, so a repeat run downloads nothing.
    install = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              str(ROOT)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert install.returncode == 0, install.stderr[-3000:]
    help_run = subprocess.run([str(venv / "bin" / "soundscape"), "serve", "--help"], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path)
    assert help_run.returncode == 0 and "--store" in help_run.stdout, help_run.stderr
    code = ("import sys, app, app.main, app.cli, app.ui; app.main.create_app(); "
            "assert (app.ui.STATIC_DIR / 'index.html').is_file() and (app.ui.STATIC_DIR / 'review.js').is_file(); "
            "assert (app.ui.DOCS_ASSETS / 'swagger-ui-bundle.js').is_file(); "
            "import model_store, pathlib; print(pathlib.Path(app.__file__).parent.parent); "
            "sys.exit(int('torch' in sys.modules))")
    check = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert str(venv) in check.stdout  # the installed copy, not this checkout
    torch = subprocess.run([str(py), "-c", "import torch"], capture_output=True, timeout=60, cwd=tmp_path)
    assert torch.returncode != 0
