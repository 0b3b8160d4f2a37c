"""Safe extraction of dataset archives (``.tar``, ``.tar.gz``, ``.tar.bz2``) into a cache directory.

Archives from the internet can carry members that escape the target (absolute paths, ``..``) or
links pointing anywhere; every member is checked before anything is written, and only regular files
and directories are extracted. The cache is keyed by the archive's sha256, filled in a temporary
folder and renamed into place, so a crash never leaves a half-extracted dataset that looks complete.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from cmkd_edge.errors import DataError
from cmkd_edge.fsutil import sha256_file

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz")


def is_archive(path: Path) -> bool:
    """True if ``path`` is a file named like a tar archive."""
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def cache_dir() -> Path:
    """Where extracted data is cached: ``$CMKD_EDGE_CACHE`` or ``~/.cache/cmkd-edge``."""
    env = os.environ.get("CMKD_EDGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cmkd-edge"


def _safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for m in members:
        parts = PurePosixPath(m.name).parts
        if m.name.startswith(("/", "\\")) or PurePosixPath(m.name).is_absolute() or ".." in parts \
                or (parts and ":" in parts[0]):
            raise DataError(f"unsafe path {m.name!r} in archive {archive}")
        if not (m.isfile() or m.isdir()):
            raise DataError(f"archive {archive} holds a link or special file {m.name!r}; "
                            "refusing to extract it")
    return members


def extract_archive(archive: str | os.PathLike[str], cache: Path | None = None) -> Path:
    """Extract ``archive`` once into the cache and return the extracted folder.

    Raises:
        DataError: unreadable/corrupt archive, or a member that is a link or escapes the target.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise DataError(f"file not found: {archive}")
    root = (cache or cache_dir()) / "archives"
    target = root / f"{archive.name.split('.')[0]}-{sha256_file(archive)[:16]}"
    if (target / ".complete").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                for m in _safe_members(tar, archive):
                    dest = tmp.joinpath(*PurePosixPath(m.name).parts)
                    if m.isdir():
                        dest.mkdir(parents=True, exist_ok=True)
                        continue
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(m)
                    if src is None:  # pragma: no cover - isfile() members always have data
                        raise DataError(f"cannot read {m.name!r} in archive {archive}")
                    with src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"cannot read archive {archive} ({exc})") from exc
        (tmp / ".complete").write_text(str(archive) + "\n", encoding="utf-8")
        try:
            os.replace(tmp, target)
        except OSError:
            # why: another process finished the same extraction first; its copy is identical.
            if not (target / ".complete").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
