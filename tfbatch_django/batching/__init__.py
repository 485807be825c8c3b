"""The batching core: pure Python and numpy, no Django, no TensorFlow.

Everything here can be used on its own (the benchmarks do); the Django app builds
one ``Batcher`` per configured model on top of it.
"""

from .batcher import Batcher
from .config import BatchConfig
from .request import BatchInfo, Prediction
from .runner import CallableRunner, Runner
from .spec import TensorSpec, coerce_inputs

__all__ = [
    "BatchConfig",
    "BatchInfo",
    "Batcher",
    "CallableRunner",
    "Prediction",
    "Runner",
    "TensorSpec",
    "coerce_inputs",
]
