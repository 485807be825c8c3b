"""Gathered and single callers at random: every caller gets its own rows, doubled, or its own error.

Each seed draws a batcher (batch size, queue size, padding, concurrent batches, latency,
a staging step) and a crowd of coroutine callers: gathered ones (float32 arrays; float64
ones to be cast, bare or by input name), ones that go alone (a deadline, a foreign byte
order), callers on a second event loop, rows from one to more than a batch, poisonous
rows (``GatedModel(poison=...)``), and callers who give up
at a random moment; some batchers have a default deadline (``TIMEOUT_MS``) shorter than
their model's calls, in some crowds gathered callers pass timeouts of their own (drawn
at random, so a group's deadlines come in any order, mixed with the default and with
none: the group is sorted by them), and some groups span milliseconds (a caller blocks
the loop between two others). Whatever happens, a caller who did not give up gets ``2 * x`` for
its rows, ``ModelError`` only if its own rows were poisonous, ``PredictTimeout`` only
once its own deadline has passed (telling its own timeout), or ``Overloaded``; the
accounting invariant is checked after every seed (conftest). ``STRESS_SEEDS`` sets how
many seeds run (a few hundred before a change to the batcher is merged).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import numpy as np
import pytest

from tests.batching.test_batcher import wait_until
from tests.fakes import GatedModel
from tfbatch_django.batching import Prediction
from tfbatch_django.exceptions import ModelError, Overloaded, PredictTimeout

POISON = -1.0
SEEDS = int(os.environ.get("STRESS_SEEDS", "24"))
#: Timeouts gathered callers pass (1e13: none at all, even under a default deadline).
OWN_TIMEOUTS = (0.001, 0.002, 0.005, 0.02, 0.1, 30.0, 1e13)


class StagingModel(GatedModel):
    """``GatedModel`` with a staging step (a copy, as a host-to-device transfer would make)."""

    def stage(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in inputs.items()}


def draw_config(rng: random.Random) -> dict[str, Any]:
    size = rng.choice([1, 2, 3, 4, 8, 16])
    config: dict[str, Any] = {
        "max_batch_size": size,
        "max_queue_size": rng.choice([2, 5, 16, 64, 1024]),
        "max_latency": rng.choice([0.0, 0.001, 0.005]),
        "max_concurrent_batches": rng.choice([1, 1, 2]),
    }
    if rng.random() < 0.3:
        config["allowed_batch_sizes"] = tuple(sorted({1, size, size + 3}))
    if rng.random() < 0.35:
        config["default_timeout"] = rng.choice([0.002, 0.005, 0.02])
    return config


def draw_rows(rng: random.Random, caller: int, poisoned: bool) -> np.ndarray:
    n = rng.choice([1, 1, 1, 1, 2, 3, 5, 17])
    values = [caller * 100.0 + j for j in range(n)]
    if poisoned:
        values[rng.randrange(n)] = POISON
    return np.array([[v, v + 0.5, -v] for v in values], dtype=np.float32)


async def timed(call: Callable[[], Awaitable[Any]], block: float = 0.0) -> Any:
    """``call()``'s outcome; a ``PredictTimeout`` carries how long after this started it came.

    ``block``: first hold the loop that long (``time.sleep``), between the callers of this
    iteration that called before and this one: one group, its members' deadlines apart.
    A sleep between the tasks' creation would not do it: they all run after it.
    """
    if block:
        time.sleep(block)
    start = time.perf_counter()  # before the call submits: its deadline is later than start + timeout
    try:
        return await call()
    except PredictTimeout as exc:
        exc.waited = time.perf_counter() - start  # type: ignore[attr-defined]
        raise


def check(x: np.ndarray, poisoned: bool, outcome: object, gave_up: bool, timeout: float | None) -> None:
    """One caller's outcome against its own rows (see the module docstring)."""
    if isinstance(outcome, asyncio.CancelledError):
        assert gave_up
        return
    if isinstance(outcome, Overloaded):
        return
    if isinstance(outcome, PredictTimeout):
        assert timeout is not None, f"a caller without a deadline got {outcome!r}"
        assert outcome.waited >= timeout, f"timed out after {outcome.waited}s, before its deadline of {timeout}s"
        assert f"deadline of {timeout * 1e3:.0f} ms passed" in str(outcome), "told another caller's timeout"
        return
    if isinstance(outcome, ModelError):
        assert poisoned, f"a caller without poison got {outcome!r}"
        return
    assert isinstance(outcome, Prediction), f"unexpected outcome {outcome!r}"
    assert not poisoned
    np.testing.assert_array_equal(outcome.outputs["y"], x * 2)
    np.testing.assert_array_equal(outcome.outputs["sum"], x.sum(axis=1))
    assert outcome.batch.size >= 1 and outcome.batch.batches >= 1


async def crowd(batcher: Any, rng: random.Random, first: int, callers: int, own: bool) -> Counter[str]:
    """``callers`` callers on the running loop, in bursts; some give up; each checked.
    ``own``: some gathered callers pass a timeout of their own.

    Returns how many ended which way (by the exception's or result's type name), and how
    many gave up ("gave_up").
    """
    made: list[tuple[asyncio.Future[Any], np.ndarray, bool, float | None]] = []
    default = batcher.config.default_timeout
    for i in range(first, first + callers):
        poisoned = rng.random() < 0.08
        x = draw_rows(rng, i, poisoned)
        how = rng.random()
        timeout = default
        if how < 0.15:
            call, timeout = partial(batcher.predict, x.astype(">f4"), timeout=30.0), 30.0  # on its own
        elif how < 0.2:
            call = partial(batcher.predict, x.astype(np.float64))  # gathered, cast in assemble
        elif how < 0.25:
            call = partial(batcher.predict, {"x": x.astype(np.float64)})  # as the serving doors pass it
        elif how < 0.3:
            call = partial(batcher.predict, x.astype(">f4"))  # foreign byte order: on its own
        elif own and how < 0.65:  # gathered, with a deadline of its own
            passed = rng.choice(OWN_TIMEOUTS)
            timeout = None if passed >= 1e9 else passed
            call = partial(batcher.predict, x if how < 0.55 else {"x": x.astype(np.float64)}, timeout=passed)
        else:
            call = partial(batcher.predict, x)
        spread = default is not None or own  # deadlines apart within one group
        block = rng.choice([0.001, 0.003]) if spread and rng.random() < 0.15 else 0.0
        made.append((asyncio.ensure_future(timed(call, block)), x, poisoned, timeout))
        if rng.random() < 0.2:
            await asyncio.sleep(0)  # the next callers land in the next group
    gave_up: set[int] = set()
    for _ in range(rng.randint(0, 3)):
        for k, (task, *_) in enumerate(made):
            if rng.random() < 0.1 and task.cancel():
                gave_up.add(k)
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
        if rng.random() < 0.3:
            await asyncio.sleep(0.001)
    outcomes = await asyncio.gather(*(t for t, *_ in made), return_exceptions=True)
    for k, ((_, x, poisoned, timeout), outcome) in enumerate(zip(made, outcomes, strict=True)):
        check(x, poisoned, outcome, k in gave_up, timeout)
    tally = Counter(type(o).__name__ for o in outcomes)
    tally["gave_up"] = len(gave_up)
    return tally


@pytest.mark.parametrize("seed", range(SEEDS))
async def test_random_callers_each_get_their_own_outcome(make_batcher, seed):
    rng = random.Random(seed)
    config = draw_config(rng)
    own = rng.random() < 0.5  # callers pass timeouts of their own
    delay = rng.choice([0.0, 0.001, 0.004]) if "default_timeout" in config or own else 0.0
    model = (StagingModel if rng.random() < 0.3 else GatedModel)(poison=POISON, delay=delay)
    model.thread_safe = config["max_concurrent_batches"] > 1
    batcher = make_batcher(model, **config)
    callers = rng.randint(1, 60)
    other = random.Random(rng.random())
    jobs = [crowd(batcher, rng, 1, callers, own)]
    if rng.random() < 0.3:  # a second loop's callers at the same time
        jobs.append(asyncio.to_thread(asyncio.run, crowd(batcher, other, 1000, rng.randint(1, 30), own)))
    tally = sum(await asyncio.gather(*jobs), Counter())
    await wait_until(lambda: batcher.outstanding == 0 and batcher.queue_depth() == 0)
    snap = batcher.snapshot()
    # Each outcome counted as the caller saw it; a caller who gave up may have been
    # counted as answered (its answer was on its way), never the other way round.
    for counter, seen in (
        ("completed", "Prediction"),
        ("errors", "ModelError"),
        ("rejected", "Overloaded"),
        ("timeouts", "PredictTimeout"),
    ):
        assert tally[seen] <= snap[counter] <= tally[seen] + tally["gave_up"], (counter, tally)
    assert snap["cancelled"] <= tally["gave_up"]
