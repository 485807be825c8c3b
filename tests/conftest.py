from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tfbatch_django.batching import BatchConfig, Batcher, Runner

# Real TensorFlow models (built once per session, only when a test asks for them).
pytest_plugins = ["tests.tf_models"]


@pytest.fixture
def make_batcher() -> Iterator[Callable[..., Batcher]]:
    """Build and start batchers; every one is closed after the test."""
    made: list[Batcher] = []

    def make(runner: Runner, name: str = "m", **config: Any) -> Batcher:
        config.setdefault("warmup", False)
        batcher = Batcher(runner, BatchConfig(**config), name=name).start()
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.close(timeout=5)
