"""The dispatch rule, with times injected: no clocks, no threads."""

from __future__ import annotations

import pytest

from tfbatch_django.batching.policy import MIN_PATIENCE, ArrivalTracker, PeakTracker, dispatch_delay

BASE = {
    "queued_rows": 2,
    "max_batch_size": 8,
    "oldest_age": 0.001,
    "max_latency": 0.010,
    "outstanding": 2,
    "recent_peak": 8,
    "since_last_arrival": 0.0001,
    "arrival_gap": 0.001,
}


def delay(**changes: object) -> float:
    return dispatch_delay(**{**BASE, **changes})  # type: ignore[arg-type]


def test_waits_while_callers_are_still_arriving():
    # Patience is 4 gaps (4 ms) since the last arrival, and the latency budget allows it.
    assert delay() == pytest.approx(0.004 - 0.0001)


def test_full_batch_goes_now():
    assert delay(queued_rows=8) == 0.0
    assert delay(queued_rows=20) == 0.0


def test_latency_budget_spent_goes_now():
    assert delay(oldest_age=0.010) == 0.0
    # Never waits past the budget either.
    assert delay(oldest_age=0.009) == pytest.approx(0.001)


def test_every_recent_caller_waiting_goes_now():
    assert delay(outstanding=8) == 0.0
    assert delay(outstanding=1, recent_peak=1) == 0.0


def test_stream_that_stopped_goes_now():
    assert delay(since_last_arrival=0.004) == 0.0
    assert delay(arrival_gap=None) == 0.0


def test_patience_has_a_floor_for_bursts():
    assert delay(arrival_gap=0.0, since_last_arrival=0.0) == pytest.approx(MIN_PATIENCE)


def test_zero_max_latency_is_pure_eager():
    assert delay(max_latency=0.0) == 0.0


def test_arrival_tracker_averages_gaps_within_a_stream():
    t = ArrivalTracker(alpha=0.5)
    t.observe(1.000, max_gap=0.01)
    assert t.gap is None
    t.observe(1.002, max_gap=0.01)
    assert t.gap == pytest.approx(0.002)
    t.observe(1.006, max_gap=0.01)
    assert t.gap == pytest.approx(0.003)
    # A long silence starts a new stream: not averaged in.
    t.observe(5.0, max_gap=0.01)
    assert t.gap == pytest.approx(0.003)
    assert t.last == 5.0
    # Out of order (another thread's earlier timestamp): a near-zero gap.
    t.observe(4.999, max_gap=0.01)
    assert t.gap == pytest.approx(0.0015)
    assert t.last == 5.0


def test_peak_tracker_forgets_after_two_windows():
    p = PeakTracker(window=1.0)
    assert p.update(5, now=0.0) == 5
    assert p.update(2, now=0.5) == 5
    assert p.update(1, now=1.2) == 5  # previous window still counts
    assert p.update(1, now=2.3) == 1  # both windows rotated past the 5
    assert p.update(3, now=10.0) == 3  # after a long gap everything is forgotten
