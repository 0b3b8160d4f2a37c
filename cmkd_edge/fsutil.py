"""Atomic file writes and hashing: nothing already written is lost if a process dies midway; and the
one cache root every stage and layer keeps its files under (extracted bundles, engines, probes).

Stdlib only, so the runtime may import it too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    On any exception (including a full disk) the temporary file is removed and ``path`` keeps its
    previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # why: mkstemp creates 0600; the result must get the permissions a plain open() would give
        # (or keep those of the file it replaces), or other users cannot read a shared bundle
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, mode) as fh:
            yield fh  # type: ignore[misc]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            # a failed write() names no file: name the one that was being written (disk full)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def _mode_for(path: Path) -> int:
    """The replaced file's mode, else what ``open(path, "w")`` would create (0666 & ~umask)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    # why not os.umask(0) + restore: that briefly changes the umask of every thread in the process
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    return 0o022


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large engines do not fill memory."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where packed bundles are extracted: ``cache_dir``, $CMKD_EDGE_CACHE, or ~/.cache/cmkd-edge.

    Its parent is the cache root the other caches share (TensorRT engines and timing caches, speed
    probes, gates, selection); it lives here, below every layer, because the runtime's backends
    (TensorRT's engine cache) and its contract (bundle extraction) both use it.
    """
    base = cache_dir or os.environ.get("CMKD_EDGE_CACHE") or Path.home() / ".cache" / "cmkd-edge"
    return Path(base) / "bundles"
