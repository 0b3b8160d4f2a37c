"""Open, verify and pack bundles: a directory with manifest.json, or that directory as .tar.gz/.zip.

Security rules (design.md, "Bundle"; docs/reliability.md):

* every file listed in ``manifest.files`` must exist and match its sha256, and every artifact file
  must be listed there (so nothing that is loaded escapes the checksums);
* no path may leave the bundle: manifest paths are relative POSIX paths without ``..``, symlinks are
  refused, and ONNX external-data ``location`` strings (read from the protobuf without importing
  onnx, see ``_onnxproto``) must resolve inside the bundle *and* be checksummed files;
* archives are extracted member by member by this code (never ``tarfile.extractall``): absolute
  names, ``..``, drive letters, symlinks, hard links, devices and FIFOs are refused before anything is
  written, files are created with ``O_EXCL|O_NOFOLLOW`` inside a fresh temporary directory, and the
  result is renamed into the cache only when complete.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cmkd_edge.errors import BundleError
from cmkd_edge.fsutil import atomic_open, cache_root, sha256_file

from .manifest import MANIFEST_NAME, Manifest, check_relpath, read_manifest

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")
MAX_EXTRACT_BYTES = 16 << 30  # refuse archive bombs: far above any edge model


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk. ``root`` holds manifest.json; ``source`` is what the user gave."""

    root: Path
    manifest: Manifest
    source: Path

    def path(self, rel: str) -> Path:
        """Absolute path of a bundle-relative file (checked to stay inside the bundle)."""
        return _inside(self.root, rel)


def _inside(root: Path, rel: str) -> Path:
    check_relpath(rel)
    p = root / rel
    try:
        p.resolve().relative_to(root.resolve())
    except ValueError as exc:
        raise BundleError(f"bundle path {rel!r} resolves outside the bundle") from exc
    return p


def is_archive(path: str | os.PathLike[str]) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def verify_bundle(root: Path, manifest: Manifest) -> None:
    """Check every sha256, that artifact files are checksummed, and ONNX external data stays inside.

    Raises:
        BundleError: naming the first file that is missing, modified or escaping the bundle.
    """
    from ._onnxproto import external_data_locations

    for rel, digest in sorted(manifest.files.items()):
        p = _inside(root, rel)
        if p.is_symlink():
            raise BundleError(f"bundle file {rel!r} is a symlink", "bundles hold regular files only")
        if not p.is_file():
            raise BundleError(f"bundle file {rel!r} is missing from {root}")
        if sha256_file(p) != digest:
            raise BundleError(f"bundle file {rel!r} does not match its sha256 in manifest.json",
                              "the bundle was modified or corrupted; rebuild or re-download it")
    for a in manifest.artifacts:
        for rel in a.files:
            if rel not in manifest.files:
                raise BundleError(f"artifact {a.id!r} file {rel!r} has no sha256 in manifest.files")
        if a.format != "onnx":
            continue
        model_dir = (root / a.path).parent
        for loc in external_data_locations(root / a.path):
            target = os.path.normpath(os.path.join(model_dir, loc))
            rel = os.path.relpath(target, root).replace(os.sep, "/")
            if os.path.isabs(loc) or rel.startswith("../") or rel == ".." or rel not in manifest.files:
                raise BundleError(
                    f"ONNX external data {loc!r} of {a.path!r} points outside the bundle's "
                    "checksummed files", "external data must be a listed file inside the bundle")
            _inside(root, rel)


def open_bundle(path: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None,
                verify: bool = True) -> Bundle:
    """Open a bundle directory or archive, extracting archives safely, and verify it.

    Raises:
        BundleError: missing bundle, unsafe archive, bad manifest, checksum mismatch.
    """
    src = Path(path)
    if not src.exists():
        raise BundleError(f"bundle {src} does not exist")
    if src.is_dir():
        root = src
    elif is_archive(src):
        root = _extract_cached(src, cache_root(cache_dir))
    else:
        raise BundleError(f"{src} is not a bundle (expected a directory, {', '.join(ARCHIVE_SUFFIXES)})",
                          "a bundle is what `cmkd-edge export CHECKPOINT --out DIR` writes; run `cmkd-edge "
                          "export` first")
    manifest = read_manifest(root)
    if verify:
        verify_bundle(root, manifest)
    return Bundle(root=root, manifest=manifest, source=src)


def _member_name(name: str) -> str:
    clean = name[2:] if name.startswith("./") else name
    clean = clean.rstrip("/")
    if not clean:
        raise BundleError(f"archive member {name!r} has an empty name")
    try:
        return check_relpath(clean, "archive member")
    except BundleError as exc:
        raise BundleError(f"archive member {name!r} is unsafe (absolute or '..')",
                          "refusing to extract anything from this archive") from exc


def _members(archive: Path) -> Iterator[tuple[str, bool, int, BinaryIO | None]]:
    """Yield (safe name, is_dir, size, reader) after checking *all* members first."""
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode) or (stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))):
                    raise BundleError(f"archive member {info.filename!r} is a link or special file")
                _member_name(info.filename)
            for info in infos:
                with zf.open(info) as fh:
                    yield _member_name(info.filename), info.is_dir(), info.file_size, fh
        return
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"{archive} is not a readable archive ({exc})") from exc
    with tf:
        infos = tf.getmembers()
        for info in infos:
            if not (info.isfile() or info.isdir()):
                raise BundleError(f"archive member {info.name!r} is a link or special file",
                                  "refusing to extract anything from this archive")
            _member_name(info.name)
        for info in infos:
            yield _member_name(info.name), info.isdir(), info.size, tf.extractfile(info) if info.isfile() else None


def extract_archive(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into the empty directory ``dest`` under the safety rules above.

    Raises:
        BundleError: an unsafe member, or an archive that is truncated or corrupt.
    """
    try:
        _extract(archive, dest)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, gzip.BadGzipFile) as exc:
        # why: a truncated .tar.gz raises EOFError (which click would print as "Aborted!")
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BundleError(f"{archive} is truncated or corrupt ({first})",
                          "pack it again or re-download it") from exc


def _extract(archive: Path, dest: Path) -> None:
    total = 0
    for name, is_dir, size, reader in _members(archive):
        target = dest / name
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        total += size
        if total > MAX_EXTRACT_BYTES:
            raise BundleError(f"{archive} expands to more than {MAX_EXTRACT_BYTES >> 30} GiB")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.parent.resolve().relative_to(dest.resolve())  # no symlinked parents (none created)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(target, flags, 0o644)
        except FileExistsError as exc:
            raise BundleError(f"archive member {name!r} appears twice") from exc
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(reader, out, 1 << 20)  # type: ignore[arg-type]


def _extract_cached(archive: Path, base: Path) -> Path:
    """Extract into ``base/<archive sha256>`` once; later opens reuse it (and still verify it)."""
    digest = sha256_file(archive)
    final = base / digest[:24]
    if not (final / MANIFEST_NAME).exists() and not any(final.glob(f"*/{MANIFEST_NAME}")):
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=base))
        try:
            extract_archive(archive, tmp)
            try:
                os.replace(tmp, final)
            except OSError:  # another process extracted it meanwhile (non-empty target): use theirs
                shutil.rmtree(tmp, ignore_errors=True)
                if not final.is_dir():
                    raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if (final / MANIFEST_NAME).exists():
        return final
    subdirs = [p.parent for p in final.glob(f"*/{MANIFEST_NAME}")]
    if len(subdirs) != 1:
        raise BundleError(f"{archive} has no {MANIFEST_NAME} at its root")
    return subdirs[0]


def pack_bundle(bundle_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Verify ``bundle_dir`` and pack manifest.json + its listed files into ``out`` (.tar.gz/.zip).

    Only the checksummed files are packed (no stray files), in sorted order with fixed timestamps so
    the archive is reproducible; the archive is written atomically.
    """
    root, out = Path(bundle_dir), Path(out)
    if not is_archive(out):
        raise BundleError(f"cannot pack to {out}", f"use one of: {', '.join(ARCHIVE_SUFFIXES)}")
    manifest = read_manifest(root)
    verify_bundle(root, manifest)
    names = [MANIFEST_NAME, *sorted(manifest.files)]
    with atomic_open(out, "wb") as fh:
        if out.name.lower().endswith(".zip"):
            with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
                for rel in names:
                    info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
                    info.external_attr = (stat.S_IFREG | 0o644) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with zf.open(info, "w") as dst, open(root / rel, "rb") as src:
                        shutil.copyfileobj(src, dst, 1 << 20)
        else:
            with gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz, \
                    tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[arg-type]
                for rel in names:
                    info = tarfile.TarInfo(rel)
                    info.size, info.mode, info.mtime = (root / rel).stat().st_size, 0o644, 0
                    with open(root / rel, "rb") as src:
                        tf.addfile(info, src)
    return out


__all__ = ["Bundle", "open_bundle", "verify_bundle", "pack_bundle", "extract_archive", "is_archive",
           "cache_root"]
