"""Which of the gathered groups' rare paths a test run reached: a pytest plugin, opt-in.

    STRESS_SEEDS=2000 .venv/bin/pytest -p tests.batching.expiry_probe \
        tests/batching/test_coalesce_stress.py -p no:randomly -q

prints, after the run, how often each branch of ``Outcomes.expire`` ran (a queued group
timed out whole or cut; a running group's members answered apart, all of them or some),
and a few paths around it (a group broken up after some members were answered apart, a
group answered with results past members answered apart, a batch not run, a group with
timeouts of its members' own: posted as they came or sorted by deadline, and timed out
with a list of deadlines). A random
test is only as good as the paths it reaches: the stress test once reached "some of a
running group" 7 times in 2,000 seeds, and "answered past them" never.

It wraps the real methods and calls them; nothing is replaced. Not loaded by default.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tfbatch_django.batching import coalesce, outcomes, scheduler
from tfbatch_django.batching import group as groups

HITS: Counter[str] = Counter()


def _expire_branch(group: groups.GroupRequest, now: float) -> str:
    """The branch ``Outcomes.expire`` is about to take (read before it changes anything)."""
    if group.done:
        return "done already"
    k = group.expired_until(now)
    if group.taken == 0:
        return "queued: " + ("all timed out" if k >= group.count else "cut" if k else "none yet")
    skip = group.members.skip
    if k <= skip:
        return "running: none yet"
    again = " (again)" if skip else ""
    return "running: " + ("all answered apart" if k == len(group.parts) else "some answered apart") + again


@pytest.fixture(autouse=True, scope="session")
def _expiry_probe() -> Any:
    patch = pytest.MonkeyPatch()
    expire = outcomes.Outcomes.expire
    explode = outcomes.Outcomes._explode
    set_result = groups.Members.set_result
    complete = scheduler.Scheduler._complete
    deadlines = coalesce.Gatherer._deadlines

    def probed_expire(self: outcomes.Outcomes, group: groups.GroupRequest, now: float) -> None:
        branch = _expire_branch(group, now)
        HITS["expire, " + branch] += 1
        if group.members.deadlines is not None:
            HITS["expire, " + branch + ", deadlines of their own"] += 1
        expire(self, group, now)

    def probed_deadlines(self: coalesce.Gatherer, group: Any) -> list[float] | None:
        before = list(group.futures)
        result = deadlines(self, group)
        HITS["flush, own timeouts: " + ("as they came" if group.futures == before else "sorted by deadline")] += 1
        return result

    def probed_explode(self: outcomes.Outcomes, group: groups.GroupRequest) -> None:
        HITS["broken up" + (", after members answered apart" if group.members.skip else "")] += 1
        explode(self, group)

    def probed_set_result(self: groups.Members, prediction: Any) -> None:
        if self.skip:
            HITS["results, past members answered apart"] += 1
        set_result(self, prediction)

    def probed_complete(self: scheduler.Scheduler, batch: Any) -> None:
        if batch.skipped:
            HITS["batch not run (its callers answered or gone)"] += 1
        complete(self, batch)

    patch.setattr(outcomes.Outcomes, "expire", probed_expire)
    patch.setattr(outcomes.Outcomes, "_explode", probed_explode)
    patch.setattr(groups.Members, "set_result", probed_set_result)
    patch.setattr(scheduler.Scheduler, "_complete", probed_complete)
    patch.setattr(coalesce.Gatherer, "_deadlines", probed_deadlines)
    yield
    patch.undo()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.section("gathered groups: paths reached")
    for name, count in sorted(HITS.items()):
        terminalreporter.write_line(f"{count:8d}  {name}")
