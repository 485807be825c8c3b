"""The calls application code makes: ``predict``, ``predict_sync`` and friends.

All of them go through the process-wide registry, so every caller of a model in this
process (WebSocket consumers, async and sync views, management commands, threads)
shares that model's one batcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import numpy as np

from .batching import Batcher, Prediction
from .batching.spec import Inputs
from .registry import READY, registry

__all__ = [
    "get_stats",
    "model_info",
    "predict",
    "predict_detailed",
    "predict_detailed_sync",
    "predict_sync",
    "warmup",
]

Outputs = np.ndarray | dict[str, np.ndarray]


async def predict(model: str, inputs: Inputs, *, timeout: float | None = None) -> Outputs:
    """Run ``inputs`` through ``model`` in a shared batch and return its outputs.

    ``inputs``: an array-like with a leading batch dimension (one-input models), or a
    dict of input name -> array-like. Returns an array for one-output models, else a
    dict of output name -> array; each has one row per input row. ``timeout`` is in
    seconds (default: the model's ``TIMEOUT_MS``). Never blocks the event loop.
    """
    # predict_detailed, inlined: one coroutine per call instead of two (bench_batcher: a
    # coroutine is ~0.2 µs, and one more object in flight for the garbage collector).
    handle = registry.get(model)
    batcher = handle.batcher or await handle.aload()
    if type(batcher) is not Batcher:  # a remote model's client: its own predict()
        return (await batcher.predict(inputs, timeout=timeout)).value()
    return (await batcher.submit_async(inputs, timeout)).value()


async def predict_detailed(model: str, inputs: Inputs, *, timeout: float | None = None) -> Prediction:
    """Like ``predict``, but returns a ``Prediction``: all outputs by name, plus ``BatchInfo``."""
    handle = registry.get(model)
    batcher = handle.batcher or await handle.aload()
    if type(batcher) is not Batcher:  # a remote model's client: its own predict()
        return await batcher.predict(inputs, timeout=timeout)
    # Batcher.predict, inlined: one coroutine per call instead of two.
    return await batcher.submit_async(inputs, timeout)


def predict_sync(model: str, inputs: Inputs, *, timeout: float | None = None) -> Outputs:
    """``predict`` for synchronous code: sync views, WSGI, commands, Celery tasks, threads.

    Blocks the calling thread, never an event loop: calling it from a coroutine raises
    ``RuntimeError`` (use ``await predict(...)`` there).
    """
    return predict_detailed_sync(model, inputs, timeout=timeout).value()


def predict_detailed_sync(model: str, inputs: Inputs, *, timeout: float | None = None) -> Prediction:
    """``predict_detailed`` for synchronous code."""
    if asyncio._get_running_loop() is not None:  # not get_running_loop(): no exception per call
        raise RuntimeError(
            "predict_sync() was called from a running event loop, which it would block; "
            "use 'await predict(...)' in async code"
        )
    handle = registry.get(model)
    batcher = handle.batcher or handle.load()
    return batcher.predict_sync(inputs, timeout=timeout)


def get_stats(model: str | None = None) -> dict[str, dict[str, Any]]:
    """Statistics per configured model, as plain JSON-ready dicts keyed by model name.

    Includes models not loaded yet (status "not_loaded", zero counters) and failed
    ones (status "failed" with ``error``). ``model`` narrows it to one.
    """
    if model is not None:
        return {model: registry.get(model).snapshot()}
    return {name: handle.snapshot() for name, handle in registry.handles().items()}


def warmup(models: Iterable[str] | None = None, *, wait: bool = True, timeout: float | None = None) -> dict[str, str]:
    """Load (and warm up) models now instead of on first use.

    With ``wait=False`` loading runs in the background (e.g. from ``asgi.py``, so the
    server starts at once and the first request finds the model ready). Returns each
    model's status ("ready", "failed", or "loading"/"warming" when not waited for).
    A failed model does not raise here: its status and error say why.
    """
    handles = registry.handles()
    names = list(handles) if models is None else list(models)
    selected = [registry.get(name) for name in names]
    futures: list[Any] = [h.start_loading() for h in selected]
    if wait:
        import concurrent.futures

        concurrent.futures.wait(futures, timeout=timeout)
    return {h.name: h.status for h in selected}


def model_info(model: str) -> dict[str, Any]:
    """What is known about a model without waiting for it: status, settings, and (once
    loaded) its inputs, outputs, signature and device."""
    handle = registry.get(model)
    snap = handle.snapshot()
    return {k: snap[k] for k in ("model", "status", "error", "settings", "runner", "warmup", "loaded_at")} | {
        "ready": handle.status == READY
    }
