"""Real daphne processes sharing one SQLite file, for the multi-process and browser tests.

``daphne_servers()`` migrates a fresh database, creates a superuser, starts the
processes on free loopback ports (with ``tests/servers.py``'s command line and stop)
all at once, and waits until each answers.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..servers import daphne_argv, free_port, stop
from .workloads import wait_for

REPO = Path(__file__).resolve().parents[2]
USERNAME, PASSWORD = "admin", "admin-pw"
DASHBOARD = "/admin/tfbatch_django/dashboard/"
DATA = DASHBOARD + "data.json"
ASGI_APP = "tests.monitoring.server.asgi:application"

SETUP = f"""
import django
django.setup()
from django.core.management import call_command
from django.contrib.auth.models import User
call_command("migrate", verbosity=0)
User.objects.create_superuser({USERNAME!r}, password={PASSWORD!r})
"""


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get_json(self, path: str, timeout: float = 60) -> Any:
        with urllib.request.urlopen(self.url(path), timeout=timeout) as response:
            return json.load(response)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def environment(tmp: Path, models: str) -> dict[str, str]:
    prometheus_dir = tmp / "prometheus"
    prometheus_dir.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.monitoring.server.settings",
        TFBATCH_TEST_DB=str(tmp / "db.sqlite3"),
        TFBATCH_TEST_MODELS=models,
        PROMETHEUS_MULTIPROC_DIR=str(prometheus_dir),
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def _answers(server: Server) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"daphne exited with {server.process.returncode}:\n{server.output()}")
    try:
        server.get_json("/local-stats/", timeout=5)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def daphne_servers(tmp: Path, count: int, models: str = "fake") -> Iterator[tuple[list[Server], dict[str, str]]]:
    env = environment(tmp, models)
    setup = subprocess.run(
        [sys.executable, "-c", SETUP], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert setup.returncode == 0, setup.stderr
    servers: list[Server] = []
    try:
        for i in range(count):
            port = free_port()
            log = tmp / f"daphne-{i}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [arg.format(port=port) for arg in daphne_argv(ASGI_APP)],
                    cwd=REPO,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            servers.append(Server(process, port, log))
        for server in servers:
            wait_for(lambda s=server: _answers(s), 60, f"daphne on port {server.port}", interval=0.1)
        yield servers, env
    finally:
        for server in servers:
            stop(server.process)


class StaffSession:
    """A logged-in admin session over HTTP (cookies and CSRF like a browser)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        login = server.url("/admin/login/")
        page = self.opener.open(login, timeout=30).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, "no CSRF token on the login page"
        form = {"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1), "next": DASHBOARD}
        with self.opener.open(login, data=urllib.parse.urlencode(form).encode(), timeout=30) as response:
            assert response.url.endswith(DASHBOARD), f"login failed, landed on {response.url}"

    def get_json(self, path: str) -> Any:
        with self.opener.open(self.server.url(path), timeout=30) as response:
            return json.load(response)
