"""One async SDK client per running event loop: an ``httpx.AsyncClient``'s
connections belong to the loop that opened them, and LangChain objects are
often used from several loops (a test per loop, ``asyncio.run`` per call)."""

from __future__ import annotations

import asyncio
from typing import Callable, Generic, Optional, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """Holds the object ``make()`` built for the current event loop, and
    builds a new one when called from another loop."""

    def __init__(self, make: Callable[[], T], given: Optional[T] = None) -> None:
        self._make = make
        self._given = given
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._obj: Optional[T] = None

    def get(self) -> T:
        if self._given is not None:
            return self._given
        loop = asyncio.get_running_loop()
        if self._obj is None or self._loop is not loop:
            self._obj, self._loop = self._make(), loop
        return self._obj
