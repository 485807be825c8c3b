"""What the runners that hand batches to an engine share: URLs, connections, failures.

Two protocols sit on top (``remote_v2.py``: KServe v2; ``remote_tfserving.py``: TF
Serving's REST API); this module owns the HTTP side, the same for both:

* One ``urllib3.PoolManager`` per model, keeping one connection per concurrent batch
  alive (``MAX_CONCURRENT_BATCHES``), shared by the executor threads (it is thread-safe,
  so are these runners). urllib3 rather than httpx: it is synchronous like the executor
  threads that call it, and has no dependencies of its own.
* Failures: the engine's 4xx/500 answers raise ``RemoteError`` with the engine's message
  (the batcher bisects the batch, as for any model error, so a request the engine
  refuses does not fail its batch-mates); a call past ``REMOTE_TIMEOUT_MS`` raises
  ``PredictTimeout``, an engine that cannot be reached (or unavailable: 502/503/504)
  ``ModelError``; these two fail the whole batch at once, since retrying halves of it
  could only repeat the wait (see ``batching/execute.py``). At load, every failure is a
  ``ModelLoadError`` with the engine's words.

No Django here; urllib3 is imported when such a model loads (the ``remote`` extra).
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from ..batching.runner import Runner
from ..exceptions import ModelError, ModelLoadError, PredictTimeout, TFBatchError

__all__ = ["RemoteError", "RemoteRunner", "check_url", "redact_url", "remote_format"]

_V2_PATH = re.compile(r"^/(?:[^/?#]+/)*v2/models/[^/?#]+(?:/versions/[^/?#]+)?/?$")
_TFSERVING_PATH = re.compile(r"^/(?:[^/?#]+/)*v1/models/[^/?#:]+(?:/(?:versions|labels)/[^/?#:]+)?/?$")
_UNAVAILABLE = frozenset({502, 503, 504})
_CONNECTION_PREFIX = re.compile(r"^<?\w*Connection\w*\(.*?\)>?: ")


class RemoteError(Exception):
    """The engine answered an error status for this batch (message: the engine's own)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def check_url(url: object) -> str | None:
    """Why ``url`` cannot name a model on an engine, or None when it can."""
    if not isinstance(url, str):
        return f"URL must be a string, got {type(url).__name__}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"URL {redact_url(url)!r} is malformed ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"URL {redact_url(url)!r} must start with http:// or https:// and name a host"
    if port == 0:
        return f"URL {redact_url(url)!r} has port 0"
    if parts.query or parts.fragment or not (_V2_PATH.match(parts.path) or _TFSERVING_PATH.match(parts.path)):
        return (
            f"URL {redact_url(url)!r} must name a model on an engine, with no query: "
            "http(s)://host:port/v2/models/<model>[/versions/<version>] (KServe v2), or "
            "http(s)://host:port/v1/models/<model>[/versions/<version> or /labels/<label>] (TF Serving REST)"
        )
    return None


def remote_format(url: str) -> str:
    """ "remote_tfserving" for a TF Serving REST URL, else "remote_v2"."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return "remote_v2"
    return "remote_tfserving" if _TFSERVING_PATH.match(path) else "remote_v2"


def redact_url(url: str) -> str:
    """``url`` without a password, for logs, stats and the admin page."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@" + parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=netloc).geturl()


class RemoteRunner(Runner):
    """A model on an engine at ``url``: connections and failures (see the module docstring)."""

    thread_safe = True
    kind = "remote"

    def __init__(self, url: str, *, timeout: float = 30.0, connections: int = 1) -> None:
        problem = check_url(url)
        if problem:
            raise ModelLoadError(problem)
        try:
            import urllib3
        except ImportError:
            raise ModelLoadError('serving a model by URL needs urllib3: pip install "tfbatch-django[remote]"') from None
        self._urllib3 = urllib3
        parts = urlsplit(url)
        self.url = redact_url(url)
        self._base = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl().rstrip("/")
        self._origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self.timeout_s = timeout
        self._headers: dict[str, str] = {}
        if parts.username is not None:
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
        self._pool = urllib3.PoolManager(
            num_pools=1,
            maxsize=max(1, connections),
            # A refused connection is tried once more (an engine restarting). Read
            # errors are not retried here: a timeout must not double (see _send).
            retries=urllib3.Retry(total=1, connect=1, read=0, status=0, other=0, redirect=0, raise_on_status=False),
            timeout=urllib3.Timeout(total=timeout),
        )

    def _send(self, method: str, url: str, **kwargs: Any) -> Any:
        """One request; sent once more if a kept-alive connection turns out to be closed.

        Engines close a connection when they like (KServe's uvicorn does after a 500,
        and when a connection idles past its keep-alive); a request on it fails before
        any answer, with a reset or a disconnect. Sending it again on a fresh
        connection is safe: inference has no side effects. Timeouts are not retried.
        """
        try:
            return self._pool.request(method, url, **kwargs)
        except self._urllib3.exceptions.ProtocolError:
            return self._pool.request(method, url, **kwargs)

    def _get_json(self, suffix: str = "") -> dict[str, Any]:
        """``GET <URL><suffix>`` at load time: a JSON object, or ``ModelLoadError``."""
        shown = self.url + suffix
        try:
            response = self._send("GET", self._base + suffix, headers=self._headers)
        except self._urllib3.exceptions.HTTPError as exc:
            raise ModelLoadError(self._transport_error(exc).message) from None
        if response.status != 200:
            raise ModelLoadError(f"the engine answered {response.status} to GET {shown}: {_error_text(response.data)}")
        try:
            value = orjson.loads(response.data)
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise ModelLoadError(f"GET {shown} did not answer a JSON object (is it the right kind of engine?)")
        return value

    def _post(self, suffix: str, body: bytes, headers: dict[str, str]) -> Any:
        """``POST <URL><suffix>`` for a batch: the 200 response, or the error a caller gets."""
        try:
            response = self._send("POST", self._base + suffix, body=body, headers={**self._headers, **headers})
        except self._urllib3.exceptions.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status != 200:
            message = f"the engine at {self.url} answered {response.status}: {_error_text(response.data)}"
            if response.status in _UNAVAILABLE:
                raise ModelError(message)
            raise RemoteError(message, response.status)
        return response

    def _transport_error(self, exc: BaseException) -> TFBatchError:
        """A urllib3 failure as the error a caller gets (see the module docstring)."""
        errors = self._urllib3.exceptions
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, errors.NewConnectionError):  # refused, or no such host
            return ModelError(f"the engine at {self._origin} is unreachable: {_reason(reason)}")
        if isinstance(reason, errors.TimeoutError):
            return PredictTimeout(
                f"the engine at {self.url} did not answer within {self.timeout_s * 1e3:.0f} ms (REMOTE_TIMEOUT_MS)"
            )
        return ModelError(f"the connection to the engine at {self._origin} failed: {_reason(reason)}")

    def unreadable(self, exc: BaseException) -> RemoteError:
        return RemoteError(f"the engine at {self.url} answered an unreadable inference response: {exc}", 200)

    def describe(self) -> dict[str, Any]:
        return {"runner": self.kind, "url": self.url, "timeout_ms": round(self.timeout_s * 1e3)}

    def close(self) -> None:
        self._pool.clear()


def _reason(exc: BaseException) -> str:
    # urllib3 prefixes the connection: "HTTPConnection(host='h', port=1): Failed to ..."
    return _CONNECTION_PREFIX.sub("", str(exc))


def _error_text(body: bytes) -> str:
    """The engine's message: both protocols answer {"error": "..."}; else the body's start."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        return str(value["error"])
    text = body[:300].decode("utf-8", "replace").strip()
    return text or "(empty body)"
