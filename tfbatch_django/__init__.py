"""tfbatch-django: batch concurrent TensorFlow predictions inside Django.

Add ``"tfbatch_django"`` to ``INSTALLED_APPS``, list models in ``settings.TFBATCH``,
then ``await predict(name, x)`` from async code or ``predict_sync(name, x)`` from sync
code. Every caller in the process shares one batcher per model. This module is the
whole public API; everything else is an implementation detail.
"""

from .api import (
    get_stats,
    model_info,
    predict,
    predict_detailed,
    predict_detailed_sync,
    predict_sync,
    warmup,
)
from .batching import BatchInfo, CallableRunner, Prediction, Runner, TensorSpec
from .exceptions import (
    InvalidInput,
    ModelError,
    ModelLoadError,
    ModelNotFound,
    Overloaded,
    PredictTimeout,
    TFBatchError,
    WorkerUnavailable,
)
from .monitoring import start_publishing, stop_publishing

__version__ = "0.1.0"

__all__ = [
    "BatchInfo",
    "CallableRunner",
    "InvalidInput",
    "ModelError",
    "ModelLoadError",
    "ModelNotFound",
    "Overloaded",
    "PredictTimeout",
    "Prediction",
    "Runner",
    "TFBatchError",
    "TensorSpec",
    "WorkerUnavailable",
    "get_stats",
    "model_info",
    "predict",
    "predict_detailed",
    "predict_detailed_sync",
    "predict_sync",
    "start_publishing",
    "stop_publishing",
    "warmup",
]
