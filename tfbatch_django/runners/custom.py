"""Runners built by the project's own code, named by a dotted path in settings."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ..batching.runner import Runner
from ..exceptions import ModelLoadError

__all__ = ["import_dotted", "load_custom_runner"]


def import_dotted(path: str) -> Any:
    """The object at ``package.module.attr`` (``package.module:attr`` works too)."""
    module_name, sep, attr = path.replace(":", ".").rpartition(".")
    if not sep or not module_name:
        raise ImportError(f"{path!r} is not a dotted path to an object (expected 'package.module.name')")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no attribute {attr!r}") from None


def load_custom_runner(path: str, options: Mapping[str, Any]) -> Runner:
    """Call the factory at ``path`` with ``options`` and check that it built a runner.

    The factory may be a ``Runner`` subclass or any callable returning an object with
    ``input_specs`` and ``run`` (for plain functions, wrap them in ``CallableRunner``).
    """
    try:
        factory = import_dotted(path)
    except ImportError as exc:
        raise ModelLoadError(f"RUNNER {path!r} cannot be imported: {exc}") from exc
    if not callable(factory):
        raise ModelLoadError(f"RUNNER {path!r} is a {type(factory).__name__}, not a callable factory")
    try:
        runner = factory(**options)
    except Exception as exc:
        raise ModelLoadError(f"RUNNER {path!r} raised while building the model: {type(exc).__name__}: {exc}") from exc
    if not (hasattr(runner, "input_specs") and callable(getattr(runner, "run", None))):
        raise ModelLoadError(
            f"RUNNER {path!r} returned {type(runner).__name__}, which is not a runner: it needs "
            "'input_specs' and 'run()' (wrap plain functions in tfbatch_django.CallableRunner)"
        )
    return runner  # type: ignore[no-any-return]
