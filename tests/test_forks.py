"""forks.ForkFlag: a byte that any fork wipes, with Python's at-fork hooks or without.

The forks happen in a fresh interpreter of their own: a child forked with C's ``fork``
while another thread of the test process wanted the GIL would wait for that thread,
which the child does not have, forever.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tfbatch_django import forks
from tfbatch_django.forks import ForkFlag

ROOT = Path(__file__).resolve().parents[1]

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(os, "fork"), reason="Linux")

#: Prints what the byte reads: here, in a child of ``os.fork``, in a child of C's ``fork``
#: (as uWSGI forks: no Python hook runs), and in a child that armed its own copy.
PROBE = textwrap.dedent(
    """
    import ctypes, os
    from tfbatch_django.forks import ForkFlag

    def child(fork, then=None):
        pid = fork()
        if pid == 0:
            if then:
                then()
            os._exit(flag.byte[0])
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    flag = ForkFlag()
    before = flag.byte[0]
    flag.arm()
    print(flag.wipes, before, flag.byte[0], child(os.fork), child(ctypes.PyDLL(None).fork),
          child(os.fork, flag.arm), flag.byte[0])
    """
)


@linux_only
def test_an_armed_flag_reads_one_here_and_zero_in_a_child_forked_either_way():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    wipes, before, armed, os_fork, c_fork, rearmed, parent_after = out
    assert wipes == "True"
    assert (before, armed) == ("0", "1")
    assert (os_fork, c_fork) == ("0", "0"), "a child read the parent's byte"
    assert rearmed == "1"  # a child arms its own copy
    assert parent_after == "1"  # the parent's is untouched


def test_where_memory_cannot_be_wiped_the_flag_always_reads_zero(monkeypatch):
    """Then the registry compares pids on every lookup, as it did before the flag."""
    monkeypatch.setattr(forks, "_WIPEONFORK", None)
    flag = ForkFlag()
    flag.arm()
    assert not flag.wipes
    assert flag.byte[0] == 0


def test_a_kernel_that_refuses_the_advice_falls_back(monkeypatch):
    monkeypatch.setattr(forks, "_WIPEONFORK", 10_000)  # no such advice: EINVAL
    flag = ForkFlag()
    flag.arm()
    assert not flag.wipes and flag.byte[0] == 0
