"""A worker-served model as the registry sees it in a web process.

``RemoteHandle`` answers what a ``ModelHandle`` answers (status, error, runner facts,
``snapshot()``, ``load()``), from the workers' heartbeats, and its ``batcher`` is a
``RemoteModel`` with the batcher's two calls, ``predict`` and ``predict_sync``. So
``api.py`` and every front door serve worker-served models with no code of their own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any

from ..batching import Prediction
from ..batching.request import SyncWaiter
from ..batching.spec import Inputs
from ..conf import ModelConfig, TFBatchConfig
from ..exceptions import ModelLoadError, PredictTimeout, TFBatchError
from .client import RemoteClient, get_client

__all__ = ["UNAVAILABLE", "RemoteHandle", "RemoteModel"]

#: Status of a worker-served model while no worker of its name is alive.
UNAVAILABLE = "unavailable"


class RemoteModel:
    """``Batcher.predict`` / ``predict_sync`` for a model a worker process serves."""

    def __init__(self, config: ModelConfig, client: RemoteClient) -> None:
        assert config.worker is not None
        self.name = config.name
        self.worker = config.worker
        self.default_timeout = config.batching.default_timeout
        self.client = client
        client.watch(self.worker)

    def _deadline(self, timeout: float | None) -> tuple[float | None, float | None]:
        if timeout is None:
            timeout = self.default_timeout
        elif timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        return timeout, None if timeout is None else time.monotonic() + timeout

    def _timed_out(self, timeout: float, where: str) -> PredictTimeout:
        return PredictTimeout(
            f"model {self.name!r}: deadline of {timeout * 1e3:.0f} ms passed {where} (worker {self.worker!r})",
            model=self.name,
        )

    async def predict(self, inputs: Inputs, *, timeout: float | None = None) -> Prediction:
        timeout, deadline = self._deadline(timeout)
        while not self.client.check_alive(self.worker, self.name):
            if deadline is not None and time.monotonic() >= deadline:
                assert timeout is not None
                raise self._timed_out(timeout, "waiting for a worker")
            await asyncio.sleep(0.01)  # only in a process's first moments, before any heartbeat
        encoded = self.client.encode(self.worker, self.name, inputs)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        remaining = None if deadline is None else deadline - time.monotonic()
        call = self.client.submit(self.worker, self.name, encoded, remaining, (loop, future))
        try:
            if remaining is None:
                return await future
            return await asyncio.wait_for(future, max(remaining, 0.0))
        except TimeoutError:
            self.client.withdraw(call)
            assert timeout is not None
            raise self._timed_out(timeout, "before the worker answered") from None
        except asyncio.CancelledError:
            self.client.withdraw(call)
            raise

    def predict_sync(self, inputs: Inputs, *, timeout: float | None = None) -> Prediction:
        timeout, deadline = self._deadline(timeout)
        while not self.client.check_alive(self.worker, self.name):
            if deadline is not None and time.monotonic() >= deadline:
                assert timeout is not None
                raise self._timed_out(timeout, "waiting for a worker")
            time.sleep(0.01)
        encoded = self.client.encode(self.worker, self.name, inputs)
        waiter = SyncWaiter()
        remaining = None if deadline is None else deadline - time.monotonic()
        call = self.client.submit(self.worker, self.name, encoded, remaining, waiter)
        try:
            if not waiter.wait(remaining):
                self.client.withdraw(call)
                assert timeout is not None
                raise self._timed_out(timeout, "before the worker answered")
        except BaseException:
            self.client.withdraw(call)
            raise
        if waiter.error is not None:
            raise waiter.error
        assert waiter.value is not None
        return waiter.value


class RemoteHandle:
    """The registry's entry for a model served by ``manage.py tfbatch_worker <WORKER>``."""

    remote = True

    def __init__(self, config: ModelConfig, settings: TFBatchConfig) -> None:
        assert config.worker is not None
        self.name = config.name
        self.config = config
        self.worker = config.worker
        self.settings = settings
        self._model: RemoteModel | None = None
        self._lock = threading.Lock()

    @property
    def batcher(self) -> RemoteModel:
        """Never None: a worker-served model needs no loading in this process."""
        model = self._model
        if model is None:
            with self._lock:
                if self._model is None:
                    client = get_client(self.settings.workers.channel_layer, self.settings.workers)
                    self._model = RemoteModel(self.config, client)
                model = self._model
        return model

    def _snap(self) -> tuple[dict[str, Any] | None, list[Any]]:
        return self.batcher.client.book.model(self.worker, self.name)

    @property
    def status(self) -> str:
        snap, _ = self._snap()
        return UNAVAILABLE if snap is None else str(snap.get("status"))

    @property
    def error(self) -> str | None:
        snap, live = self._snap()
        if snap is not None:
            return snap.get("error")
        if live:
            return f"model {self.name!r}: the running workers {self.worker!r} do not serve it"
        return f"model {self.name!r}: no worker {self.worker!r} is running (manage.py tfbatch_worker {self.worker})"

    @property
    def runner_info(self) -> dict[str, Any]:
        snap, _ = self._snap()
        return dict((snap or {}).get("runner") or {})

    def start_loading(self) -> concurrent.futures.Future[RemoteModel]:
        """A future set once a worker reports the model ready (or failed, or none is alive)."""
        future: concurrent.futures.Future[RemoteModel] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        model = self.batcher

        def wait() -> None:
            while True:
                try:
                    model.client.check_alive(self.worker, self.name)
                except TFBatchError as exc:
                    future.set_exception(ModelLoadError(exc.message, model=self.name))
                    return
                status = self.status
                if status == "ready":
                    future.set_result(model)
                    return
                if status == "failed":
                    future.set_exception(ModelLoadError(self.error or "failed", model=self.name))
                    return
                time.sleep(0.02)

        threading.Thread(target=wait, name=f"tfbatch-remote-load-{self.name}", daemon=True).start()
        return future

    def load(self, timeout: float | None = None) -> RemoteModel:
        return self.start_loading().result(timeout)

    async def aload(self) -> RemoteModel:
        return await asyncio.wrap_future(self.start_loading())

    def snapshot(self) -> dict[str, Any]:
        """The model's statistics as one live worker reports them, plus who serves it."""
        snap, live = self._snap()
        now = time.monotonic()
        served_by = {"worker": self.worker, "processes": [w.describe(now) for w in live]}
        if snap is None:
            return {
                "model": self.name,
                "status": UNAVAILABLE,
                "error": self.error,
                "settings": self.config.describe(),
                "runner": {},
                "warmup": [],
                "loaded_at": None,
                "load_seconds": None,
                "remote": True,
                "served_by": served_by,
            }
        return {**snap, "remote": True, "served_by": served_by}

    def close(self, timeout: float = 10.0) -> None:
        """Nothing to stop here: the workers own the model."""
