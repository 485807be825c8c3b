"""The serving settings in force, derived once per parsed ``TFBATCH``.

``conf.get_config()`` validates the settings (checks E011, E012) and is cached until
the settings change; this module keeps the serving view of the same parse, so a
request pays a dict lookup for them, not an import of the permission callable.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..conf import TOP_LEVEL_DEFAULTS, TFBatchConfig, get_config
from .permissions import Permission

__all__ = ["ServingOptions", "serving_options"]


@dataclass(frozen=True)
class ServingOptions:
    permission: Permission
    max_request_bytes: int
    max_in_flight_per_socket: int
    max_bytes_per_socket: int
    permission_recheck_seconds: float


_cache: tuple[TFBatchConfig, ServingOptions] | None = None


def serving_options() -> ServingOptions:
    """The options of the current settings (rebuilt when ``override_settings`` changes them)."""
    global _cache
    config = get_config()
    cached = _cache
    if cached is not None and cached[0] is config:
        return cached[1]
    raw = {**TOP_LEVEL_DEFAULTS, **{k: v for k, v in config.raw.items() if k in TOP_LEVEL_DEFAULTS}}
    options = ServingOptions(
        permission=Permission(raw["PERMISSION"]),
        max_request_bytes=raw["MAX_REQUEST_BYTES"],
        max_in_flight_per_socket=raw["MAX_IN_FLIGHT_PER_SOCKET"],
        max_bytes_per_socket=raw["MAX_BYTES_PER_SOCKET"],
        permission_recheck_seconds=float(raw["PERMISSION_RECHECK_SECONDS"]),
    )
    _cache = (config, options)
    return options
