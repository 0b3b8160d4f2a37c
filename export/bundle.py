"""The writer side of a bundle: build it beside the target, then swap it in whole.

Every stage (export, quantize, compile) changes a bundle the same way: copy the current bundle into
a temporary directory next to the target, add or replace artifacts there, write manifest.json with
the sha256 of every file (``cmkd_edge.runtime.contract.manifest.write_manifest``), and only then replace the
target in one step. A process killed at any point leaves the previous bundle intact plus, at worst,
a stray ``.<name>.staging-*`` directory. On Linux the swap is ``renameat2(RENAME_EXCHANGE)``, which
is atomic even when the target exists; elsewhere it is two renames with a backup. A packed bundle
(.tar.gz/.zip) is opened through the runtime's safe extraction and its result packed atomically
into a *new* archive (or directory); the input archive is never rewritten.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cmkd_edge.runtime.contract.manifest import Artifact, Manifest, write_manifest

from cmkd_edge.errors import BundleError

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False when the call is unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def replace_dir(new: Path, target: Path) -> None:
    """Put directory ``new`` at ``target``; the old ``target`` (if any) is removed afterwards."""
    if not target.exists():
        os.replace(new, target)
        return
    if not target.is_dir():
        raise BundleError(f"{target} exists and is not a bundle directory")
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now holds the previous bundle
        return
    backup = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, backup)
    os.replace(new, target)
    shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(target: Path, copy_from: Path | None = None) -> Iterator[Path]:
    """A temporary directory beside ``target`` (same filesystem, so the final rename is atomic),
    optionally pre-filled with a copy of ``copy_from``; moved into place only if the body succeeds."""
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    # why: mkdtemp makes the directory owner-only; a bundle must be readable by the device's service user
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    try:
        if copy_from is not None:
            # copies, not hard links: a writer truncating a linked file would corrupt the original
            shutil.copytree(copy_from, tmp, dirs_exist_ok=True, symlinks=True)
        yield tmp
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@dataclass
class BundleEdit:
    """A bundle being changed: new files go into ``root``; ``manifest`` is replaced, never edited.

    Why a holder: the manifest is a frozen dataclass, so each change derives a new one
    (``Manifest.with_artifact``, ``Manifest.without``, ``dataclasses.replace``) and assigns it here;
    the final value is what ``edit_bundle`` writes. ``written`` is where it goes (the bundle
    directory itself, or the new archive beside an archive given as input); ``work_parent`` a
    directory on the same filesystem for scratch files.
    """

    root: Path
    manifest: Manifest
    written: Path | None = None
    work_parent: Path | None = None

    def put(self, artifact: Artifact) -> list[str]:
        """Add or replace ``artifact``; returns the ids of dependents dropped with the old one."""
        self.manifest, gone = self.manifest.with_artifact(artifact)
        return gone

    def update(self, artifact: Artifact) -> None:
        """Replace the same-id artifact's record in place (its files are unchanged, so what was
        built from it stays)."""
        self.manifest = self.manifest.updated(artifact)

    def drop(self, ids: list[str]) -> list[str]:
        """Remove ``ids`` and everything built from them; returns the removed ids."""
        self.manifest, gone = self.manifest.without(ids)
        return gone


def derived_archive(bundle: str | os.PathLike[str], tag: str,
                    out: str | os.PathLike[str] | None = None) -> Path | None:
    """Where a stage writes its result when given an archive: ``out``, else
    ``<name>-<tag>.tar.gz`` beside the input. None for a directory bundle (edited in place) when
    no ``out`` is given.

    Why: a command given an archive never rewrites it (issue 9: quantizing a ``.tar.gz`` used to
    rewrite the archive in place, so the original the user copied to devices was gone).

    Raises:
        BundleError: ``out`` is the input itself.
    """
    from cmkd_edge.runtime.contract.bundle import is_archive

    src = Path(bundle)
    if out is not None:
        if Path(out).absolute() == src.absolute():
            raise BundleError(f"--out {out} is the input bundle; a stage never rewrites its input "
                              "archive", "choose another --out path")
        return Path(out)
    if src.is_dir() or not is_archive(src):
        return None
    name = src.name
    for ext in (".tar.gz", ".tgz", ".zip"):
        if name.lower().endswith(ext):
            return src.with_name(f"{name[:-len(ext)]}-{tag}{ext}")
    return src.with_name(f"{name}-{tag}.tar.gz")


@contextlib.contextmanager
def edit_bundle(bundle: str | os.PathLike[str],
                out: str | os.PathLike[str] | None = None) -> Iterator[BundleEdit]:
    """Open an existing bundle (dir or archive), verified, and yield a :class:`BundleEdit`.

    Write new files into ``edit.root`` and assign new manifests to ``edit.manifest``; on success
    the manifest is rewritten with fresh sha256s and the result replaces the bundle directory (or
    goes to ``out``: an archive path (.tar.gz/.zip) or a directory) atomically. An archive given
    as input is never rewritten: without ``out`` the result goes beside it
    (:func:`derived_archive`). On any error nothing changes.
    """
    from cmkd_edge.runtime.contract.bundle import is_archive, open_bundle, pack_bundle

    src = Path(bundle)
    opened = open_bundle(src)
    dest = Path(out) if out is not None else (src if src.is_dir() else derived_archive(src, "edited"))
    if dest is None or not is_archive(src) and not src.is_dir():  # open_bundle refused the rest
        raise BundleError(f"{src} is not a bundle")
    if not is_archive(dest):  # a directory: the bundle itself, or a new directory
        if dest.exists() and dest.absolute() != src.absolute() and not (dest / "manifest.json").is_file() \
                and (not dest.is_dir() or any(dest.iterdir())):
            raise BundleError(f"{dest} exists and is not a bundle", "choose a new --out path")
        with staged_dir(dest, copy_from=opened.root) as tmp:
            edit = BundleEdit(tmp, opened.manifest, dest.absolute(), tmp.parent)
            yield edit
            finish_manifest(tmp, edit.manifest)
        return
    with tempfile.TemporaryDirectory(prefix=".cmkd-edit-", dir=dest.absolute().parent) as work:
        tmp = Path(work) / "bundle"
        shutil.copytree(opened.root, tmp)
        edit = BundleEdit(tmp, opened.manifest, dest.absolute(), Path(work))
        yield edit
        finish_manifest(tmp, edit.manifest)
        pack_bundle(tmp, dest)  # atomic (temp file + rename)


def finish_manifest(root: Path, manifest: Manifest) -> Manifest:
    """Drop files no artifact or record needs, then hash every file and write manifest.json."""
    keep = {f for a in manifest.artifacts for f in a.files}
    split_file = manifest.provenance.data.split_file if manifest.provenance.data else None
    if split_file:  # the training run's split table (export.student.data_provenance)
        keep.add(split_file)
    for p in sorted(root.rglob("*"), reverse=True):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel != "manifest.json" and rel not in keep:
            p.unlink()
        elif p.is_dir() and not any(p.iterdir()):
            p.rmdir()
    return write_manifest(root, manifest)
