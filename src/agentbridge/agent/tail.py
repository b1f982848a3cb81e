"""Tail one growing file from a saved byte offset, driven by watchdog, delivering whole lines.

Why it looks like this (see field-notes "Watching files"): inotify coalesces events (1,000 appends
→ ~11 events), so every event means "read from the saved offset to EOF", never "one event, one
line". The partial last line is kept for the next read. inotify can stop silently, so a periodic
reconcile reads anyway. The file (and its directories) may not exist yet, so we watch the nearest
existing ancestor and move the watch down as directories appear.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

__all__ = ["DirWatcher", "FileTail", "newest_matching"]

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20

DirCallback = Callable[[str], None]
_IGNORED = frozenset({"opened", "closed_no_write"})


class _Dispatch(FileSystemEventHandler):
    """Fans one directory's events out to the subscribers of that directory."""

    def __init__(self) -> None:
        self.subscribers: dict[int, DirCallback] = {}
        self.lock = threading.Lock()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _IGNORED:
            return  # our own reads open and close the file: reacting would loop forever
        paths = [os.fsdecode(event.src_path)]
        dest = getattr(event, "dest_path", "")
        if dest:
            paths.append(os.fsdecode(dest))
        with self.lock:
            subs = list(self.subscribers.values())
        for cb in subs:
            for p in paths:
                try:
                    cb(p)
                except Exception:  # a subscriber must never kill the observer thread
                    log.exception("tail: directory subscriber failed")


class DirWatcher:
    """One watchdog observer shared by many tails, with reference-counted directory watches.

    watchdog's ``unschedule`` drops every handler of a directory, so tails sharing an observer
    must share watches through this hub. ``DirWatcher.for_observer`` returns the hub of an
    observer so callers can just pass their observer around.
    """

    _hubs: ClassVar[weakref.WeakKeyDictionary[Any, DirWatcher]] = weakref.WeakKeyDictionary()
    _hubs_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, observer: Any) -> None:
        self.observer = observer
        self._lock = threading.Lock()
        self._dirs: dict[str, tuple[Any, _Dispatch]] = {}
        self._next_id = 0

    @classmethod
    def for_observer(cls, observer: Any) -> DirWatcher:
        with cls._hubs_lock:
            hub = cls._hubs.get(observer)
            if hub is None:
                hub = cls(observer)
                cls._hubs[observer] = hub
            return hub

    def subscribe(self, directory: str, callback: DirCallback) -> tuple[str, int]:
        """Call ``callback(path)`` (observer thread) for every event in ``directory``."""
        with self._lock:
            entry = self._dirs.get(directory)
            if entry is None:
                dispatch = _Dispatch()
                watch = self.observer.schedule(dispatch, directory, recursive=False)
                entry = (watch, dispatch)
                self._dirs[directory] = entry
            self._next_id += 1
            token = self._next_id
            with entry[1].lock:
                entry[1].subscribers[token] = callback
            return directory, token

    def unsubscribe(self, handle: tuple[str, int]) -> None:
        directory, token = handle
        with self._lock:
            entry = self._dirs.get(directory)
            if entry is None:
                return
            watch, dispatch = entry
            with dispatch.lock:
                dispatch.subscribers.pop(token, None)
                empty = not dispatch.subscribers
            if empty:
                del self._dirs[directory]
                with contextlib.suppress(Exception):  # directory may be gone already
                    self.observer.unschedule(watch)


def _nearest_existing_dir(path: Path) -> Path:
    d = path.parent
    while not d.is_dir() and d != d.parent:
        d = d.parent
    return d


class FileTail:
    """Tail ``path`` from ``offset``; ``on_line(line)`` runs on the asyncio loop, in file order.

    While ``on_line`` runs, ``tail.offset`` is the byte offset just after that line, so a caller
    can persist it and resume exactly there. ``on_reset(reason)`` runs (on the loop, before any
    line of the new content) when the file was truncated or replaced and reading restarts at 0.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_line: Callable[[str], None],
        *,
        offset: int = 0,
        on_reset: Callable[[str], None] | None = None,
        observer: Any = None,
        reconcile_interval: float = 1.0,
    ) -> None:
        self._path = Path(path).absolute()
        self._on_line = on_line
        self._on_reset = on_reset
        self._reconcile_interval = reconcile_interval
        self._own_observer = observer is None
        self._observer: Any = observer if observer is not None else Observer()
        self._hub = DirWatcher.for_observer(self._observer)
        # Lock order matters: watchdog calls our handler while holding its own lock, so the
        # observer thread only ever takes _lock (reads); observer methods are called under
        # _watch_lock only, never under _lock and never from the observer thread.
        self._lock = threading.RLock()
        self._watch_lock = threading.Lock()
        self._read_offset = offset  # bytes read from the file (lines + partial)
        self._partial = b""
        self._ino: int | None = None
        self._generation = 0  # reader side; bumped by every reset or switch
        self._loop_generation = 0  # loop side: lines of other generations are stale
        self._delivered = offset  # loop side: end of the last line handed to on_line
        self._watch_dir: Path | None = None
        self._watch_handle: tuple[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.resets = 0
        self.reads = 0  # file opens: lets tests prove events do not feed back into reads

    @property
    def path(self) -> Path:
        return self._path

    @property
    def offset(self) -> int:
        """Bytes fully consumed (delivered as complete lines) – persist this to resume."""
        return self._delivered

    async def start(self) -> None:
        """Begin watching; reads what is already there at once."""
        self._loop = asyncio.get_running_loop()
        if self._own_observer:
            self._observer.start()
        await asyncio.to_thread(self._rewatch_and_check)
        self._task = asyncio.create_task(self._reconcile(), name=f"tail-reconcile:{self._path}")

    async def stop(self) -> None:
        """Stop watching; undelivered partial data stays unconsumed (offset does not cover it)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self._unwatch)
        if self._own_observer:
            self._observer.stop()
            await asyncio.to_thread(self._observer.join, 5)

    async def __aenter__(self) -> FileTail:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def switch_to(self, new_path: str | os.PathLike[str], offset: int = 0) -> None:
        """Follow another file from now on (``/clear``, resume); call from the loop thread."""
        with self._lock:
            self._path = Path(new_path).absolute()
            self._read_offset = offset
            self._partial = b""
            self._ino = None
            self._generation += 1
            self._loop_generation = self._generation
            self._delivered = offset
        if self._loop is not None and not self._closed:
            self._loop.run_in_executor(None, self._rewatch_and_check)

    # -- watching ---------------------------------------------------------------------------

    def _unwatch(self) -> None:
        with self._watch_lock:
            if self._watch_handle is not None:
                self._hub.unsubscribe(self._watch_handle)
                self._watch_handle = None
                self._watch_dir = None

    def _quiet(self) -> bool:
        """One stat on the loop: the file is as we last read it and watched in place.

        Idle agents are the common case; with many agents a thread hop per tail per second
        was most of an idle supervisor's CPU.
        """
        if self._watch_dir != self._path.parent:
            # still waiting for the file's directory: quiet while the watch is on the nearest
            # directory that exists (an agent that has not written its transcript yet)
            return self._watch_dir == _nearest_existing_dir(self._path)
        try:
            st = os.stat(self._path)
        except OSError:
            return self._ino is None  # still not created: nothing to read
        return st.st_ino == self._ino and st.st_size == self._read_offset

    def _rewatch_and_check(self) -> None:
        """Watch the file's directory, or its nearest existing ancestor until it appears."""
        with self._watch_lock:
            while not self._closed:
                target = _nearest_existing_dir(self._path)
                if target == self._watch_dir:
                    break
                if self._watch_handle is not None:
                    self._hub.unsubscribe(self._watch_handle)
                    self._watch_handle = None
                try:
                    self._watch_handle = self._hub.subscribe(str(target), self._on_fs_event)
                    self._watch_dir = target
                except OSError:  # vanished between the check and the schedule: retry later
                    log.debug("tail: could not watch %s", target, exc_info=True)
                    self._watch_dir = None
                    break
        self.check()

    def _on_fs_event(self, path: str) -> None:
        """Observer thread: read on our file's events; move the watch via the loop's executor."""
        watch_dir, loop = self._watch_dir, self._loop
        if watch_dir is not None and watch_dir != self._path.parent:
            if loop is not None and not self._closed:
                loop.call_soon_threadsafe(self._rewatch_soon)
        elif os.path.basename(path) == self._path.name:
            # by name only: the watch is on our directory, and macOS FSEvents reports resolved
            # paths (/private/tmp/…) that would not compare equal to ours
            self.check()

    def _rewatch_soon(self) -> None:
        if self._loop is not None and not self._closed:
            self._loop.run_in_executor(None, self._rewatch_and_check)

    async def _reconcile(self) -> None:
        """inotify can stop silently (watchdog #276): compare size and offset every interval."""
        while not self._closed:
            await asyncio.sleep(self._reconcile_interval)
            if self._quiet():
                continue  # nothing new and the watch is where it should be: no thread hop
            try:
                await asyncio.to_thread(self._rewatch_and_check)
            except Exception:
                log.exception("tail: reconcile of %s failed", self._path)

    # -- reading ----------------------------------------------------------------------------

    def check(self) -> None:
        """Read from the saved offset to EOF and hand complete lines to the loop (any thread)."""
        with self._lock:
            if self._closed or self._loop is None:
                return
            try:
                fd = os.open(self._path, os.O_RDONLY)
            except FileNotFoundError:
                return
            except OSError:
                log.warning("tail: cannot open %s", self._path, exc_info=True)
                return
            self.reads += 1
            try:
                st = os.fstat(fd)
                reason = ""
                if self._ino is not None and st.st_ino != self._ino:
                    reason = "replaced"
                elif st.st_size < self._read_offset:
                    reason = "truncated"
                self._ino = st.st_ino
                if reason:
                    self._restart(reason)
                if st.st_size == self._read_offset:
                    return
                os.lseek(fd, self._read_offset, os.SEEK_SET)
                while chunk := os.read(fd, READ_CHUNK):
                    self._consume(chunk)
            finally:
                os.close(fd)

    def _restart(self, reason: str) -> None:
        log.info("tail: %s was %s; reading from 0", self._path, reason)
        self.resets += 1
        self._read_offset = 0
        self._partial = b""
        self._generation += 1
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._deliver_reset, self._generation, reason)

    def _consume(self, chunk: bytes) -> None:
        start = self._read_offset - len(self._partial)
        self._read_offset += len(chunk)
        data = self._partial + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self._partial = data
            return
        self._partial = data[cut + 1 :]
        lines: list[tuple[str, int]] = []
        pos = start
        for raw in data[:cut].split(b"\n"):
            pos += len(raw) + 1
            lines.append((raw.removesuffix(b"\r").decode("utf-8", "replace"), pos))
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._deliver, self._generation, lines)

    def _deliver_reset(self, generation: int, reason: str) -> None:
        if generation <= self._loop_generation or self._closed:
            return  # superseded by a switch_to
        self._loop_generation = generation
        self._delivered = 0
        if self._on_reset is not None:
            try:
                self._on_reset(reason)
            except Exception:
                log.exception("tail: on_reset callback failed")

    def _deliver(self, generation: int, lines: list[tuple[str, int]]) -> None:
        for line, end in lines:
            if generation != self._loop_generation or self._closed:
                return  # a switch or reset happened after this read: drop stale lines
            self._delivered = end
            try:
                self._on_line(line)
            except Exception:
                log.exception("tail: on_line callback failed")


def newest_matching(root: str | os.PathLike[str], pattern: str) -> Path | None:
    """Newest file (by mtime) under ``root`` matching ``pattern`` – e.g. Codex's
    ``sessions/*/*/*/rollout-*.jsonl``; None when there is none (yet)."""
    best: tuple[float, Path] | None = None
    for p in Path(root).glob(pattern):
        try:
            mtime = p.stat().st_mtime
        except OSError:
            continue
        if p.is_file() and (best is None or mtime > best[0]):
            best = (mtime, p)
    return best[1] if best else None
