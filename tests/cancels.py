"""A piece of work that loses its first cancel, for the tests of every place that cancels a
task and waits for it (`textback.supervisor.cancel_and_wait`)."""

from __future__ import annotations

import asyncio
import time


class LosesItsFirstCancel:
    """Work that swallows its first cancel, as asyncio.wait_for can on Python 3.11 when the
    cancel lands as its inner wait completes, and ends at the second; callable as any of the
    coroutines it stands in for (an AMI action, a webhook delivery, a media fetch, a worker)."""

    def __init__(self) -> None:
        self.cancels: list[float] = []
        self.started = asyncio.Event()
        self.ended = False

    async def __call__(self, *_args, **_kwargs):
        self.started.set()
        try:
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    self.cancels.append(time.monotonic())
                    if len(self.cancels) > 1:
                        raise
                    asyncio.current_task().uncancel()
        finally:
            self.ended = True
