from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.test import override_settings

from tfbatch_django.monitoring.publisher import Publisher

from .workloads import GATED


@pytest.fixture
def gated_settings() -> Iterator[None]:
    with override_settings(TFBATCH=GATED):
        yield


@pytest.fixture
def make_publisher() -> Iterator[Callable[[], Publisher]]:
    """Fresh publishers, each one "process" identity; stopped after the test."""
    made: list[Publisher] = []

    def make() -> Publisher:
        made.append(Publisher())
        return made[-1]

    yield make
    for publisher in made:
        publisher.stop()
