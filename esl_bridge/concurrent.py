"""Running one function over several items at once, each in its own greenlet."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import gevent

T = TypeVar("T")
Item = TypeVar("Item")


def concurrently(fn: Callable[[Item], T], items: Sequence[Item]) -> list[T]:
    """``[fn(item) for item in items]``, each in its own greenlet (exceptions propagate)."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    greenlets = [gevent.spawn(fn, item) for item in items]
    gevent.joinall(greenlets, raise_error=True)
    return [g.value for g in greenlets]


__all__ = ["concurrently"]
