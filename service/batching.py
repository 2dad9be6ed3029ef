"""Asyncio micro-batcher: groups concurrent requests into one model call on one worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Overloaded(RuntimeError):
    """The queue is full: the caller should answer 503 and ask the client to retry later."""


@dataclass
class _Pending(Generic[Item]):
    key: Any  # items with different keys never share a batch (e.g. two model versions)
    item: Item
    future: asyncio.Future


class MicroBatcher(Generic[Item, Result]):
    """Collects items for up to `max_wait_s` (or until `max_batch` are waiting) and hands them
    to `run_batch(key, items) -> results` on a single worker thread, off the event loop.
    With `coming` (how many items are on their way, e.g. photos still decoding), a batch stops
    waiting as soon as nothing is queued and nothing is coming: a lone request is not held back
    for company that cannot arrive.

    One worker thread is the point: a Keras model is not safe to call from several threads,
    and one larger call is faster than several small ones. At most `max_queue` items wait;
    beyond that `submit` raises Overloaded instead of letting latency grow without bound.
    """

    def __init__(
        self,
        run_batch: Callable[[Any, list[Item]], Sequence[Result]],
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: Callable[[int, float], None] | None = None,
        coming: Callable[[], int] | None = None,
        thread_name: str = "model",
    ):
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch and max_queue must be >= 1, max_wait_s >= 0")
        self._run_batch = run_batch
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self._on_batch = on_batch
        self._coming = coming
        self._thread_name = thread_name
        self._queue: asyncio.Queue[_Pending[Item]] | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def depth(self) -> int:
        """Items waiting for a batch (not counting the batch running now)."""
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._thread_name)
        self._worker = asyncio.create_task(self._serve(), name="micro-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._queue is not None:
            while not self._queue.empty():
                pending = self._queue.get_nowait()
                if not pending.future.done():
                    pending.future.set_exception(Overloaded("the service is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._worker = self._executor = None

    async def submit(self, item: Item, key: Any = None) -> Result:
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(key, item, future))
        except asyncio.QueueFull:
            raise Overloaded(f"{self.max_queue} requests are already waiting") from None
        return await future

    async def _serve(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        carry: _Pending[Item] | None = None
        while True:
            first = carry or await self._queue.get()
            carry = None
            batch = [first]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                remaining = deadline - loop.time()
                if self._queue.empty() and (remaining <= 0 or self._alone()):
                    break
                try:
                    nxt = (
                        self._queue.get_nowait()
                        if not self._queue.empty()
                        else await asyncio.wait_for(self._queue.get(), remaining)
                    )
                except TimeoutError:
                    break
                if nxt.key is not first.key:
                    carry = nxt  # another model version: starts the next batch
                    break
                batch.append(nxt)
            live = [p for p in batch if not p.future.done()]  # a cancelled request is dropped
            if live:
                await self._run(loop, live)

    def _alone(self) -> bool:
        return self._coming is not None and self._coming() == 0

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending[Item]]) -> None:
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(
                self._executor, self._run_batch, batch[0].key, [p.item for p in batch]
            )
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)}")
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        finally:
            if self._on_batch is not None:
                self._on_batch(len(batch), time.perf_counter() - started)
        for p, result in zip(batch, results, strict=True):
            if not p.future.done():
                p.future.set_result(result)
