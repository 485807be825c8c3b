"""Run in a subprocess by test_caller_contexts.py: the registry in a child forked with C's
``fork``, as uWSGI forks its workers (no ``os.register_at_fork`` hook runs in them).

In a fresh interpreter of its own: a child forked that way while another thread wanted
the GIL would wait for that thread, which the child does not have, forever; the test
suite's process has many threads, this one only the batcher's (asleep).

``python -m tests.fork_probe MODE [pid]``, MODE ``plain`` or ``held`` (another thread
holds the registry's lock during the fork); ``pid``: the registry checks pids, as it
does where memory cannot be wiped at fork. Prints one JSON line: whether the child got a
handle of its own, and whether it answered.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
import time

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
    x = np.ones((1, 3), np.float32)
    assert predict_sync("double", x).tolist() == [[2, 2, 2]]
    parent_handle = registry.get("double")
    held, release = threading.Event(), threading.Event()
    holder = None
    if mode == "held":

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
    end = time.monotonic() + 20
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < end:
        time.sleep(0.01)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        print(json.dumps({"hung": True}))
        return
    with os.fdopen(read_fd) as pipe:
        report = json.loads(pipe.read() or "{}")
    report["status"] = os.waitstatus_to_exitcode(done[1])
    report["parent_kept"] = registry.get("double") is parent_handle
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "wiped byte")
