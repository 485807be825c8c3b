from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import GatedModel
from tests.serving import fakes


@pytest.fixture
def gate() -> Iterator[GatedModel]:
    """A fresh shared gated model; released at the end so no batch stays blocked."""
    fakes.gate = GatedModel(width=2)
    yield fakes.gate
    fakes.gate.release()
