"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.models import make_store
from tests.utils.server import Server


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
