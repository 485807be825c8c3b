"""A real Redis for the session; real ``tfbatch_worker`` processes per test.

The test process plays the web process: its settings name the same models with the
same ``WORKER``, so its registry reaches them over the channel layer.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.test import override_settings

from tests.remote.redis import redis_server
from tests.remote.settings import channel_layers, tfbatch
from tfbatch_django import get_stats

REPO = Path(__file__).resolve().parents[2]
_names = itertools.count(1)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@dataclass
class Deployment:
    """One worker name, its gate file, and the worker processes started for it."""

    name: str
    gate: Path
    env: dict[str, str]
    tmp: Path
    workers: list[Worker]

    def start_worker(self, publish: bool = False) -> Worker:
        log = self.tmp / f"worker-{len(self.workers)}.log"
        argv = [sys.executable, "-m", "django", "tfbatch_worker", self.name] + ([] if publish else ["--no-publish"])
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(process, log)
        self.workers.append(worker)
        return worker

    def wait_ready(self, count: int = 1, model: str = "remote") -> None:
        """Until ``count`` workers report ``model`` ready in their heartbeats (bounded)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            snap = get_stats(model)[model]
            ready = [p for p in snap["served_by"]["processes"] if p["models"].get(model) == "ready"]
            if len(ready) >= count:
                return
            time.sleep(0.05)
        logs = "\n".join(w.output() for w in self.workers)
        raise AssertionError(f"{count} worker(s) not ready in 60 s:\n{logs}")


@pytest.fixture
def deployment(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[Deployment]:
    """Parametrize indirectly with ``"layer"`` to go through channels_redis's API (default: Redis itself)."""
    transport = getattr(request, "param", "auto")
    name = f"tw{os.getpid()}-{next(_names)}"
    gate = tmp_path / "gate"
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.remote.settings",
        TFBATCH_TEST_REDIS=redis_url,
        TFBATCH_TEST_WORKER=name,
        TFBATCH_TEST_GATE=str(gate),
        TFBATCH_TEST_TRANSPORT=transport,
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    found = Deployment(name, gate, env, tmp_path, [])
    with override_settings(TFBATCH=tfbatch(name, transport), CHANNEL_LAYERS=channel_layers(redis_url)):
        try:
            yield found
        finally:
            gate.unlink(missing_ok=True)
            for worker in found.workers:
                worker.stop()


def wait_for(condition: Callable[[], bool], seconds: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not met within {seconds} s")
