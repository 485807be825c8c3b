"""The serving keys: who may predict over HTTP/WebSocket, and request limits."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .problems import Problem, is_int

__all__ = ["PERMISSION_SHORTCUTS", "SERVING_DEFAULTS", "check_serving"]

SERVING_DEFAULTS: dict[str, Any] = {
    "PERMISSION": "authenticated",  # "authenticated", "staff", "any", or a dotted path to f(user, model) -> bool
    "MAX_REQUEST_BYTES": 2_621_440,  # largest HTTP body / WebSocket frame accepted (413 / too_large)
    "MAX_IN_FLIGHT_PER_SOCKET": 64,  # requests one WebSocket may have unanswered at once
    "MAX_BYTES_PER_SOCKET": 67_108_864,  # bytes of requests in flight + answers being sent, per WebSocket
    "PERMISSION_RECHECK_SECONDS": 5,  # a socket reloads its user and re-asks PERMISSION this often (0: every request)
}

#: ``PERMISSION`` shortcuts (anything else must be a dotted path to a callable).
PERMISSION_SHORTCUTS = ("authenticated", "staff", "any")


def check_serving(top: Mapping[str, Any], problems: list[Problem]) -> None:
    """The serving keys: E011 for PERMISSION, E012 for the limits."""
    permission = top["PERMISSION"]
    if not isinstance(permission, str):
        message = f"TFBATCH['PERMISSION'] must be a string, got {type(permission).__name__}."
        problems.append(Problem("E011", message, _PERMISSION_HINT))
    elif permission not in PERMISSION_SHORTCUTS:
        from ..runners.custom import import_dotted

        try:
            obj = import_dotted(permission)
        except Exception as exc:  # noqa: BLE001 - ImportError, or the module raising at import
            problems.append(
                Problem("E011", f"TFBATCH['PERMISSION'] {permission!r} cannot be imported: {exc}.", _PERMISSION_HINT)
            )
        else:
            if not callable(obj):
                problems.append(
                    Problem(
                        "E011",
                        f"TFBATCH['PERMISSION'] {permission!r} is a {type(obj).__name__}, not a callable.",
                        _PERMISSION_HINT,
                    )
                )
    for key in ("MAX_REQUEST_BYTES", "MAX_IN_FLIGHT_PER_SOCKET", "MAX_BYTES_PER_SOCKET"):
        if not (is_int(top[key]) and top[key] >= 1):
            problems.append(Problem("E012", f"TFBATCH[{key!r}] must be a positive integer, got {top[key]!r}."))
    if (
        is_int(top["MAX_BYTES_PER_SOCKET"])
        and is_int(top["MAX_REQUEST_BYTES"])
        and 1 <= top["MAX_BYTES_PER_SOCKET"] < top["MAX_REQUEST_BYTES"]
    ):
        problems.append(
            Problem(
                "E012",
                f"TFBATCH['MAX_BYTES_PER_SOCKET'] ({top['MAX_BYTES_PER_SOCKET']}) is smaller than "
                f"TFBATCH['MAX_REQUEST_BYTES'] ({top['MAX_REQUEST_BYTES']}): a socket could not send the largest "
                "request allowed.",
            )
        )
    recheck = top["PERMISSION_RECHECK_SECONDS"]
    if not (isinstance(recheck, int | float) and not isinstance(recheck, bool) and 0 <= recheck < math.inf):
        problems.append(
            Problem("E012", f"TFBATCH['PERMISSION_RECHECK_SECONDS'] must be a number of seconds >= 0, got {recheck!r}.")
        )


_PERMISSION_HINT = "Use 'authenticated', 'staff', 'any', or a dotted path to a callable (user, model_name) -> bool."
