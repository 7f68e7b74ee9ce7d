"""A real uvicorn process: ``soundscape serve`` on a free 127.0.0.1 port, driven with httpx.

Shared by the service, reliability and batch-analysis tests (fixtures in ``tests/conftest.py`` and
``tests/app/conftest.py``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ADMIN_TOKEN = "test-admin-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``soundscape serve`` subprocess; ``client`` talks to it."""

    def __init__(self, tmp: Path, store: Path, *, ready: bool = True, **settings: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.store = store
        self.log_path = tmp / f"server-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDSCAPE_")}
        env.update({"SOUNDSCAPE_STORE_PATH": str(store), "SOUNDSCAPE_INTRA_OP_THREADS": "1",
                    "SOUNDSCAPE_CPU_WORKERS": "2"})
        env.update({f"SOUNDSCAPE_{k.upper()}": str(v) for k, v in settings.items()})
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "soundscape.cli", "serve", "--port", str(self.port)],
                                     env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=tmp)
        self.client = httpx.Client(base_url=self.url, timeout=30)
        self._wait("/readyz" if ready else "/healthz")

    def _wait(self, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.client.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
