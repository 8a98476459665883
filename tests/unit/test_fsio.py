"""The store's crash-safe writes: a reader sees the old file or the new one, never a part of either.

``write_atomic`` replaces ``CURRENT``, manifests, rollout files: a reader that caught one half
written would serve a version that does not exist. Two ways a write goes wrong are shown for real,
in this process: a writer stopped midway (the file size limit, ``RLIMIT_FSIZE``, makes its write
fail as a full disk would), and a reader reading while a writer writes, on another thread.
"""

from __future__ import annotations

import errno
import resource
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from classifier.store.fsio import temp_name, write_atomic

MIB = 1 << 20


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """While the block runs, no file of this process may grow past ``limit`` bytes: a write past it
    fails with EFBIG (SIGXFSZ, which would end the process, is ignored meanwhile)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_write_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "CURRENT"
    target.write_bytes(b"20261122T100000Z-0123456789ab\n")
    write_atomic(target, b"20261201T090000Z-ba9876543210\n")
    assert target.read_bytes() == b"20261201T090000Z-ba9876543210\n"
    assert [p.name for p in tmp_path.iterdir()] == ["CURRENT"]


def test_a_writer_stopped_midway_leaves_the_old_file_whole(tmp_path: Path) -> None:
    # GIVEN a file of 2 MiB, and a writer that cannot write past 1 MiB (as on a disk that fills up)
    target = tmp_path / "manifest.json"
    old, new = b"o" * (2 * MIB), b"n" * (4 * MIB)
    target.write_bytes(old)
    # WHEN it tries to replace the file with 4 MiB
    with file_size_limit(MIB), pytest.raises(OSError) as failed:
        write_atomic(target, new)
    # THEN the write fails, the file still holds every byte of the old content, and no temporary is left
    assert failed.value.errno == errno.EFBIG
    assert target.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_a_reader_racing_a_writer_sees_only_whole_files(tmp_path: Path) -> None:
    # GIVEN a file a writer replaces, over and over, with one of two contents of 2 MiB each
    target = tmp_path / "CURRENT"
    contents = (b"a" * (2 * MIB), b"b" * (2 * MIB))
    write_atomic(target, contents[0])
    done = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(40):
                write_atomic(target, contents[i % 2])
        except BaseException as exc:  # reported by the test, not lost on the thread
            failures.append(exc)
        finally:
            done.set()

    # WHEN a reader reads it on another thread for as long as the writer writes
    seen: list[tuple[int, bytes]] = []
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while not done.is_set():
            data = target.read_bytes()
            if data not in contents:
                seen.append((len(data), data[:1] + data[-1:]))
    finally:
        thread.join()
    # THEN every read was one whole content or the other
    assert not failures
    assert not seen, f"{len(seen)} partial reads, e.g. {seen[0][0]} bytes"


def test_temporary_names_are_hidden_unique_siblings(tmp_path: Path) -> None:
    target = tmp_path / "CURRENT"
    names = {temp_name(target) for _ in range(100)}
    assert len(names) == 100
    assert all(n.parent == tmp_path and n.name.startswith(".CURRENT.") and n.name.endswith(".tmp") for n in names)
