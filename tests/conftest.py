"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.models import make_store
from tests.utils.server import Server

# The user store (model_store.locations) lives in the user data folder: tests (and the processes they start) get a
# fresh one, so a model a developer published never changes what the tests serve.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="soundscape-tests-data-")
os.environ.pop("SOUNDSCAPE_STORE_PATH", None)


@pytest.fixture()
def make_server(tmp_path) -> Iterator:
    """Factory for real servers, stopped at the end of the test.

    ``store=`` serves an existing store; otherwise one with ``versions`` tiny models is built
    (``versions=0``: an empty store). Other keywords become ``SOUNDSCAPE_*`` settings.
    """
    started: list[Server] = []

    def _make(*, store: Path | None = None, versions: int = 1, ready: bool = True, **settings: object) -> Server:
        if store is None:
            store = tmp_path / f"store{len(started)}"
            if versions:
                make_store(store, versions=versions)
        srv = Server(tmp_path, store, ready=ready, **settings)
        started.append(srv)
        return srv

    yield _make
    for srv in started:
        srv.stop()
