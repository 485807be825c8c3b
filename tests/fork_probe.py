"""Run in a subprocess by test_caller_contexts.py: the registry in a child forked with C's
``fork``, as uWSGI forks its workers (no ``os.register_at_fork`` hook runs in them).

In a fresh interpreter of its own: a child forked that way while another thread wanted
the GIL would wait for that thread, which the child does not have, forever; the test
suite's process has many threads, this one only the batcher's (asleep).

``python -m tests.fork_probe MODE [pid]``, MODE ``plain`` or ``held`` (another thread
holds the registry's lock during the fork), ``held-reset`` (as ``held``, and the child
calls ``registry.reset()`` first, as a uWSGI worker's ``atexit`` or a settings change
does), or ``race`` (two threads of the child make
its first lookups: see ``race``); ``pid``: the registry checks pids, as it does where
memory cannot be wiped at fork. Prints one JSON line: whether the child got a handle of
its own, and whether it answered.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
import time
from typing import Any

import django
from django.conf import settings


def main(mode: str, check: str) -> None:
    settings.configure(
        INSTALLED_APPS=["tfbatch_django"],
        TFBATCH={"MODELS": {"double": {"RUNNER": "tests.fakes.double_runner", "MAX_BATCH_SIZE": 8}}},
    )
    django.setup()
    import numpy as np

    from tfbatch_django import forks, predict_sync
    from tfbatch_django.registry import registry

    if check == "pid":
        forks._WIPEONFORK = None
        registry._unforked = forks.ForkFlag()
    if mode == "race":
        print(json.dumps(race(registry)))
        return
    x = np.ones((1, 3), np.float32)
    assert predict_sync("double", x).tolist() == [[2, 2, 2]]
    parent_handle = registry.get("double")
    held, release = threading.Event(), threading.Event()
    holder = None
    if mode in ("held", "held-reset"):

        def hold() -> None:
            with registry._lock:
                held.set()
                release.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(10)
    read_fd, write_fd = os.pipe()
    pid = ctypes.PyDLL(None).fork()  # PyDLL: the GIL stays held across the call
    if pid == 0:  # no PyOS_AfterFork_Child, so no hooks ran
        status = 1
        try:
            os.close(read_fd)
            if mode == "held-reset":
                registry.reset()
            handle = registry.get("double")
            # Its own batcher, with threads of its own: the answer comes.
            answer = predict_sync("double", x, timeout=10).tolist()
            os.write(write_fd, json.dumps({"own": handle is not parent_handle, "answer": answer}).encode())
            status = 0
        finally:
            os._exit(status)
    release.set()
    if holder is not None:
        holder.join()
    os.close(write_fd)
    status = reap(pid, poll=0.01)
    if status is None:
        print(json.dumps({"hung": True}))
        return
    with os.fdopen(read_fd) as pipe:
        report = json.loads(pipe.read() or "{}")
    report["status"] = os.waitstatus_to_exitcode(status)
    report["parent_kept"] = registry.get("double") is parent_handle
    print(json.dumps(report))


def reap(pid: int, limit: float = 20.0, poll: float = 0.01) -> int | None:
    """The child's wait status, or None if it still ran after ``limit`` seconds (hung:
    killed, then reaped)."""
    end = time.monotonic() + limit
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < end:
        time.sleep(poll)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        return None
    return done[1]


def race(registry: Any) -> dict[str, Any]:
    """Two threads of a child forked with C's ``fork`` make its first lookups: thread B's
    is stopped at each bytecode of the registry's lookup in turn (one child per bytecode,
    ``sys.settrace``), where thread A makes its whole first lookup. Both must get the
    child's one handle, never the parent's, wherever B was stopped.

    Where B holds one of the registry's locks, A would wait for it: B goes on without
    waiting for A. Returns how many stopping points were tried and where a thread got
    the parent's handle or another handle than the other thread's.
    """
    from tfbatch_django import registry as module

    step = "opcode" if _opcode_events() else "line"
    parent_handle = registry.get("double")
    cls = module.Registry
    codes = {f.__code__ for f in (cls.get, cls.handles, cls._adopt, cls._forget)}
    wrong: list[int] = []
    hung: list[int] = []
    point = 0
    while True:
        read_fd, write_fd = os.pipe()
        pid = ctypes.PyDLL(None).fork()
        if pid == 0:
            status = 1
            try:
                os.close(read_fd)
                os.write(write_fd, json.dumps(_race_child(registry, parent_handle, codes, point, step)).encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write_fd)
        if reap(pid, poll=0.001) is None:
            hung.append(point)
            os.close(read_fd)
            point += 1
            continue
        with os.fdopen(read_fd) as pipe:
            report = json.loads(pipe.read() or "{}")
        if not report.get("stopped"):
            break  # B's lookup has fewer bytecodes than this: every point was tried
        if not report["right"]:
            wrong.append(point)
        point += 1
    return {
        "points": point,
        "step": step,
        "wrong": wrong,
        "hung": hung,
        "parent_kept": registry.get("double") is parent_handle,
    }


def _opcode_events() -> bool:
    """Whether this interpreter delivers ``opcode`` trace events to a frame that asks for
    them in its ``call`` event (3.11 does; 3.13.0 delivers only ``line`` events then):
    else the race stops thread B at each line, not each bytecode."""
    events: list[str] = []

    def local(frame: Any, event: str, arg: Any) -> Any:
        events.append(event)
        return local

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code is probe.__code__:
            frame.f_trace_opcodes = True
            return local
        return None

    def probe() -> int:
        return len(events)

    sys.settrace(trace)
    try:
        probe()
    finally:
        sys.settrace(None)
    return "opcode" in events


def _race_child(registry: Any, parent_handle: Any, codes: set[Any], point: int, step: str) -> dict[str, Any]:
    from tfbatch_django.registry import _ADOPTION_LOCKS

    got: dict[str, Any] = {}
    seen = 0
    threads: list[threading.Thread] = []

    def lookup(name: str) -> None:
        got[name] = registry.get("double")

    def stop_here(frame: Any, event: str, arg: Any) -> Any:
        nonlocal seen
        if event == step:
            if seen == point:
                other = threading.Thread(target=lookup, args=("a",))
                other.start()
                threads.append(other)
                locks = [registry._lock, _ADOPTION_LOCKS.get(os.getpid())]
                if not any(lock is not None and lock.locked() for lock in locks):
                    other.join(10)  # B holds no lock: A's whole lookup runs here
            seen += 1
        return stop_here

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code in codes:
            frame.f_trace_opcodes = True
            return stop_here
        return None

    def first() -> None:
        sys.settrace(trace)
        try:
            lookup("b")
        finally:
            sys.settrace(None)

    b = threading.Thread(target=first)
    b.start()
    b.join(10)
    for t in threads:
        t.join(10)
    mine = registry.get("double")
    right = got.get("a") is mine and got.get("b") is mine and mine is not parent_handle
    return {"stopped": bool(threads), "right": right}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "wiped byte")
