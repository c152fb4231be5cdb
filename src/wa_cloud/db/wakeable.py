"""A loop on a task of its own for as long as an `async with` block: woken by `_wake`, told to
finish by `_closed` (set, then woken, as the block ends), and awaited before the block is left.
The group commit and the announcer run on it."""

from __future__ import annotations

import asyncio
from typing import Self


class WakeableLoop:
    def __init__(self, name: str) -> None:
        self._loop_name = name
        self._wake = asyncio.Event()
        self._closed = False
        self._runner: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        # Open again after a close: a supervised consumer that died re-enters its loops.
        self._closed = False
        self._runner = asyncio.create_task(self._run(), name=self._loop_name)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closed = True
        self._wake.set()
        if self._runner is not None:
            await self._runner

    async def _run(self) -> None:
        raise NotImplementedError
