"""A small asyncio AMI client for lab tests, standard library only.

Tests need to see *every* frame Asterisk sends (to assert on event shapes
and to dump raw traces), which a full client library hides; this keeps them
all, in order, as received.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable


class AmiMessage(dict):
    """One AMI frame: first value of each header by name, plus all pairs and the raw text."""

    def __init__(self, raw: str):
        self.raw = raw
        self.pairs: list[tuple[str, str]] = []
        for line in raw.split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                self.pairs.append((name.strip(), value.strip()))
        super().__init__(reversed(self.pairs))  # first occurrence wins

    def getall(self, name: str) -> list[str]:
        """Every value of a header that may repeat (e.g. ChanVariable)."""
        return [value for key, value in self.pairs if key == name]

    @property
    def event(self) -> str | None:
        return self.get("Event")


class AmiError(RuntimeError):
    pass


class AmiClient:
    """Logged-in AMI connection that records every frame it receives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, banner: str):
        self.banner = banner
        self.frames: list[AmiMessage] = []
        self._reader = reader
        self._writer = writer
        self._action_ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future] = {}
        self._changed = asyncio.Condition()
        self._read_task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(cls, host: str, port: int, username: str, secret: str, timeout: float = 10.0) -> "AmiClient":
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        banner = (await asyncio.wait_for(reader.readline(), timeout)).decode().strip()
        client = cls(reader, writer, banner)
        response = await client.action("Login", Username=username, Secret=secret, timeout=timeout)
        if response.get("Response") != "Success":
            await client.close()
            raise AmiError(f"AMI login as {username} failed: {response.get('Message')}")
        return client

    @property
    def events(self) -> list[AmiMessage]:
        return [frame for frame in self.frames if frame.event is not None]

    async def action(self, name: str, timeout: float = 10.0, **headers: str) -> AmiMessage:
        """Send an action and return its Response frame (matched by ActionID)."""
        action_id = f"lab-{next(self._action_ids)}"
        lines = [f"Action: {name}", f"ActionID: {action_id}"]
        lines += [f"{key}: {value}" for key, value in headers.items()]
        future = asyncio.get_running_loop().create_future()
        self._pending[action_id] = future
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self._writer.drain()
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(action_id, None)

    async def wait_for(self, predicate: Callable[[AmiMessage], bool], timeout: float = 15.0) -> AmiMessage:
        """First event (already received or still to come) that satisfies predicate."""

        async def scan() -> AmiMessage:
            async with self._changed:
                checked = 0
                while True:
                    events = self.events
                    for event in events[checked:]:
                        if predicate(event):
                            return event
                    checked = len(events)
                    if self._read_task.done():
                        raise AmiError("AMI connection closed")
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(scan(), timeout)
        except asyncio.TimeoutError:
            raise AmiError(f"no matching AMI event within {timeout}s; saw {len(self.events)} events") from None

    def dump(self) -> str:
        """Every frame received, raw, separated by blank lines (the AMI wire form)."""
        return "".join(frame.raw + "\r\n\r\n" for frame in self.frames)

    async def close(self) -> None:
        if not self._writer.is_closing():
            try:
                self._writer.write(b"Action: Logoff\r\n\r\n")
                await self._writer.drain()
            except ConnectionError:
                pass
            self._writer.close()
        self._read_task.cancel()
        try:
            await self._read_task
        except (asyncio.CancelledError, ConnectionError):
            pass

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.readuntil(b"\r\n\r\n")
                frame = AmiMessage(data[:-4].decode("utf-8", "replace"))
                async with self._changed:
                    self.frames.append(frame)
                    self._changed.notify_all()
                future = self._pending.get(frame.get("ActionID", ""))
                if "Response" in frame and future is not None and not future.done():
                    future.set_result(frame)
        except (asyncio.IncompleteReadError, ConnectionError):
            async with self._changed:
                self._changed.notify_all()
