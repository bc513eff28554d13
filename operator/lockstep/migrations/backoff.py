"""How long to wait before retrying a migration that hit lock_timeout.

Exponential backoff with full jitter: the n-th wait is uniform in [0, min(cap, base * 2**(n-1))].
Jitter spreads retries out, so a runner does not come back in step with the transaction that
blocked it, and the wait stays short on average while the ceiling grows.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def ceiling(retry: int, *, base: float, cap: float) -> float:
    """The longest wait before retry number `retry` (1 for the first retry)."""
    if retry < 1:
        raise ValueError("retries are numbered from 1")
    # min() before the power would overflow for large retry numbers
    exponent = min(retry - 1, 64)
    return max(0.0, min(cap, base * (2.0**exponent)))


def delay(
    retry: int, *, base: float, cap: float, uniform: Callable[[], float] = random.random
) -> float:
    """The wait before retry number `retry`: full jitter under `ceiling`.

    `uniform` returns a number in [0, 1); it is injectable so that schedules can be tested.
    """
    return uniform() * ceiling(retry, base=base, cap=cap)


def schedule(
    retries: int, *, base: float, cap: float, uniform: Callable[[], float] = random.random
) -> list[float]:
    """The waits before each of `retries` retries."""
    return [delay(n, base=base, cap=cap, uniform=uniform) for n in range(1, retries + 1)]
