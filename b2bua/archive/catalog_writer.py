"""The recording hub's catalog writes, done by a thread of their own.

Theory of operation: every catalog write is an SQLite transaction, and in WAL mode
with synchronous=FULL (Python's default, kept: consent evidence must survive a power
cut) each commit waits for an fsync. On a busy or slow disk (an SD card, a VM's shared
storage) one fsync can take hundreds of milliseconds, and on the media loop that is a
stall of every call's audio. So the hub hands its writes to `CatalogWriter`: the calls
return at once, one daemon thread opens its own connection (SQLite connections stay in
the thread that made them) and applies the writes in order. A call's row id is made by
the caller (`catalog.new_id`), so `new_call` needs no answer from the thread.

Order is kept (one FIFO, one thread): a row is inserted before its consent, start and
end. A write that fails (a row deleted meanwhile, a full disk) is logged with
`event=catalog_write_failed` and counted; the writes after it still run. `drain` waits
until everything queued so far is written (shutdown, tests); `close` drains, then stops
the thread and closes its connection. The queue is bounded: if the disk stalls for long,
`submit` blocks the loop rather than letting memory grow without end.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from b2bua.archive.catalog import Catalog, new_id, recording_path

log = logging.getLogger("b2bua.catalog")

QUEUE_LIMIT = 10_000  # writes waiting; about 5 per call
_STOP = object()


class CatalogWriter:
    """The hub's catalog (the methods it uses), written by one background thread."""

    def __init__(self, open_catalog: Callable[[], Catalog], directory: Path) -> None:
        self.directory = Path(directory).expanduser().absolute()
        self.failures = 0
        self._open = open_catalog
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_LIMIT)
        self._opened = threading.Event()
        self._open_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="catalog-writer", daemon=True)
        self._thread.start()
        self._opened.wait()
        if self._open_error is not None:
            raise self._open_error

    # -- what the hub calls (returns at once) -------------------------------------------
    def path_for(self, record_id: str) -> Path:
        return recording_path(self.directory, record_id)

    def new_call(
        self,
        call_id: str | None,
        direction: str,
        caller: str | None,
        callee: str | None,
        extension: str | None,
        started_at: float,
    ) -> str:
        record_id = new_id(started_at)
        self._submit(
            "new_call",
            (call_id, direction, caller, callee, extension, started_at),
            {"record_id": record_id},
        )
        return record_id

    def set_consent(self, *args: Any, **kwargs: Any) -> None:
        self._submit("set_consent", args, kwargs)

    def recording_started(self, *args: Any, **kwargs: Any) -> None:
        self._submit("recording_started", args, kwargs)

    def recording_finished(self, *args: Any, **kwargs: Any) -> None:
        self._submit("recording_finished", args, kwargs)

    def not_recorded(self, *args: Any, **kwargs: Any) -> None:
        self._submit("not_recorded", args, kwargs)

    def call_ended(self, *args: Any, **kwargs: Any) -> None:
        self._submit("call_ended", args, kwargs)

    # -- life cycle -----------------------------------------------------------------------
    def drain(self, timeout: float = 30.0) -> bool:
        """Waits until every write queued before this call is done; False on timeout."""
        done = threading.Event()
        self._queue.put(done.set)
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # -- the thread -----------------------------------------------------------------------
    def _submit(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._queue.put((method, args, kwargs))

    def _run(self) -> None:
        try:
            catalog = self._open()
        except BaseException as exc:  # handed to the constructor, which raises it
            self._open_error = exc
            self._opened.set()
            return
        self._opened.set()
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                if callable(item):  # a drain marker
                    item()
                    continue
                method, args, kwargs = item
                try:
                    getattr(catalog, method)(*args, **kwargs)
                except Exception as exc:  # one bad write must not stop the others
                    self.failures += 1
                    log.error("event=catalog_write_failed op=%s error=%s", method, exc)
        finally:
            catalog.close()
