"""What holds under real servers (daphne, uvicorn; runserver --noasgi for WSGI) for
oversized bodies and for a WebSocket client that never reads (issue 9 defects 8 and 9).

The servers run ``tests/serving/server_asgi.py`` (fake models, no TensorFlow) as
subprocesses on free loopback ports.

* uvicorn calls the application once the headers are in and hands the body over as it
  arrives, so the fast door refuses a declared oversized body before any of it is sent;
  its WebSocket ``send`` waits while the client does not read, so the answers held for
  a socket count against ``MAX_BYTES_PER_SOCKET``.
* daphne (Twisted) calls the application only once the whole body has arrived (spooled
  to a temporary file past 100 KB, then queued to the application in 8 KB messages), so
  the 413 comes after the upload, and a ``Content-Length`` never followed by its body is
  never answered; and it takes every WebSocket frame at once into Twisted's buffer, so
  no application can see unread answers there. The README says so.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect

from tests.servers import daphne_argv, running

SERVERS = {
    "daphne": daphne_argv("tests.serving.server_asgi:application"),
    "uvicorn": [
        *(sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--ws", "websockets"),
        *("--log-level", "warning", "tests.serving.server_asgi:application"),
    ],
}
LIMIT = 65_536  # MAX_REQUEST_BYTES in tests/serving/server_settings.py
SOCKET_BUDGET = 4 * 1_048_576  # MAX_BYTES_PER_SOCKET there

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    yield from serve(request.param, SERVERS[request.param], "fast/v1/models/double", tmp_path_factory)


@pytest.fixture(scope="module")
def wsgi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    argv = [sys.executable, "manage.py", "runserver", "--noasgi", "--noreload", "127.0.0.1:{port}"]
    yield from serve("runserver", argv, "sync/v1/models/double", tmp_path_factory)


def serve(
    name: str, argv: list[str], ready: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    env = {"DJANGO_SETTINGS_MODULE": "tests.serving.server_settings"}
    with running(argv, env, tmp_path_factory, ready) as server:
        yield name, server.port


def raw_request(port: int, head: bytes, body: bytes = b"", *, timeout: float = 30) -> bytes:
    """Send a request as bytes and read the answer until the server closes or stops sending."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def _length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 62


def head(prefix: str, length: int) -> bytes:
    return (
        f"POST /{prefix}/v1/models/double:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("prefix", ["fast", "tfbatch"])
def test_an_oversized_body_is_413_on_both_doors_once_sent(server, prefix):
    _, port = server
    answer = raw_request(port, head(prefix, LIMIT + 1), b" " * (LIMIT + 1))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert f"{LIMIT + 1} bytes; the limit is {LIMIT}".encode() in answer


def test_a_declared_oversized_body_is_refused_before_it_is_sent_only_under_uvicorn(server):
    name, port = server
    announced = head("fast", 10 * 1024**3)  # 10 GiB announced, 1 KB sent
    if name == "uvicorn":
        answer = raw_request(port, announced, b" " * 1024)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
        assert b"10737418240 bytes" in answer
    else:  # daphne calls the application only once the whole body has arrived (module docstring)
        with pytest.raises(TimeoutError):
            raw_request(port, announced, b" " * 1024, timeout=2)


@pytest.mark.parametrize("prefix", ["sync", "tfbatch"])
def test_under_wsgi_the_views_refuse_a_declared_body_before_it_is_sent(wsgi, prefix):
    _, port = wsgi
    answer = raw_request(port, head(prefix, 10 * 1024**3), b" " * 1024)  # 10 GiB announced, 1 KB sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"10737418240 bytes" in answer
    answer = raw_request(port, head(prefix, LIMIT + 1), b" " * (LIMIT + 1))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]


def never_reading_client(port: int, requests: int) -> list[dict]:
    """Send ``requests`` 1-MB-answer requests without reading, then read every answer.

    A raw socket with a small receive buffer, so that nothing on the client's side reads
    on its behalf (a WebSocket library reads ahead into its own queue).
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65_536)  # no receive-buffer autotuning
        sock.settimeout(60)
        sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET /ws/tfbatch/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        stream = Reader(sock)
        assert stream.until(b"\r\n\r\n").startswith(b"HTTP/1.1 101")
        before = computed(port)
        for i in range(requests):
            header = json.dumps({"id": i, "model": "wide", "inputs": {"dtype": "float32", "shape": [1, 1]}}).encode()
            sock.sendall(client_frame(struct.pack(">I", len(header)) + header + np.float32(i).tobytes()))
        deadline = time.monotonic() + 60  # until the server has computed every answer, then read
        while computed(port) < before + requests:
            assert time.monotonic() < deadline, "the server did not compute the requests in 60 s"
            time.sleep(0.05)
        replies = []
        while len(replies) < requests:
            opcode, payload = stream.frame()
            if opcode == 2:
                (length,) = struct.unpack_from(">I", payload)
                replies.append(json.loads(payload[4 : 4 + length]))
            elif opcode == 1:
                replies.append(json.loads(payload))
    return replies


def computed(port: int) -> int:
    """Requests of the 'wide' model the server has computed so far."""
    stats = httpx.get(f"http://127.0.0.1:{port}/stats/", timeout=10).json()
    return int(stats.get("wide", {}).get("completed", 0))


def client_frame(payload: bytes) -> bytes:
    """One masked binary frame, as RFC 6455 has clients send them."""
    mask = os.urandom(4)
    n = len(payload)
    size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
    masked = (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
    return bytes([0x82]) + size + mask + masked


class Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""

    def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            assert chunk, "the server closed the connection"
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65_536)
            assert chunk, "the server closed the connection"
            self.buffer += chunk
        data, _, self.buffer = self.buffer.partition(marker)
        return data

    def frame(self) -> tuple[int, bytes]:
        first, second = self.exactly(2)
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack(">H", self.exactly(2))
        elif n == 127:
            (n,) = struct.unpack(">Q", self.exactly(8))
        return first & 0x0F, self.exactly(n)


async def test_a_websocket_that_never_reads_is_bounded_in_bytes_where_the_server_allows(server):
    name, port = server
    requests = 60  # 60 MB of answers, far beyond the budget plus every buffer on the way
    replies = await asyncio.to_thread(never_reading_client, port, requests)
    assert sorted(r["id"] for r in replies) == list(range(requests)), [r for r in replies if "error" in r][:3]
    refused = [r for r in replies if "error" in r]
    assert all(r["error"]["code"] == "overloaded" for r in refused)
    if name == "uvicorn":
        assert refused, "answers piled up for a client that does not read"
        assert "MAX_BYTES_PER_SOCKET" in refused[0]["error"]["message"]
        assert len(replies) - len(refused) < requests // 2
    else:  # daphne takes every answer into Twisted's buffer at once: nothing is refused
        assert refused == []


async def test_an_answer_the_server_will_not_send_is_an_error_frame_not_silence(server):
    """daphne refuses frames over --websocket-max-message-size (1 MiB by default); the
    consumer used to swallow the refusal and the client waited forever."""
    name, port = server
    async with connect(f"ws://127.0.0.1:{port}/ws/tfbatch/", max_size=None) as ws:
        await ws.send(json.dumps({"id": "big", "model": "wide", "inputs": [[0.123]]}))  # ~1.5 MB of JSON
        reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
        await ws.send(json.dumps({"id": "small", "model": "double", "inputs": [[1, 2, 3]]}))
        after = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert reply["id"] == "big"
    if name == "daphne":
        assert reply["error"]["code"] == "too_large"
        assert "more than the server sends in one WebSocket frame" in reply["error"]["message"]
    else:
        assert len(reply["outputs"][0]) == 250_000
    assert after["outputs"] == [[2.0, 4.0, 6.0]]  # the socket is still usable
