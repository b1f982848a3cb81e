"""FileTail against real files: creation after start, half-lines, bursts, truncation, switching."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from watchdog.observers import Observer

from agentbridge.agent.tail import FileTail, newest_matching
from agentbridge.testing import async_wait_until


class Sink:
    """Collects delivered lines and the offset seen while each was delivered."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.offsets: list[int] = []
        self.resets: list[str] = []
        self.tail: FileTail | None = None

    def on_line(self, line: str) -> None:
        self.lines.append(line)
        assert self.tail is not None
        self.offsets.append(self.tail.offset)

    def on_reset(self, reason: str) -> None:
        self.resets.append(reason)


def make_tail(path: Path, sink: Sink, **kw: object) -> FileTail:
    tail = FileTail(path, sink.on_line, on_reset=sink.on_reset, **kw)  # type: ignore[arg-type]
    sink.tail = tail
    return tail


async def until(cond: object, timeout: float = 5.0, what: str = "") -> None:
    async def check() -> bool:
        return bool(cond())  # type: ignore[operator]

    await async_wait_until(check, timeout=timeout, what=what)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


async def test_file_and_dirs_created_after_start(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "t.jsonl"
    sink = Sink()
    async with make_tail(path, sink, reconcile_interval=30):
        path.parent.mkdir(parents=True)
        append(path, b"one\ntwo\n")
        await until(lambda: sink.lines == ["one", "two"], what="lines")
        assert sink.offsets == [4, 8]


async def test_half_lines_and_batches(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"")
    sink = Sink()
    async with make_tail(path, sink, reconcile_interval=30) as tail:
        append(path, b'{"a": 1')
        append(path, b"")
        await asyncio.sleep(0)  # nothing to wait for: a half line must never be delivered
        append(path, b"}\nx\ny\nz")
        await until(lambda: sink.lines == ['{"a": 1}', "x", "y"], what="batch")
        assert tail.offset == len(b'{"a": 1}\nx\ny\n')
        append(path, b"zz\n")
        await until(lambda: sink.lines[-1:] == ["zzz"], what="rest of the half line")
        assert tail.offset == path.stat().st_size


async def test_thousand_rapid_appends_in_order_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    sink = Sink()
    async with make_tail(path, sink, reconcile_interval=30):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for i in range(1000):
                os.write(fd, f'{{"n": {i}}}\n'.encode())
        finally:
            os.close(fd)
        await until(lambda: len(sink.lines) >= 1000, what="1000 lines")
        await asyncio.sleep(0.05)  # let any duplicate show up before asserting exactly-once
    assert sink.lines == [f'{{"n": {i}}}' for i in range(1000)]


async def test_own_reads_do_not_trigger_more_reads(tmp_path: Path) -> None:
    """inotify reports our own open/close of the file; reacting to that would spin forever."""
    path = tmp_path / "t.jsonl"
    sink = Sink()
    async with make_tail(path, sink, reconcile_interval=30) as tail:
        append(path, b"x\n")
        await until(lambda: sink.lines == ["x"], what="line")
        before = tail.reads
        await asyncio.sleep(0.3)  # a measurement window, not a wait for a condition
        assert tail.reads - before <= 1


async def test_resume_from_saved_offset(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"old1\nold2\n")
    sink = Sink()
    async with make_tail(path, sink, offset=5, reconcile_interval=30):
        await until(lambda: sink.lines == ["old2"], what="rest after offset")
        append(path, b"new\n")
        await until(lambda: sink.lines == ["old2", "new"], what="new line")


async def test_corrupt_bytes_decoded_with_replacement(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    sink = Sink()
    async with make_tail(path, sink, reconcile_interval=30):
        append(path, b"ok \xff\xfe bad\r\n\xe2\x9d\xaf split\n")
        await until(lambda: len(sink.lines) == 2, what="two lines")
    assert sink.lines == ["ok \ufffd\ufffd bad", "❯ split"]


async def test_multibyte_char_split_across_writes(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    sink = Sink()
    async with make_tail(path, sink, reconcile_interval=30):
        append(path, b"\xe2\x9d")
        await asyncio.sleep(0.05)
        append(path, b"\xaf\n")
        await until(lambda: sink.lines == ["❯"], what="joined char")


async def test_truncation_restarts_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    sink = Sink()
    async with make_tail(path, sink, reconcile_interval=30) as tail:
        append(path, b"aaaa\nbbbb\n")
        await until(lambda: len(sink.lines) == 2, what="first lines")
        path.write_bytes(b"c\n")  # truncates in place (same inode)
        await until(lambda: sink.lines[-1:] == ["c"], what="line after truncation")
        assert sink.resets == ["truncated"]
        assert tail.offset == 2


async def test_replacement_by_rename_restarts(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    sink = Sink()
    async with make_tail(path, sink, reconcile_interval=30):
        append(path, b"first\n")
        await until(lambda: sink.lines == ["first"], what="first")
        tmp = tmp_path / "new.tmp"
        tmp.write_bytes(b"second file line one, longer than before\n")
        os.replace(tmp, path)
        await until(lambda: sink.lines[-1:] == ["second file line one, longer than before"])
        assert sink.resets == ["replaced"]


async def test_switch_to_other_file(tmp_path: Path) -> None:
    one, two = tmp_path / "one.jsonl", tmp_path / "sub" / "two.jsonl"
    sink = Sink()
    async with make_tail(one, sink, reconcile_interval=30) as tail:
        append(one, b"1a\n")
        await until(lambda: sink.lines == ["1a"], what="one")
        tail.switch_to(two)
        append(one, b"1b\n")  # the old file is not followed any more
        two.parent.mkdir()
        append(two, b"2a\n")
        await until(lambda: sink.lines == ["1a", "2a"], what="two")
        assert tail.path == two.absolute()
        assert tail.offset == 3


async def test_reconcile_catches_up_without_events(tmp_path: Path) -> None:
    """With an observer that never reports anything, the periodic reconcile still reads."""
    path = tmp_path / "t.jsonl"
    sink = Sink()

    class DeafObserver:
        def schedule(self, handler: object, path: str, recursive: bool = False) -> object:
            return object()

        def unschedule(self, watch: object) -> None:
            pass

    async with make_tail(path, sink, observer=DeafObserver(), reconcile_interval=0.05):
        append(path, b"late\n")
        await until(lambda: sink.lines == ["late"], what="reconciled line")


async def test_shared_observer_serves_many_tails(tmp_path: Path) -> None:
    observer = Observer()
    observer.start()
    try:
        sinks = [Sink() for _ in range(3)]
        tails = [
            make_tail(tmp_path / f"{i}.jsonl", s, observer=observer, reconcile_interval=30)
            for i, s in enumerate(sinks)
        ]
        for t in tails:
            await t.start()
        await tails[0].stop()  # stopping one must not deafen the others in the same directory
        for i in range(3):
            append(tmp_path / f"{i}.jsonl", f"line{i}\n".encode())
        await until(lambda: sinks[1].lines == ["line1"] and sinks[2].lines == ["line2"])
        for t in tails[1:]:
            await t.stop()
    finally:
        observer.stop()
        observer.join(5)


@pytest.mark.parametrize("count", [0, 3])
def test_newest_matching(tmp_path: Path, count: int) -> None:
    root = tmp_path / "sessions"
    newest = None
    for i in range(count):
        d = root / "2026" / "11" / f"{20 + i:02d}"
        d.mkdir(parents=True)
        newest = d / f"rollout-{i}.jsonl"
        newest.write_text("x\n")
        os.utime(newest, (1_000_000 + i, 1_000_000 + i))
    assert newest_matching(root, "*/*/*/rollout-*.jsonl") == newest
