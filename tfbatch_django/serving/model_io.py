"""What a protocol says about a configured model: its served version and its tensors.

Shared by TensorFlow Serving's REST API (``tfserving``) and the Open Inference
Protocol (``kserve_v2``). A SavedModel's signatures are read from ``saved_model.pb``
without loading TensorFlow (a model that cannot load still describes itself); Keras
files and custom runners describe themselves once loaded.
"""

from __future__ import annotations

from functools import lru_cache

from ..conf import ModelConfig
from ..exceptions import ModelNotFound
from ..registry import READY, registry
from ..runners.savedmodel_meta import SignatureMeta, TensorMeta, read_signatures, resolve_savedmodel_dir
from .core import Flow, Load
from .errors import ServingError

__all__ = ["checked_version", "savedmodel_directory", "savedmodel_signatures", "served_version", "signature_tensors"]


def checked_version(config: ModelConfig, asked: str | None) -> int:
    """The served version, once ``asked`` (the version a URL names, if any) is found to be
    it; else ``ModelNotFound``, in the same words for every protocol."""
    served = served_version(config)
    if asked is not None and asked != str(served):
        raise ModelNotFound(
            f"model {config.name!r} has no version {asked}; it serves version {served}", model=config.name
        )
    return served


def served_version(config: ModelConfig) -> int:
    """The served version: a TF Serving version directory's number, else 0.

    Once the model is loaded, the version it loaded: a newer directory copied in
    meanwhile is not what answers requests.
    """
    loaded = registry.get(config.name).runner_info
    if "version" in loaded:
        return int(loaded["version"] or 0)
    path = config.runner.path
    if path is None or config.runner.format != "savedmodel":
        return 0
    try:
        version = resolve_savedmodel_dir(path)[1]
    except FileNotFoundError:
        return 0
    return 0 if version is None else version


@lru_cache(maxsize=64)
def savedmodel_signatures(directory: str, internal: bool = False) -> dict[str, SignatureMeta]:
    """A SavedModel's signatures; version directories never change, so read each once."""
    return read_signatures(directory, internal=internal)


def savedmodel_directory(config: ModelConfig) -> str:
    """The SavedModel directory being served (the loaded one, else the newest version)."""
    assert config.runner.path is not None
    loaded = registry.get(config.name).runner_info.get("path")
    return str(loaded) if loaded else str(resolve_savedmodel_dir(config.runner.path)[0])


def signature_tensors(config: ModelConfig) -> Flow[tuple[tuple[TensorMeta, ...], tuple[TensorMeta, ...], str]]:
    """The configured signature's inputs, outputs and method name (loads non-SavedModels)."""
    if config.runner.format == "savedmodel":
        signature = config.runner.signature
        try:
            meta = savedmodel_signatures(savedmodel_directory(config))[signature]
        except (OSError, ValueError, KeyError) as exc:  # the checks (E002, E005) said so already
            raise ServingError(
                "model_error", f"model {config.name!r}: its SavedModel signature {signature!r} cannot be read ({exc})"
            ) from None
        return meta.inputs, meta.outputs, meta.method_name
    handle = registry.get(config.name)
    if handle.status != READY:
        yield Load(config.name)
    if handle.status != READY:
        raise ServingError("model_error", handle.error or f"model {config.name!r} is not loaded")
    info = handle.runner_info
    inputs = tuple(_meta(t) for t in info["inputs"])
    outputs = tuple(_meta(t) for t in info["outputs"])
    return inputs, outputs, ""


def _meta(described: dict[str, object]) -> TensorMeta:
    shape = described["shape"]
    dims = None if shape is None else tuple(None if d < 0 else d for d in shape)  # type: ignore[attr-defined]
    return TensorMeta(str(described["name"]), str(described["dtype"]), dims)
