"""The error codes the front doors answer with, and what each means over HTTP.

The batching core raises ``TFBatchError``s with codes of their own; the front doors add
the codes only they can detect (a body that is not JSON, a payload over the size limit,
a user the permission setting refuses). Both kinds meet here, so the HTTP views, the
fast door and the WebSocket consumer agree on every code and status.
"""

from __future__ import annotations

import logging

from ..exceptions import InvalidInput, ModelError, TFBatchError

__all__ = ["HTTP_STATUS", "ServingError", "describe_error", "too_large"]

logger = logging.getLogger("tfbatch_django.serving")

#: Error code -> HTTP status. WebSocket error frames carry the code itself.
HTTP_STATUS: dict[str, int] = {
    "bad_request": 400,
    "invalid_input": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "model_not_found": 404,
    "method_not_allowed": 405,
    "too_large": 413,
    "model_error": 500,
    "overloaded": 503,
    "timeout": 504,
}


class ServingError(Exception):
    """A request refused by a front door before (or instead of) reaching ``predict()``."""

    def __init__(self, code: str, message: str) -> None:
        assert code in HTTP_STATUS, code
        super().__init__(message)
        self.code = code
        self.message = message


def too_large(size: int, limit: int, what: str = "the request body has", unit: str = "bytes") -> ServingError:
    """The one wording of ``too_large``, whichever door measured the size."""
    return ServingError("too_large", f"{what} {size} {unit}; the limit is {limit} (TFBATCH['MAX_REQUEST_BYTES'])")


def describe_error(exc: BaseException) -> tuple[str, str]:
    """``(code, message)`` for any exception a request ended with.

    A ``ModelError`` caused by ``InvalidInput`` (a runner saying the model refused these
    inputs) is that ``invalid_input``. Anything that is not one of ours is a bug or a
    model misbehaving in a way the core did not classify: it is logged with its
    traceback, and the client gets a generic ``model_error`` rather than internals.
    """
    if isinstance(exc, ModelError) and isinstance(exc.__cause__, InvalidInput):
        # The model itself refused the inputs (TensorFlow's InvalidArgument): the caller's
        # error, in the model's words, as TensorFlow Serving answers it.
        return exc.__cause__.code, exc.__cause__.message
    if isinstance(exc, ServingError | TFBatchError):
        return exc.code, exc.message
    logger.error("tfbatch: unexpected error while serving a request", exc_info=exc)
    return "model_error", f"internal error ({type(exc).__name__}); the server log has the details"
