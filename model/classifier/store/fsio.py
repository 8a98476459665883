"""Crash-safe file primitives for the model store.

Everything the store writes goes through here: write to a temporary name in the
same directory, fsync, rename over the target, fsync the directory. A reader
therefore sees either the old file or the new one, never a torn write, on a
local disk or on NFS (EFS), where a rename within a directory is atomic on the
server.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20


def temp_name(target: Path) -> Path:
    """A hidden, unique sibling of ``target`` that listings skip."""
    import secrets  # imported where used: off the cold start's path (docs/performance.md)

    return target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")


def fsync_dir(path: Path) -> None:
    """Persist a directory entry change (create, rename) in ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data`` so that readers never see a partial file."""
    tmp = temp_name(target)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def sha256_file(path: Path) -> tuple[int, str]:
    """Return ``(size in bytes, hex sha256)`` of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def filesystem_type(path: Path, mounts: Path = Path("/proc/self/mounts")) -> str | None:
    """The type of the file system ``path`` is on (the longest mount point that holds it), on Linux."""
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return None  # not Linux: no mount table to read
    target = str(path.resolve())
    best: tuple[int, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        # ">=": of two mounts on one point, the later one (listed after) hides the earlier.
        if (target == point or target.startswith(point.rstrip("/") + "/")) and (best is None or len(point) >= best[0]):
            best = (len(point), fields[2])
    return best[1] if best else None
