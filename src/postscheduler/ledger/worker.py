"""The ledger's own thread, with group commit.

The daemon's event loop must not wait for the disk: every ledger call is handed to this
thread and awaited. Calls that queue up while a commit is in progress are run together in
the next transaction, and each caller hears back only once that transaction is committed:
a hundred deliveries due at one instant cost one write to disk, and the rule "committed
before the next network step" still holds for every one of them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .base import Ledger

T = TypeVar("T")

_Item = tuple[Callable[..., Any], tuple[Any, ...], "concurrent.futures.Future[Any]"]


class LedgerWorker:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger", daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((fn, args, future))
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Item]) -> None:
        outcomes: list[tuple[concurrent.futures.Future[Any], Any, BaseException | None]] = []
        try:
            with self.ledger.transaction():
                for fn, args, future in batch:
                    try:
                        outcomes.append((future, fn(*args), None))
                    except Exception as exc:  # one caller's error is that caller's alone
                        outcomes.append((future, None, exc))
        except Exception as exc:  # the commit itself failed: nobody may act on it
            for _, _, future in batch:
                future.set_exception(exc)
            return
        for future, result, error in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
