"""The C allocator cap (the service's ``MALLOC_ARENA_MAX`` setting, training's ``malloc_arena_max``): applied on
glibc, the user's environment wins."""

from __future__ import annotations

import platform

import pytest

from soundscape.allocator import limit_malloc_arenas


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
def test_arenas_are_capped_on_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas(2) is True


def test_zero_and_the_users_environment_leave_the_allocator_alone(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas(0) is False
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas(2) is False


RELEASE_CHILD = """
import numpy as np
from soundscape.allocator import release_free_memory

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

blocks = [np.ones(16384, np.float32) for _ in range(3000)]  # 64 KiB each: the heap, not mmap
tail = np.ones(16384, np.float32)  # keeps the heap's top in use, so free() alone cannot shrink it
del blocks
before = rss_mb()
released = release_free_memory()
print(before, rss_mb(), released)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_free_heap_pages_below_the_top_go_back_to_the_system():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", RELEASE_CHILD], capture_output=True, text=True, check=True).stdout
    before, after, released = out.split()
    assert released == "True" and float(before) - float(after) > 150  # ~190 MB freed but kept, then given back
