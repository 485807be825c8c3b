"""Telling, for a few nanoseconds, whether this process was forked: whatever forked it.

A forked child inherits the parent's objects but not its threads, so the registry must
not hand it the parent's batchers. ``os.register_at_fork`` hooks see ``os.fork``, but
uWSGI forks its workers with C's ``fork`` and runs no Python hook (test_caller_contexts),
so the registry used to compare ``os.getpid()`` on every lookup: a system call, ~0.15 µs
and 4-6 % of the event loop's time per prediction with 1,024 callers (``perf`` on
bench_batcher's no-op rows). Linux can do the check in memory: a private page marked
``MADV_WIPEONFORK`` reads as zeros in every child, however it was forked (the mechanism
OpenSSL and glibc's ``arc4random`` use to reseed after a fork); reading a byte of it
costs ~15 ns here.
"""

from __future__ import annotations

import mmap
import sys

__all__ = ["ForkFlag"]

#: Linux's value where Python's ``mmap`` does not name it (before 3.12).
_WIPEONFORK = getattr(mmap, "MADV_WIPEONFORK", 18 if sys.platform.startswith("linux") else None)


def _wiped_on_fork() -> mmap.mmap | None:
    if _WIPEONFORK is None or not hasattr(mmap, "MAP_PRIVATE"):
        return None
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        page.madvise(_WIPEONFORK)
    except (OSError, ValueError, AttributeError):  # an older kernel, another OS
        return None
    return page


class ForkFlag:
    """A byte that reads 1 after ``arm()`` in this process and 0 in any process forked since.

    Where the OS cannot wipe memory at fork (not Linux, a kernel before 4.14), ``byte``
    always reads 0 and ``arm`` does nothing: the caller then checks the pid every time,
    as before. Read ``byte[0]`` on the hot path; when it reads 0, compare pids.
    """

    __slots__ = ("byte", "wipes")

    def __init__(self) -> None:
        page = _wiped_on_fork()
        self.wipes = page is not None
        self.byte: mmap.mmap | bytearray = page if page is not None else bytearray(1)

    def arm(self) -> None:
        """Read 1 from now on, in this process only."""
        if self.wipes:
            self.byte[0] = 1
