"""Service test fixtures: the session-wide server (the ``make_server`` factory is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.utils.models import make_store
from tests.utils.server import ADMIN_TOKEN, Server, free_port

__all__ = ["ADMIN_TOKEN", "Server", "free_port"]


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    """The main server: one tiny model, admin token set, small limits so 413s are cheap to trigger."""
    tmp = tmp_path_factory.mktemp("main")
    make_store(tmp / "store", versions=1)
    srv = Server(tmp, tmp / "store", admin_token=ADMIN_TOKEN, max_upload_bytes=8_000_000, max_duration_s=120,
                 max_batch_files=4, spool_threshold_bytes=65536)
    yield srv
    srv.stop()
