from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

from tests.fakes import GatedModel
from tests.serving import fakes


@pytest.fixture
def gate() -> Iterator[GatedModel]:
    """A fresh shared gated model; released at the end so no batch stays blocked."""
    fakes.gate = GatedModel(width=2)
    yield fakes.gate
    fakes.gate.release()


@pytest.fixture(scope="module")
def module_settings(request: pytest.FixtureRequest) -> Iterator[None]:
    """The module's ``SETTINGS`` as ``TFBATCH`` for all its tests (``doors.EVERY_DOOR``)."""
    with override_settings(TFBATCH=request.module.SETTINGS):
        yield
