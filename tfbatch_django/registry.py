"""The process-wide registry: one ``ModelHandle`` (and so one batcher) per configured model.

Models load lazily on first use, on a thread of their own, so the first request of an
async server awaits the load without blocking its event loop, and ``AppConfig.ready()``
never touches TensorFlow. ``tfbatch_warmup`` (or ``warmup()``) loads them eagerly.

One registry per process: a forked child (gunicorn/uwsgi workers, multiprocessing)
inherits the parent's objects but not its threads, so it drops everything it inherited
and builds its own batchers on first use. ``os.register_at_fork`` does that in children
of ``os.fork`` (``multiprocessing``, gunicorn), and a check on every lookup in children
whose fork runs no Python hook: uWSGI forks its workers with C's ``fork`` and calls
``PyOS_AfterFork_Child`` only with ``--py-call-osafterfork`` (off by default), so its
workers would be handed the parent's batchers, whose threads they do not have
(test_caller_contexts). The check reads a byte that any fork wipes (``forks.ForkFlag``,
~15 ns), and compares pids (a ``getpid`` system call, ~0.15 µs) only where the OS
cannot wipe it.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import gc
import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from .batching import Batcher
from .batching.stats import BatcherStats, StatsListener
from .conf import ModelConfig, TFBatchConfig, get_config, get_problems
from .exceptions import ModelLoadError, ModelNotFound
from .forks import ForkFlag
from .runners import load_runner

if TYPE_CHECKING:
    from .remote.handle import RemoteHandle

__all__ = ["ModelHandle", "Registry", "registry"]

logger = logging.getLogger("tfbatch_django")

NOT_LOADED, LOADING, WARMING, READY, FAILED = "not_loaded", "loading", "warming", "ready", "failed"


class ModelHandle:
    """A configured model: its load state, its batcher once ready, and its counters."""

    def __init__(
        self, config: ModelConfig, settings: TFBatchConfig, listeners: list[StatsListener] | None = None
    ) -> None:
        self.name = config.name
        self.config = config
        self.settings = settings  # the process-wide keys: framework options, GC, GIL
        self.status = NOT_LOADED
        self.error: str | None = None
        self.batcher: Batcher | None = None
        self.runner_info: dict[str, Any] = {}
        self.load_seconds: float | None = None
        self.loaded_at: float | None = None
        self.stats = BatcherStats(
            config.batching.max_batch_size, name=self.name, listeners=listeners if listeners is not None else []
        )
        self._future: concurrent.futures.Future[Batcher] | None = None
        self._closed = False
        self._lock = threading.Lock()
        # Not a file that is missing (W002): it may be mounted later, and is looked for at load.
        problems = [p for p in get_problems() if p.model == self.name and p.level == "error"]
        if problems:  # a PATH that is not a model, an unknown signature...: fail now, with the check's words
            self.status = FAILED
            self.error = f"model {self.name!r} cannot load: " + " ".join(p.msg for p in problems)

    def start_loading(self) -> concurrent.futures.Future[Batcher]:
        """Begin loading on a background thread (once); the future yields the batcher."""
        with self._lock:
            if self._future is None:
                self._future = concurrent.futures.Future()
                # RUNNING, so a cancelled awaiter (asyncio.wrap_future cancels its source)
                # cannot cancel the load that other callers are waiting for.
                self._future.set_running_or_notify_cancel()
                threading.Thread(target=self._load, name=f"tfbatch-load-{self.name}", daemon=True).start()
            return self._future

    def load(self, timeout: float | None = None) -> Batcher:
        """The ready batcher, loading it first if needed (blocks this thread)."""
        if self.batcher is not None:
            return self.batcher
        return self._result(self.start_loading(), timeout)

    async def aload(self) -> Batcher:
        """The ready batcher, awaiting the load without blocking the event loop."""
        if self.batcher is not None:
            return self.batcher
        import asyncio

        future = self.start_loading()
        try:
            return await asyncio.wrap_future(future)
        except ModelLoadError as exc:
            raise ModelLoadError(exc.message, model=self.name) from None

    def _result(self, future: concurrent.futures.Future[Batcher], timeout: float | None) -> Batcher:
        try:
            return future.result(timeout)
        except ModelLoadError as exc:
            # A fresh exception per caller: a shared one would collect everyone's tracebacks.
            raise ModelLoadError(exc.message, model=self.name) from None

    def _load(self) -> None:
        assert self._future is not None
        t0 = time.perf_counter()
        try:
            if self.status == FAILED:
                raise ModelLoadError(self.error or "failed", model=self.name)
            path = self.config.runner.path
            if path is not None and not path.exists():
                raise ModelLoadError(f"model {self.name!r} cannot load: PATH {str(path)!r} does not exist")
            self.status = LOADING
            logger.info("tfbatch: loading model %r", self.name)
            if self.settings.switch_interval is not None:
                # The batcher's executor thread needs the GIL back after every model
                # call; with a busy event loop it waits up to a whole switch interval.
                sys.setswitchinterval(self.settings.switch_interval)
            runner = load_runner(self.config.runner, self.settings.framework)
            self.runner_info = _runner_info(runner)
            self.status = WARMING
            batcher = Batcher(runner, self.config.batching, name=self.name, stats=self.stats).start()
        except BaseException as exc:
            error = exc if isinstance(exc, ModelLoadError) else ModelLoadError(f"{type(exc).__name__}: {exc}")
            message = (
                error.message
                if error.message.startswith(f"model {self.name!r}")
                else f"model {self.name!r}: {error.message}"
            )
            self.status, self.error = FAILED, message
            logger.error("tfbatch: %s", message, exc_info=not isinstance(exc, ModelLoadError))
            self._future.set_exception(ModelLoadError(message, model=self.name))
            return
        if self.settings.gc_freeze:
            # TensorFlow leaves ~400,000 long-lived Python objects behind; a full
            # collection then takes ~200 ms here, stalling every event loop and the
            # batcher. Freezing moves everything alive now out of the collector's sight;
            # objects made later are collected as usual. Collect first, so that the
            # loader's garbage is freed rather than frozen.
            gc.collect()
            gc.freeze()
        with self._lock:
            closed = self._closed
            if not closed:
                self.load_seconds = round(time.perf_counter() - t0, 3)
                self.loaded_at = time.time()
                self.batcher = batcher
                self.status = READY
        if closed:  # the settings changed while this model loaded: nobody will use it
            batcher.close()
            self._future.set_exception(ModelLoadError(f"model {self.name!r}: settings changed", model=self.name))
            return
        logger.info("tfbatch: model %r ready in %.2fs", self.name, self.load_seconds)
        self._future.set_result(batcher)

    def snapshot(self) -> dict[str, Any]:
        """Status, model facts, settings in force and counters: one plain dict."""
        batcher = self.batcher
        if batcher is not None:
            counters = batcher.snapshot()
        else:
            counters = self.stats.snapshot(queue_depth=0, in_flight_batches=0)
        return {
            "model": self.name,
            "status": self.status,
            "error": self.error,
            "pid": os.getpid(),
            "loaded_at": self.loaded_at,
            "load_seconds": self.load_seconds,
            "settings": self.config.describe(),
            "runner": dict(self.runner_info),
            "warmup": list(batcher.warmup_report) if batcher is not None else [],
            **counters,
        }

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._closed = True
            batcher = self.batcher
        if batcher is not None:
            batcher.close(timeout)


def _runner_info(runner: Any) -> dict[str, Any]:
    info = dict(runner.describe())
    info["inputs"] = [spec.describe() for spec in runner.input_specs.values()]
    info["outputs"] = [spec.describe() for spec in getattr(runner, "output_specs", {}).values()]
    return info


#: One lock per process id, for ``Registry._adopt``; ``dict.setdefault`` is atomic.
_ADOPTION_LOCKS: dict[int, threading.Lock] = {}


class Registry:
    """Model name -> ``ModelHandle``, built from settings on first use, per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: dict[str, ModelHandle | RemoteHandle] | None = None
        self._config: TFBatchConfig | None = None
        self._pid = os.getpid()
        #: Reads 1 until this process forks (see ``forks``): then ``handles()`` checks the pid.
        self._unforked = ForkFlag()
        self._unforked.arm()
        self.listeners: list[StatsListener] = []
        #: The WORKER name this process serves (``manage.py tfbatch_worker``): its models
        #: get local batchers here; other models with a WORKER are reached over the layer.
        self.local_worker: str | None = None

    def add_listener(self, listener: StatsListener) -> None:
        """Send every model's stats events to ``listener`` (e.g. Prometheus metrics)."""
        if listener not in self.listeners:
            self.listeners.append(listener)

    def remove_listener(self, listener: StatsListener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    def serve_worker(self, worker: str) -> None:
        """Make this process the worker ``worker``: its models are served here, batched."""
        if self.local_worker != worker:
            self.reset()
            self.local_worker = worker

    def _handle(self, config: ModelConfig, settings: TFBatchConfig) -> ModelHandle | RemoteHandle:
        if config.worker is None or config.worker == self.local_worker:
            return ModelHandle(config, settings, self.listeners)
        from .remote.handle import RemoteHandle

        return RemoteHandle(config, settings)

    def handles(self) -> dict[str, ModelHandle | RemoteHandle]:
        # The pid before the handles: ``_forget`` drops the handles, then sets the pid. Read
        # the other way round, a thread of a child could read the parent's handles, then
        # the pid another thread had just adopted, and return them (test_caller_contexts).
        pid = os.getpid()
        if self._pid == pid:
            handles = self._handles
            if handles is not None:
                return handles
        else:  # a fork without Python's hooks: the old lock may be held
            self._adopt(pid)
        with self._lock:
            if self._handles is None:
                config = get_config()
                self._config = config
                self._handles = {name: self._handle(mc, config) for name, mc in config.models.items()}
            return self._handles

    def get(self, name: str) -> ModelHandle | RemoteHandle:
        # handles(), inlined: this runs once per prediction. The flag before the handles:
        # ``_forget`` arms it after dropping them, so a handle read here is this process's.
        handles = self._handles if self._unforked.byte[0] else None
        if handles is None:  # not built yet, or a fork since (with Python's hooks or not: uWSGI)
            handles = self.handles()
        handle = handles.get(name)
        if handle is None:
            known = ", ".join(repr(n) for n in self.handles()) or "none"
            raise ModelNotFound(f"no model named {name!r}; configured models: {known}", model=name)
        return handle

    def reset(self, timeout: float = 10.0) -> None:
        """Close every batcher and forget the settings (they changed)."""
        pid = os.getpid()
        if self._pid != pid:
            # A fork without Python's hooks, before any lookup here (a uWSGI worker's
            # ``atexit``): drop the parent's handles, never close them, and never wait on
            # its lock, which a thread of the parent may have held at the fork.
            self._adopt(pid)
        with self._lock:
            handles, self._handles = self._handles, None
        if handles and self._pid == pid:
            for handle in handles.values():
                handle.close(timeout)

    def _adopt(self, pid: int) -> None:
        """Forget the parent's objects in a child that ran no at-fork hook (uWSGI).

        Not under ``_lock``: a thread of the parent may have held it at the fork, and in
        the child nobody ever releases it (test_caller_contexts). The first thread of the
        child to get here forgets; a per-pid lock, made atomically by ``setdefault``,
        keeps a second one from replacing the new lock while the first holds it.
        """
        with _ADOPTION_LOCKS.setdefault(pid, threading.Lock()):
            if self._pid != pid:
                self._forget()

    def _forget(self) -> None:
        """After a fork: the parent's threads are gone, drop its objects without closing them."""
        self._lock = threading.Lock()  # another thread may have held the old one at fork time
        self._handles = None
        self._config = None
        self._pid = os.getpid()
        self._unforked.arm()  # last: see get()


registry = Registry()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=registry._forget)

# Answer queued requests and stop the model threads before the interpreter tears
# TensorFlow down under them (daemon threads inside a TF call can crash at exit).
atexit.register(registry.reset, 5.0)
