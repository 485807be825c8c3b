"""The batching knobs of one model, independent of where they were configured."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MAX_TIMEOUT", "BatchConfig"]

#: Deadlines further away than this (about 31 years) are no deadline at all: a caller
#: may ask for ``timeout=1e13`` or ``math.inf`` and simply waits as long as it takes.
MAX_TIMEOUT = 1e9


@dataclass(frozen=True)
class BatchConfig:
    """How one model's requests are batched. Times are in seconds.

    ``allowed_batch_sizes``: when set, every batch is padded with filler rows up to the
    next allowed size (models compiled per shape, e.g. XLA, then see a few shapes only).
    ``max_concurrent_batches`` > 1 runs that many batches at once on separate threads;
    only for runners that declare themselves thread-safe.
    """

    max_batch_size: int = 32
    max_latency: float = 0.005
    allowed_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 1024
    max_concurrent_batches: int = 1
    default_timeout: float | None = None
    warmup: bool = True

    def __post_init__(self) -> None:
        for field_name in ("max_batch_size", "max_queue_size", "max_concurrent_batches"):
            value = getattr(self, field_name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field_name} must be a positive integer, got {value!r}")
        if not 0 <= self.max_latency < math.inf:  # also NaN
            raise ValueError(f"max_latency must be a finite number >= 0, got {self.max_latency!r}")
        if self.default_timeout is not None:
            if not self.default_timeout > 0:  # also NaN
                raise ValueError(f"default_timeout must be positive or None, got {self.default_timeout!r}")
            if self.default_timeout >= MAX_TIMEOUT:  # "forever" is no deadline
                object.__setattr__(self, "default_timeout", None)
        sizes = self.allowed_batch_sizes
        if sizes:
            if any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in sizes):
                raise ValueError(f"allowed_batch_sizes must be positive integers, got {sizes!r}")
            if list(sizes) != sorted(set(sizes)):
                raise ValueError(f"allowed_batch_sizes must be strictly increasing, got {sizes!r}")
            if sizes[-1] < self.max_batch_size:
                raise ValueError(
                    f"the largest allowed batch size ({sizes[-1]}) must reach max_batch_size "
                    f"({self.max_batch_size}), or full batches could not be padded"
                )

    @property
    def warmup_sizes(self) -> tuple[int, ...]:
        """Batch sizes to run once at start so no request pays for a trace or compile."""
        if self.allowed_batch_sizes:
            return tuple(s for s in self.allowed_batch_sizes if s <= self._largest_padded)
        return tuple(sorted({1, self.max_batch_size}))

    @property
    def _largest_padded(self) -> int:
        for s in self.allowed_batch_sizes:
            if s >= self.max_batch_size:
                return s
        return self.max_batch_size
