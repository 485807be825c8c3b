"""forks.ForkFlag: a byte that any fork wipes, with Python's at-fork hooks or without."""

from __future__ import annotations

import ctypes
import os
import sys

import pytest

from tfbatch_django import forks
from tfbatch_django.forks import ForkFlag

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(os, "fork"), reason="Linux")


def _in_child(fork: object, flag: ForkFlag) -> int:
    """The byte as a child forked by ``fork`` reads it (its exit status)."""
    pid = fork()  # type: ignore[operator]
    if pid == 0:
        os._exit(flag.byte[0])
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status)
    return os.WEXITSTATUS(status)


@linux_only
def test_an_armed_flag_reads_one_here_and_zero_in_a_child_forked_either_way():
    flag = ForkFlag()
    assert flag.wipes
    assert flag.byte[0] == 0
    flag.arm()
    assert flag.byte[0] == 1
    assert _in_child(os.fork, flag) == 0
    # C's fork, as uWSGI forks its workers: no Python hook runs, the kernel wipes all the same.
    assert _in_child(ctypes.PyDLL(None).fork, flag) == 0
    assert flag.byte[0] == 1  # the parent's is untouched


@linux_only
def test_a_child_can_arm_its_own_copy():
    flag = ForkFlag()
    flag.arm()
    pid = os.fork()
    if pid == 0:
        flag.arm()
        os._exit(10 + flag.byte[0])
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 11


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
