"""Models and permission callables for the serving tests, named by dotted path in settings.

``gate`` is one shared ``GatedModel``: a test holds it so that requests pile up behind
a running batch, which makes batch composition, cancellation, overload and timeouts
deterministic instead of timed. The ``gate`` fixture gives every test a fresh one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np

from tests.fakes import GatedModel
from tfbatch_django import CallableRunner

gate = GatedModel(width=2)


def gated_runner() -> GatedModel:
    return gate


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for a state the gate makes certain; never a timing assertion."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def pair_runner() -> CallableRunner:
    """Two inputs, two outputs: the row and columnar formats' object forms."""

    def run(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
        return {"sum": a + b, "product": a * b}

    return CallableRunner(
        run,
        inputs={"a": ("float32", (None, 2)), "b": ("float32", (None, 2))},
        outputs={"sum": ("float32", (None, 2)), "product": ("float32", (None, 2))},
    )


def text_runner() -> CallableRunner:
    """String in, string and number out: base64 inputs and string outputs."""

    def run(text: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "upper": np.array([t.upper() for t in text], dtype=object),
            "length": np.array([len(t) for t in text], dtype=np.int32),
        }

    return CallableRunner(
        run,
        inputs={"text": ("string", (None,))},
        outputs={"upper": ("string", (None,)), "length": ("int32", (None,))},
    )


def only_double(user: Any, model: str) -> bool:
    """A sync permission callable: anyone, but only for the model 'double'."""
    return model == "double"


async def only_staff_async(user: Any, model: str) -> bool:
    return bool(getattr(user, "is_staff", False))


def user_in_database(user: Any, model: str) -> bool:
    """Queries the database, which async code may not do directly: proves it runs in a thread."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(pk=getattr(user, "pk", None), is_active=True).exists()


NOT_CALLABLE = "a string"


WIDE = 250_000  # float32 outputs per row: 1,000,000 bytes, within daphne's 1 MiB frames in binary


def wide_runner() -> CallableRunner:
    """One number in, 1 MB of float32 out per row: answers far larger than requests."""
    return CallableRunner(
        lambda x: np.broadcast_to(x, (len(x), WIDE)).copy(), inputs={"x": ("float32", (None, 1))}, outputs=("y",)
    )


def bytes_runner() -> CallableRunner:
    """Two string outputs, one named ``*_bytes``: TF Serving writes that one as base64."""

    def run(text: np.ndarray) -> dict[str, np.ndarray]:
        return {"raw_bytes": text.copy(), "echo": text.copy()}

    return CallableRunner(
        run,
        inputs={"text": ("string", (None,))},
        outputs={"raw_bytes": ("string", (None,)), "echo": ("string", (None,))},
    )
