"""One process-wide batcher per model, whatever calls it.

Each test drives the registry's real batcher from a different caller context: the
contexts where an asyncio object bound to the first loop that touched it would break.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.test import override_settings

from tests.fakes import GatedModel, double_runner
from tfbatch_django import CallableRunner, predict, predict_detailed, predict_sync
from tfbatch_django.forks import ForkFlag
from tfbatch_django.registry import registry

GATED = GatedModel()


def gated_runner() -> GatedModel:
    return GATED


SETTINGS = {
    "MODELS": {
        "double": {"RUNNER": "tests.fakes.double_runner", "MAX_BATCH_SIZE": 8},
        "gated": {"RUNNER": "tests.test_caller_contexts.gated_runner", "MAX_BATCH_SIZE": 16, "WARMUP": False},
    }
}


@pytest.fixture(autouse=True)
def models():
    GATED.batches.clear()
    GATED.release()
    with override_settings(TFBATCH=SETTINGS):
        yield


def x(value: float) -> np.ndarray:
    return np.full((1, 3), value, np.float32)


def test_asyncio_run_twice_in_a_row():
    async def call(v: float) -> list[list[float]]:
        return (await predict("double", x(v))).tolist()

    assert asyncio.run(call(1)) == [[2, 2, 2]]
    batcher = registry.get("double").batcher
    assert asyncio.run(call(2)) == [[4, 4, 4]]  # a new loop, the same batcher
    assert registry.get("double").batcher is batcher


def test_async_to_sync_with_no_outer_loop():
    # Under WSGI every async_to_sync call runs a fresh event loop.
    for v in range(3):
        assert async_to_sync(predict)("double", x(v)).tolist() == [[2 * v] * 3]


def test_event_loops_in_several_threads_at_once():
    results: dict[int, list[list[float]]] = {}

    def worker(v: int) -> None:
        results[v] = asyncio.run(predict("double", x(v))).tolist()

    threads = [threading.Thread(target=worker, args=(v,)) for v in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {v: [[2 * v] * 3] for v in range(6)}


async def test_sync_to_async_thread_and_coroutines_share_one_batch():
    batcher = registry.get("gated").load()
    GATED.hold()
    first = asyncio.ensure_future(predict("gated", x(0)))
    await asyncio.to_thread(GATED.entered.wait, 5)
    from_thread = asyncio.ensure_future(sync_to_async(predict_sync, thread_sensitive=False)("gated", x(1)))
    from_loop = [asyncio.ensure_future(predict_detailed("gated", x(v))) for v in (2, 3)]
    for _ in range(20_000):  # bounded: ~20 s
        if batcher.snapshot()["requests"] >= 4:
            break
        await asyncio.sleep(0.001)
    else:
        raise AssertionError("the 4 requests never reached the batcher")
    GATED.release()
    await first
    assert (await from_thread)["y"].tolist() == [[2, 2, 2]]
    infos = [(await t).batch.size for t in from_loop]
    assert infos == [3, 3]  # the thread's row and both coroutines' rows rode together
    assert GATED.sizes == [1, 3]


def test_awaiting_from_a_loop_that_closes_early_does_not_break_the_batcher():
    GATED.hold()

    async def give_up() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(predict("gated", x(5)), 0.05)

    asyncio.run(give_up())  # that loop is closed now; its answer has nowhere to go
    GATED.release()
    assert predict_sync("gated", x(6))["y"].tolist() == [[12, 12, 12]]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_builds_its_own_batcher():
    assert predict_sync("double", x(1)).tolist() == [[2, 2, 2]]
    parent_batcher = registry.get("double").batcher
    assert parent_batcher is not None
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the parent's threads do not exist here
        status = 1
        try:
            os.close(read_fd)
            handle = registry.get("double")
            result = predict_sync("double", x(7)).tolist()
            batcher = registry.get("double").batcher
            fresh = batcher is not None and batcher.pid == os.getpid() and handle.batcher is batcher
            os.write(write_fd, repr((result, fresh)).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, report
    assert report == repr(([[14.0, 14.0, 14.0]], True))
    # The parent's batcher is untouched.
    assert registry.get("double").batcher is parent_batcher
    assert predict_sync("double", x(2)).tolist() == [[4, 4, 4]]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("check", ["wiped byte", "pid"])
@pytest.mark.parametrize("mode", ["plain", "held", "held-reset"])
def test_a_child_forked_without_pythons_fork_hooks_builds_batchers_of_its_own(mode, check):
    """uWSGI forks its workers with C's ``fork()`` and, unless ``--py-call-osafterfork``
    or ``--py-call-uwsgi-fork-hooks`` is set (both off by default), runs no
    ``os.register_at_fork`` hook in them. Such a child must not use the parent's
    batchers, whose threads it does not have: a coroutine's answer would never come.
    (Before this test, ``registry.get`` relied on the hook alone and returned them.)

    Both ways the registry tells (a byte the fork wipes, on Linux; the pid, where memory
    cannot be wiped), and both with the registry's lock free and held by another thread
    at the fork (``held``: the child inherits it locked, with nobody to release it; the
    child's first prediction used to wait on it forever; ``held-reset``: the child's
    first call is ``registry.reset()``, as a uWSGI worker's ``atexit`` or a settings
    change makes it, which still waited on that lock forever after ``get`` no longer
    did). In a fresh interpreter (``tests/fork_probe.py``): see there why."""
    out = fork_probe(mode, check)
    assert not out.get("hung"), "the child forked without Python's hooks hung"
    assert out["status"] == 0, out
    assert out["own"], "the child was handed the parent's handle (and its dead batcher)"
    assert out["answer"] == [[2.0, 2.0, 2.0]]
    assert out["parent_kept"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("check", ["wiped byte", "pid"])
def test_two_threads_making_the_first_lookups_of_a_child_forked_without_hooks_get_its_own_handle(check):
    """A uWSGI worker with threads: its first two lookups race to drop the parent's
    handles. One thread is stopped at each bytecode of the lookup in turn (a child per
    bytecode; per line on 3.13.0, whose tracer gets no opcode events here, which misses
    the old bug: it was within one line) while the other makes its whole first lookup;
    neither may get the parent's
    handle. ``handles()`` used to read the handles before the pid: a thread that read
    the parent's handles, then saw the pid the other thread had just adopted, returned
    them (10 of its 145 bytecodes)."""
    out = fork_probe("race", check)
    assert not out["hung"], out
    # The lookup was traced, bytecode by bytecode (line by line where the interpreter
    # delivers no opcode events to such a tracer: 3.13.0).
    assert out["points"] > (50 if out["step"] == "opcode" else 10), out
    assert out["wrong"] == [], "a thread of the child got the parent's handle (or another thread's)"
    assert out["parent_kept"]


def fork_probe(mode: str, check: str) -> dict[str, Any]:
    """``tests/fork_probe.py``'s report, run in a fresh interpreter (see there why)."""
    if check == "wiped byte" and not ForkFlag().wipes:
        pytest.skip("this OS cannot wipe memory at fork")
    out = subprocess.run(
        [sys.executable, "-m", "tests.fork_probe", mode, check],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


LOAD_GATE = threading.Event()
LOAD_TIMES: dict[str, float] = {}
TICKS_WHILE_LOADING = 100


def loop_gated_runner() -> CallableRunner:
    """A model whose load finishes only once the event loop has ticked (or after 10 s).

    Loaded on a thread of its own, as it must be, it finishes as soon as the ticker has
    seen the loop run meanwhile. Loaded on the loop's own thread, the loop cannot tick:
    the gate times out and the ticker sees one gap spanning the whole load.
    """
    LOAD_TIMES["start"] = time.perf_counter()
    LOAD_GATE.wait(10)
    LOAD_TIMES["end"] = time.perf_counter()
    return double_runner()


def test_model_load_does_not_block_the_event_loop():
    LOAD_GATE.clear()
    LOAD_TIMES.clear()
    ticks: list[float] = []

    async def main() -> list[list[float]]:
        stop = asyncio.Event()

        async def ticker() -> None:
            seen = 0
            for _ in range(100_000):  # bounded: ~1 ms each, so ~100 s at most
                if stop.is_set():
                    return
                now = time.perf_counter()
                ticks.append(now)
                seen += "start" in LOAD_TIMES and now > LOAD_TIMES["start"]
                if seen == TICKS_WHILE_LOADING:
                    LOAD_TIMES["gate"] = now
                    LOAD_GATE.set()
                await asyncio.sleep(0.001)

        task = asyncio.ensure_future(ticker())
        result = (await predict("loop_gated", x(3))).tolist()
        stop.set()
        await task
        return result

    settings = {"MODELS": {"loop_gated": {"RUNNER": "tests.test_caller_contexts.loop_gated_runner"}}}
    with override_settings(TFBATCH=settings):
        assert registry.get("loop_gated").batcher is None
        assert asyncio.run(main()) == [[6, 6, 6]]
    # The load, up to the moment the loop released it (or the gate timed out).
    start = LOAD_TIMES["start"]
    end = LOAD_TIMES.get("gate", LOAD_TIMES["end"])
    during = [t for t in ticks if start < t <= end]
    longest_gap = max(b - a for a, b in itertools.pairwise([start, *during, end]))
    report = f"{len(during)} ticks, longest gap {longest_gap * 1000:.1f} ms of a {(end - start) * 1000:.1f} ms load"
    # A load on the loop's thread: no tick at all, one gap as long as the load itself.
    assert len(during) == TICKS_WHILE_LOADING, report
    assert longest_gap < end - start, report
