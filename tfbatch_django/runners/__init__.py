"""Framework adapters: turn a ``RunnerConfig`` into a loaded ``Runner``.

Nothing here imports Django; TensorFlow, Keras and urllib3 are imported only when a model
of theirs is loaded, so the app (and ``manage.py check``) works without them installed.
"""

from __future__ import annotations

from ..batching.runner import Runner
from .config import FrameworkOptions, RunnerConfig, detect_format

__all__ = ["FrameworkOptions", "RunnerConfig", "detect_format", "load_runner"]


def load_runner(config: RunnerConfig, framework: FrameworkOptions | None = None) -> Runner:
    """Load the model ``config`` describes; raises ``ModelLoadError`` with the cause."""
    fmt = config.format
    if fmt == "custom":
        from .custom import load_custom_runner

        assert config.runner is not None
        return load_custom_runner(config.runner, config.options)
    if fmt == "remote_v2":
        from .remote_v2 import RemoteV2Runner

        assert config.url is not None
        return RemoteV2Runner(config.url, timeout=config.remote_timeout, connections=config.connections)
    if fmt == "remote_tfserving":
        from .remote_tfserving import RemoteTFServingRunner

        assert config.url is not None
        return RemoteTFServingRunner(
            config.url, signature=config.signature, timeout=config.remote_timeout, connections=config.connections
        )
    assert config.path is not None
    if fmt == "keras":
        from .keras import KerasRunner

        return KerasRunner(config.path, device=config.device, jit_compile=config.jit_compile, framework=framework)
    from .tensorflow import SavedModelRunner

    return SavedModelRunner(
        config.path,
        signature=config.signature,
        device=config.device,
        jit_compile=config.jit_compile is True,  # a SavedModel runs as a graph unless asked for XLA
        framework=framework,
    )
