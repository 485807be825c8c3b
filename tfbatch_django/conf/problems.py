"""One problem found in ``settings.TFBATCH``, and the small checks every section uses."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Problem", "is_int", "is_number", "suggest"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the settings; ``id`` is the system check id suffix."""

    id: str  # "E001" ...
    msg: str
    hint: str | None = None
    level: str = "error"  # or "warning"
    #: False for problems that only surface when the model loads (a missing PATH, an
    #: unknown signature, a RUNNER that will not import): the model stays configured
    #: and fails alone, with status "failed", while the others serve. Also False for the
    #: monitoring keys (E020-E029), which fall back to their defaults.
    fatal: bool = True
    model: str | None = None  # the model the problem is about, if any


def suggest(key: str, choices: Mapping[str, Any]) -> str | None:
    """ "Did you mean ...?" for a mistyped key."""
    close = difflib.get_close_matches(str(key).upper(), list(choices), n=1)
    return f"Did you mean {close[0]!r}?" if close else None


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
