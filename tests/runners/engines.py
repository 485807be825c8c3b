"""A real KServe v2 engine in its own venv, started and stopped by the tests.

``tests/runners/v2_engine.py`` runs under ``.venv-engine/bin/python`` (``make engine``;
``TFBATCH_ENGINE_PYTHON`` names another interpreter). It listens on a free 127.0.0.1
port that it picks itself and prints, so two engines never race for a port.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("v2_engine.py")


def engine_python() -> Path:
    return Path(os.environ.get("TFBATCH_ENGINE_PYTHON", ROOT / ".venv-engine" / "bin" / "python"))


class Engine:
    """One engine process; ``url(model)`` is what a project puts in ``URL``."""

    def __init__(self, log: Path) -> None:
        python = engine_python()
        if not python.exists():
            pytest.fail(f"no KServe engine at {python}: run 'make engine' (make test does)", pytrace=False)
        self.log_path = log
        self._log: IO[bytes] = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(python), str(SCRIPT)], stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL
        )
        try:
            self.port = self._read_port(deadline=time.monotonic() + 90)
            self._wait_ready(deadline=time.monotonic() + 60)
        except BaseException:
            self.stop()
            raise

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, model: str) -> str:
        return f"{self.origin}/v2/models/{model}"

    def _read_port(self, deadline: float) -> int:
        assert self.process.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the engine did not start; its log: {self.log_path.read_text()[-3000:]}")
            ready, _, _ = select.select([self.process.stdout], [], [], 0.5)
            if ready:
                line += os.read(self.process.stdout.fileno(), 1)
        return int(line.split()[1])

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.origin}/v2/health/ready", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"the engine never became ready; its log: {self.log_path.read_text()[-3000:]}")

    def infer_json(self, model: str, inputs: list[dict[str, object]]) -> dict[str, object]:
        """The engine's own answer to a plain JSON request (no binary extension)."""
        response = httpx.post(self.url(model) + "/infer", json={"inputs": inputs}, timeout=30)
        response.raise_for_status()
        return {out["name"]: out for out in response.json()["outputs"]}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


def unused_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


__all__ = ["Engine", "engine_python", "unused_port"]
