"""Servers for the reliability tests: real ``soundscape serve`` processes on 127.0.0.1 (see tests/app/conftest.py).

Hypothesis runs under the ``reliability`` profile: a bounded number of examples, a per-example deadline,
no example database (the suite stays deterministic in CI and leaves no files behind).
"""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest
from hypothesis import HealthCheck, settings

from tests.utils.models import make_store
from tests.utils.server import ADMIN_TOKEN, Server

settings.register_profile(
    "reliability", max_examples=40, deadline=10_000, database=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Limits of the shared fuzz server: small, so the 413 paths are cheap to reach.
MAX_UPLOAD_BYTES = 4_000_000
MAX_DURATION_S = 120.0
SPOOL_BYTES = 65_536


def rss_mb(server: Server) -> float:
    """Resident memory of a server process, in MB."""
    return psutil.Process(server.proc.pid).memory_info().rss / 2**20


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory) -> Iterator[Server]:
    """One server per module with small limits and an admin token."""
    tmp = tmp_path_factory.mktemp("fuzz")
    make_store(tmp / "store", versions=1)
    srv = Server(tmp, tmp / "store", admin_token=ADMIN_TOKEN, max_upload_bytes=MAX_UPLOAD_BYTES,
                 max_duration_s=MAX_DURATION_S, spool_threshold_bytes=SPOOL_BYTES, max_batch_files=3)
    yield srv
    srv.stop()
