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
