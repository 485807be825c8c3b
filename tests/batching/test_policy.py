"""The dispatch policy, with times injected: no clocks, no threads (except the last test)."""

from __future__ import annotations

import math
import threading

import pytest

from tests.batching.test_batcher import rows
from tests.fakes import GatedModel
from tfbatch_django.batching import BatchConfig, Batcher
from tfbatch_django.batching.policy import (
    MIN_PATIENCE,
    AdaptivePolicy,
    ArrivalTracker,
    DispatchPolicy,
    PeakTracker,
    QueueView,
    WakeRule,
    dispatch_delay,
)

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


# -- the policy object: one place that decides dispatch and wake-ups


def view(**changes: object) -> QueueView:
    base = {
        "now": 10.0,
        "queued_rows": 2,
        "queued_requests": 2,
        "oldest_submit": 9.999,
        "outstanding": 2,
        "running": 0,
        "closing": False,
    }
    return QueueView(**{**base, **changes})  # type: ignore[arg-type]


def adaptive(max_batch_size: int = 8, max_latency: float = 0.010, max_concurrent: int = 1) -> AdaptivePolicy:
    policy = AdaptivePolicy(max_batch_size, max_latency, max_concurrent)
    # Eight callers seen recently, arriving 1 ms apart; the last one 0.1 ms ago.
    policy.on_arrivals([9.9969, 9.9979, 9.9989, 9.9999], outstanding=8, now=9.9999)
    return policy


def test_policy_waits_for_callers_still_arriving():
    assert adaptive().next_dispatch(view()) == pytest.approx(0.004 - 0.0001, rel=1e-3)


def test_policy_sends_full_batches_and_drains_on_close():
    assert adaptive().next_dispatch(view(queued_rows=8)) == 0.0
    assert adaptive().next_dispatch(view(closing=True)) == 0.0
    assert adaptive().next_dispatch(view(outstanding=8, queued_requests=8)) == 0.0


def test_policy_assembles_at_most_one_full_batch_ahead_while_busy():
    policy = adaptive()
    assert policy.next_dispatch(view(running=1)) == math.inf
    assert policy.next_dispatch(view(running=1, queued_rows=8)) == 0.0
    assert policy.next_dispatch(view(running=2, queued_rows=8)) == math.inf
    assert policy.next_dispatch(view(running=1, closing=True)) == math.inf  # even closing waits its turn
    assert adaptive(max_concurrent=2).next_dispatch(view(running=1)) > 0.0  # a runner is free: normal rules


def test_policy_wake_rule_matches_what_would_change_its_mind():
    policy = adaptive()
    idle = policy.wake_rule(view(queued_rows=0, queued_requests=0, oldest_submit=None, outstanding=0), 11.0)
    assert idle.wakes(1, 1, None)  # the first arrival is news
    waiting = policy.wake_rule(view(outstanding=3), until=10.004)  # 1 in a batch, 2 queued, peak 8
    assert not waiting.wakes(3, 3, None)
    assert waiting.wakes(3, 7, None)  # with the one in a batch, every recent caller is here
    assert waiting.wakes(8, 3, None)  # a full batch
    assert waiting.wakes(3, 3, 10.001)  # a deadline before the planned wake-up
    assert not waiting.wakes(3, 3, 10.005)
    busy = policy.wake_rule(view(running=1), until=math.inf)
    assert not busy.wakes(7, 100, None)
    assert busy.wakes(8, 1, None)  # a full batch can be assembled ahead
    saturated = policy.wake_rule(view(running=2), until=12.0)
    assert not saturated.wakes(1000, 1000, None)
    assert saturated.wakes(1, 1, 11.0)


def test_a_new_policy_is_one_class():
    """A policy that only ever sends full batches: the scheduler and mailbox obey it alone."""

    class FullBatchesOnly(DispatchPolicy):
        def next_dispatch(self, view: QueueView) -> float:
            full = view.queued_rows >= self.max_batch_size and view.running < self.max_concurrent
            return 0.0 if full or (view.closing and not view.running) else math.inf

        def wake_rule(self, view: QueueView, until: float) -> WakeRule:
            return WakeRule(rows=self.max_batch_size, until=until)

    model = GatedModel()
    batcher = Batcher(model, BatchConfig(max_batch_size=4, warmup=False), policy=FullBatchesOnly(4, 0.0)).start()
    try:
        threads = []
        out: dict[int, float] = {}

        def call(i: int) -> None:
            out[i] = float(batcher.predict_sync(rows(i)).outputs["y"][0, 0])

        for i in range(8):
            threads.append(threading.Thread(target=call, args=(i,)))
            threads[-1].start()
        for t in threads:
            t.join(10)
        assert out == {i: 2.0 * i for i in range(8)}
        assert model.sizes == [4, 4]  # never a partial batch, however long the wait
    finally:
        batcher.close()
