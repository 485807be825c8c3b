from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.batching.accounting import assert_accounted
from tfbatch_django.batching import Batcher


@pytest.fixture
def make_batcher(make_batcher: Callable[..., Batcher]) -> Iterator[Callable[..., Batcher]]:
    """The project's ``make_batcher``, plus the accounting invariant checked after each test.

    Each batcher is closed (which drains it) and must then account for every request it
    accepted: exactly one outcome each, nothing outstanding.
    """
    made: list[Batcher] = []

    def make(*args: Any, **kwargs: Any) -> Batcher:
        batcher = make_batcher(*args, **kwargs)
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.close(timeout=5)
        assert_accounted(batcher)
