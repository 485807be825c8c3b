"""The accounting invariant every batcher test ends with.

Every accepted request ends in exactly one outcome, on every path: ``requests ==
completed + errors + timeouts + cancelled`` (requests refused at submit, ``rejected``
and ``invalid``, are never counted in ``requests``), and once the batcher is idle its
outstanding count is back to 0 and its queue is empty.
"""

from __future__ import annotations

import time

from tfbatch_django.batching import Batcher


def settle(batcher: Batcher, timeout: float = 5.0) -> None:
    """Wait (bounded) until nothing is outstanding, queued or running."""
    end = time.monotonic() + timeout
    while batcher.outstanding or batcher.queue_depth() or batcher.snapshot()["in_flight_batches"]:
        if time.monotonic() > end:
            break
        time.sleep(0.001)


def assert_accounted(batcher: Batcher, timeout: float = 5.0) -> None:
    """Assert the invariant once the batcher has settled (see the module docstring)."""
    settle(batcher, timeout)
    snap = batcher.snapshot()
    ended = snap["completed"] + snap["errors"] + snap["timeouts"] + snap["cancelled"]
    assert snap["requests"] == ended, (
        f"{snap['requests']} accepted but {ended} ended "
        f"(completed {snap['completed']}, errors {snap['errors']}, timeouts {snap['timeouts']}, "
        f"cancelled {snap['cancelled']})"
    )
    assert batcher.outstanding == 0, f"{batcher.outstanding} requests still outstanding"
    assert snap["queue_depth"] == 0
    assert snap["in_flight_batches"] == 0
