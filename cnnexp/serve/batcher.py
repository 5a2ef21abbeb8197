"""Micro-batching: requests that arrive within `max_wait` of each other share one forward pass of at
most `max_batch` images. The forward pass runs on one worker thread, so the event loop keeps reading
requests (and filling the next batch) while the model computes."""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

log = logging.getLogger("uvicorn.error")  # uvicorn's own log: one format for its lines and ours


class MicroBatcher:
    def __init__(self, classify: Callable[[list], tuple[list, float]], max_batch: int, max_wait_s: float,
                 observe: Callable[[float, int], None] = lambda seconds, size: None):
        """`classify(items) -> (one result per item, seconds)` runs a forward pass over a list of items;
        `observe(seconds, size)` is told of each one that succeeds (the service's metrics)."""
        self.classify, self.max_batch, self.max_wait_s, self.observe = classify, max_batch, max_wait_s, observe
        self.queue: asyncio.Queue = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnexp-forward")

    async def submit(self, item) -> tuple[Any, float, int]:
        """(this item's result, the forward pass's seconds, the batch size)."""
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((item, future))
        return await future

    async def run(self) -> None:
        """Forever: wait for a first item, gather more until the batch is full or max_wait has passed,
        classify them together."""
        while True:
            batch = await self.gather()
            await self.dispatch(batch)

    async def gather(self) -> list[tuple]:
        loop = asyncio.get_running_loop()
        batch = [await self.queue.get()]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except TimeoutError:
                break
        return [(item, future) for item, future in batch if not future.done()]  # drop requests already gone

    async def dispatch(self, batch: list[tuple]) -> None:
        """One forward pass; if it fails, each item alone, so one bad item fails only its own request."""
        if not batch:
            return
        loop = asyncio.get_running_loop()
        try:
            results, seconds = await loop.run_in_executor(self.executor, self.classify, [i for i, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                log.exception("forward pass failed")
                settle(batch[0][1], exception=exc)
                return
            for single in batch:
                await self.dispatch([single])
            return
        self.observe(seconds, len(batch))
        for (_, future), result in zip(batch, results):
            settle(future, (result, seconds, len(batch)))

    def close(self) -> None:
        self.executor.shutdown(wait=True)


def settle(future: asyncio.Future, result=None, exception: BaseException | None = None) -> None:
    if future.done():  # the client went away while its batch ran
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)
