"""The README's first set-up command, on a fresh clone: it installs only what serving needs and serves.

A copy of the repository's files (what ``git clone`` of this working tree would give: tracked and untracked,
nothing ignored, so no ``.venv``) runs the first command of the README's "Set up" block, as written, with
``PORT`` set to a free port (the Makefile passes it to ``soundscape serve --port``). Acceptance: ``/readyz``
answers 200 within 90 s of the command starting, the new ``.venv`` is under 700 MB, and torch, torchaudio and
timm are not in it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.utils.server import free_port

ROOT = Path(__file__).resolve().parents[1]
READY_WITHIN_S = 90.0
MAX_ENV_MB = 700.0


def first_setup_command() -> str:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"^## Set up \(fresh machine\)\n\n```bash\n(.*?)^```", readme, re.M | re.S)
    assert block, "README: no bash block under 'Set up (fresh machine)'"
    return block[1].splitlines()[0].split("#", 1)[0].strip()


def fresh_clone(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def size_mb(path: Path) -> float:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


@pytest.mark.slow
def test_first_readme_command_serves_from_a_fresh_clone_light_and_fast(tmp_path):
    if shutil.which("make") is None or shutil.which("git") is None:
        pytest.skip("make and git are needed")
    command = first_setup_command()
    assert command == "make serve"
    clone = fresh_clone(tmp_path / "clone")
    port = free_port()
    venv_bin = str(ROOT / ".venv" / "bin")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOUNDSCAPE_", "VIRTUAL_ENV"))}
    env.update(PORT=str(port), PATH=os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin))
    log = (tmp_path / "make-serve.log").open("wb")
    t0 = time.monotonic()
    proc = subprocess.Popen(["bash", "-c", command], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        ready_s = None
        while time.monotonic() - t0 < 300 and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    ready_s = time.monotonic() - t0
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        output = (tmp_path / "make-serve.log").read_text(errors="replace")[-3000:]
        assert ready_s is not None, f"no /readyz 200 (exit {proc.poll()}):\n{output}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
    env_mb = size_mb(clone / ".venv")
    site = next((clone / ".venv" / "lib").glob("python3*/site-packages"))
    heavy = [name for name in ("torch", "torchaudio", "timm") if (site / name).exists()]
    print(f"fresh clone: /readyz 200 after {ready_s:.1f} s, .venv {env_mb:.0f} MB")
    assert not heavy, f"the serving install pulled {heavy}"
    assert ready_s < READY_WITHIN_S, f"{ready_s:.1f} s to /readyz"
    assert env_mb < MAX_ENV_MB, f".venv is {env_mb:.0f} MB"
