"""Reliability helpers: the real CLI (in-process and as a subprocess), tiny runs, bundles, tmpfs.

Every user-facing failure is checked the same way (``assert_one_line_error``): non-zero exit, stderr
is exactly one line starting with ``error:`` that names the problem, and no traceback anywhere.
Training uses the tiny synthetic set and tiny widths so the whole directory stays near a minute.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner, Result

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "runtime"))  # bundle_factory: real ONNX bundles without torch

#: 36 samples of 16x16 (synthetic, labelled as such everywhere): training takes a second or two.
TINY = "synthetic:per_class=6,size=16"
_SCRIPT = Path(sys.executable).parent / "cmkd-edge"
#: the installed console script (what a user's shell runs), else the same entry point via -c
CMKD = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-c", "from cmkd_edge.cli import main; main()"]


def cli(*args: object) -> Result:
    """``cmkd-edge ARGS`` in-process (click's runner), stderr apart from stdout."""
    from cmkd_edge.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def cli_ok(*args: object) -> Result:
    res = cli(*args)
    assert res.exit_code == 0, (res.stdout[-2000:], res.stderr[-2000:], res.exception)
    return res


def _error_lines(stderr: str) -> list[str]:
    # python warnings routed by the CLI ("warning: ...") may precede the error; they are not errors
    return [ln for ln in stderr.strip().splitlines() if ln.strip() and not ln.startswith("warning: ")]


def assert_one_line_error(res: Result | subprocess.CompletedProcess, *needles: str,
                          code: int | None = 2, progress: bool = False) -> str:
    """Non-zero exit, stderr = one line ``error: ...`` containing every needle, no traceback.

    ``progress=True``: the command reports progress on stderr (quantize's rungs); then the error
    must be the last line and the only ``error:`` line.
    """
    if isinstance(res, Result):
        exit_code, stdout, stderr = res.exit_code, res.stdout, res.stderr
        exc = res.exception
        assert exc is None or isinstance(exc, SystemExit), f"uncaught {type(exc).__name__}: {exc}"
    else:
        exit_code, stdout, stderr = res.returncode, res.stdout, res.stderr
    assert exit_code != 0, f"expected a failure, got exit 0; stdout: {stdout[-500:]}"
    if code is not None:
        assert exit_code == code, (exit_code, stderr[-1500:])
    assert "Traceback" not in stdout + stderr, stderr[-3000:]
    lines = _error_lines(stderr)
    if progress:
        assert sum(ln.startswith("error:") for ln in lines) == 1, stderr[-1500:]
        lines = lines[-1:]
    assert len(lines) == 1, f"stderr is not one line: {stderr[-1500:]!r}"
    line = lines[0]
    assert line.startswith("error: "), line
    for n in needles:
        assert n in line, f"{n!r} not in {line!r}"
    return line


def run_cmkd(*args: object, timeout: float = 240, env: dict | None = None,
             **kw: object) -> subprocess.CompletedProcess:
    """``cmkd-edge ARGS`` in a fresh interpreter (what a user's shell runs)."""
    return subprocess.run([*CMKD, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, **kw)


def popen_cmkd(*args: object, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([*CMKD, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})}, start_new_session=True)


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None, poll: float = 0.02) -> bool:
    """Poll ``predicate`` until true; False on timeout or when ``proc`` ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return bool(predicate())
        time.sleep(poll)
    return False


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative POSIX path -> digest)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def fill_disk(mnt: Path, leave: int = 0) -> None:
    """Fill ``mnt`` until fewer than ``leave`` bytes are free."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(mnt / ".filler", "wb") as fh:
        with contextlib.suppress(OSError):
            fh.write(b"\0" * max(0, free - leave))
            fh.flush()
            os.fsync(fh.fileno())
