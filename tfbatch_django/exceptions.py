"""Every error tfbatch-django raises on purpose, in one tree.

Catch ``TFBatchError`` to handle all of them; catch a leaf to handle one case::

    TFBatchError                 base class; never raised itself
    ├── ModelNotFound            no model of that name in settings.TFBATCH["MODELS"]
    ├── InvalidInput             the request does not fit the model's input spec; it
    │                            never reached the model and nothing else was affected
    ├── Overloaded               the model's queue is full (MAX_QUEUE_SIZE) or the
    │                            batcher is shutting down; retry later
    │   └── WorkerUnavailable    the model's WORKER is not running, or stopped while
    │                            it held the request (it may or may not have run)
    ├── PredictTimeout           the request's deadline passed before it was answered
    └── ModelError               the model failed on this request (or could not load)
        └── ModelLoadError       the model could not be loaded or warmed up

This module sits below every other layer: it imports nothing, so the batcher, the
runners and the Django glue can all raise the same types. Each exception carries the
model name (``model``) when one is known, so a caller juggling several models can tell
which one failed without parsing messages.
"""

from __future__ import annotations

__all__ = [
    "InvalidInput",
    "ModelError",
    "ModelLoadError",
    "ModelNotFound",
    "Overloaded",
    "PredictTimeout",
    "TFBatchError",
    "WorkerUnavailable",
]


class TFBatchError(Exception):
    """Base class of every error raised by tfbatch-django on purpose."""

    #: A short machine-readable code, used by the HTTP and WebSocket front doors.
    code: str = "error"

    def __init__(self, message: str, *, model: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.model = model

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only attributes would otherwise be lost when the error crosses a
        # process boundary (multiprocessing, Celery result backends).
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[TFBatchError], message: str, state: dict[str, object]) -> TFBatchError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ModelNotFound(TFBatchError, LookupError):
    """No model of that name is configured."""

    code = "model_not_found"


class InvalidInput(TFBatchError, ValueError):
    """The request does not match the model's inputs (names, shape, dtype, rows).

    ``input`` names the offending input when the problem is with one of them.
    """

    code = "invalid_input"

    def __init__(self, message: str, *, model: str | None = None, input: str | None = None) -> None:
        super().__init__(message, model=model)
        self.input = input


class Overloaded(TFBatchError):
    """The request was refused at once because the model cannot take more work now."""

    code = "overloaded"


class WorkerUnavailable(Overloaded):
    """No live ``tfbatch_worker`` process serves the model, or the one holding this
    request stopped sending heartbeats. A subclass of ``Overloaded`` (same code and HTTP
    503): callers that retry on overload retry on this too."""


class PredictTimeout(TFBatchError, TimeoutError):
    """The request's deadline passed before its answer was ready."""

    code = "timeout"


class ModelError(TFBatchError):
    """The model raised while computing this request (other requests were not harmed)."""

    code = "model_error"


class ModelLoadError(ModelError):
    """The model could not be loaded or warmed up; see the message for the cause."""
