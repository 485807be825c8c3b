"""The per-process publisher: what it writes, when history is due, stopping, forking."""

from __future__ import annotations

import os

import pytest
from django.test import override_settings

from tfbatch_django import predict_sync
from tfbatch_django.models import PublishedProcess, StatsSample
from tfbatch_django.monitoring.publisher import Publisher, publisher

from .workloads import GATED, wait_for

FAST = {**GATED, "STATS_PUBLISH_INTERVAL": 0.05, "STATS_STALE_AFTER": 1, "STATS_HISTORY_INTERVAL": 10}

pytestmark = pytest.mark.usefixtures("gated_settings")


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.django_db
def test_publish_upserts_one_row_per_process_with_a_window():
    p = Publisher()
    p.publish()
    predict_sync("gated", [[1, 2, 3], [4, 5, 6]])
    p.publish()
    row = PublishedProcess.objects.get()
    assert (row.key, row.pid, row.stopped_at) == (p.identity.key, os.getpid(), None)
    gated = row.stats["gated"]
    assert (gated["status"], gated["requests"], gated["rows"]) == ("ready", 1, 2)
    assert gated["window"]["counters"]["requests"] == 1  # since the previous publish
    Publisher().publish()
    assert PublishedProcess.objects.count() == 2  # another process, another row


@pytest.mark.django_db
def test_history_samples_are_written_when_due_and_hold_deltas():
    clock = Clock()
    p = Publisher(clock=clock)
    with override_settings(TFBATCH={**GATED, "STATS_PUBLISH_INTERVAL": 5, "STATS_HISTORY_INTERVAL": 60}):
        p.publish()  # the first publish samples at once
        predict_sync("gated", [[1, 2, 3]])
        clock.now += 5
        p.publish()
        assert StatsSample.objects.count() == 1
        clock.now += 52.5  # 60 s minus half a publish interval of slack
        p.publish()
    samples = list(StatsSample.objects.order_by("at"))
    assert [s.model for s in samples] == ["gated", "gated"]
    assert [s.data["counters"]["requests"] for s in samples] == [0, 1]
    assert samples[1].process == p.identity.key
    assert samples[1].seconds > 0


@pytest.mark.django_db
def test_publishing_off_means_no_thread():
    with override_settings(TFBATCH={**GATED, "STATS_PUBLISH_INTERVAL": None}):
        assert Publisher().start() is False


@pytest.mark.django_db(transaction=True)
def test_thread_publishes_until_stopped_and_then_marks_the_process_stopped():
    with override_settings(TFBATCH=FAST):
        p = Publisher()
        try:
            assert p.start() is True
            assert p.start() is True  # idempotent: still one thread
            first = wait_for(
                lambda: PublishedProcess.objects.filter(key=p.identity.key).values_list("last_seen", flat=True).first(),
                what="first publish",
            )
            wait_for(lambda: PublishedProcess.objects.get().last_seen > first, what="a later publish")
        finally:
            p.stop()  # a failure above must not leave a thread writing into later tests' database
        assert not p.running
        assert PublishedProcess.objects.get().stopped_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_forked_child_publishes_as_a_new_process():
    with override_settings(TFBATCH=FAST):
        assert publisher.start()
        try:
            parent_key = publisher.identity.key
            pid = os.fork()
            if pid == 0:  # the child: report through the exit status only
                ok = (
                    publisher.identity.pid == os.getpid() and publisher.identity.key != parent_key and publisher.running
                )
                os._exit(0 if ok else 1)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert publisher.identity.key == parent_key and publisher.running
        finally:
            publisher.stop()


@pytest.mark.django_db
def test_history_interval_sets_when_the_next_sample_is_due():
    clock = Clock()
    p = Publisher(clock=clock)
    with override_settings(TFBATCH={**GATED, "STATS_PUBLISH_INTERVAL": 5, "STATS_HISTORY_INTERVAL": 30}):
        p.publish()  # the first publish samples at once
        clock.now += 27.0  # not yet: 30 s less half a publish interval is 27.5 s
        p.publish()
        assert StatsSample.objects.count() == 1
        clock.now += 0.5
        p.publish()
        assert StatsSample.objects.count() == 2


@pytest.mark.django_db
def test_retention_hours_sets_what_history_is_deleted():
    from datetime import timedelta

    from django.utils import timezone

    def old_sample(hours: float) -> StatsSample:
        at = timezone.now() - timedelta(hours=hours)
        return StatsSample.objects.create(process="gone", host="h", pid=1, model="gated", at=at, seconds=60)

    kept, deleted = old_sample(1.5), old_sample(2.5)
    with override_settings(TFBATCH={**GATED, "STATS_RETENTION_HOURS": 2}):
        Publisher().publish()  # a first publish samples history, and prunes
    remaining = set(StatsSample.objects.filter(process="gone").values_list("pk", flat=True))
    assert remaining == {kept.pk}, deleted.pk
