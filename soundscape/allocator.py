"""The C allocator's arena cap and heap release (glibc), for the service and for training.

glibc gives every thread that meets contention its own malloc arena (up to 8 per core) and keeps what is freed
in each: with the decode, front-end and model threads of a busy server that is tens of MB of freed-but-kept
memory, and in training the batch-preparing thread's arena holds its own copy of the augmentation's buffers.
Capping the arenas (``mallopt(M_ARENA_MAX)``, what ``MALLOC_ARENA_MAX`` does when set before the process starts)
keeps the peak down at no measured cost in speed (README "Service", "Training speed and memory").

Between the phases of one process (a training round, the next round's data, export and scoring) what a phase freed
stays in the heap, counted in RSS, while the next phase's large buffers are mapped beside it:
:func:`release_free_memory` hands those pages back first.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys

__all__ = ["limit_malloc_arenas", "release_free_memory"]

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter


@functools.cache
def _glibc() -> ctypes.CDLL | None:  # find_library runs ldconfig: once per process
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_free_memory() -> bool:
    """Give the free pages of every malloc arena back to the system (``malloc_trim(0)``); returns whether any page
    was released (False off glibc)."""
    libc = _glibc()
    try:
        return bool(libc is not None and libc.malloc_trim(0))
    except AttributeError:  # a libc without malloc_trim (musl)
        return False


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` for threads started from now on; returns whether it was set.

    Nothing is done for ``arenas <= 0``, when ``MALLOC_ARENA_MAX`` is already in the environment (the user's
    choice wins), or off glibc.
    """
    libc = _glibc()
    if arenas <= 0 or "MALLOC_ARENA_MAX" in os.environ or libc is None:
        return False
    try:
        done = bool(libc.mallopt(M_ARENA_MAX, arenas))
    except AttributeError:  # not glibc (musl has no mallopt arenas)
        return False
    if done:
        log.info("malloc arenas capped at %d", arenas)
    return done
