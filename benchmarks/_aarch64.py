"""Run a command in the arm64 userland ``.ci/aarch64-userland.sh`` builds (qemu-user via binfmt).

Shared by tests/runtime/test_aarch64.py and benchmarks/aarch64.py. ONNX Runtime's cpuinfo library
needs an ARM /proc/cpuinfo and a /sys under qemu: both are mounted in a private mount namespace
(``unshare``), with ``work`` at /mnt/work. Needs root.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

ROOT = Path(os.environ.get("CMKD_AARCH64_ROOT", Path.home() / ".cache" / "cmkd-edge" / "aarch64"))


def unavailable(root: Path = ROOT) -> str | None:
    """Why the userland cannot run here (None: it can)."""
    import sys

    if sys.platform != "linux":
        return "qemu-user needs Linux"
    if (root / "UNAVAILABLE").exists():
        return f"no aarch64 userland: {(root / 'UNAVAILABLE').read_text().strip()}"
    if not (root / "root" / "opt" / "venv" / "bin" / "python").exists():
        return f"no aarch64 userland at {root} (build it with .ci/aarch64-userland.sh, as root)"
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        return "qemu-aarch64 is not registered with binfmt_misc (.ci/aarch64-userland.sh does it)"
    if os.geteuid() != 0:
        return "chroot and bind mounts need root"
    return None


def in_arm(work: Path, *cmd: str, root: Path = ROOT, timeout: int = 3600,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in the userland (``/opt/venv`` first on PATH), ``work`` mounted at /mnt/work."""
    base = root / "root"
    (base / "mnt" / "work").mkdir(parents=True, exist_ok=True)
    envs = {"PATH": "/opt/venv/bin:/usr/bin:/bin", "HOME": "/root", "CMKD_EDGE_CACHE": "/mnt/work/.cache",
            "CMKD_EDGE_SPEED_PROBE": "0", **(env or {})}
    inner = " ".join(shlex.quote(c) for c in ("/usr/bin/env", "-i", *[f"{k}={v}" for k, v in envs.items()], *cmd))
    script = (f"mount -t proc proc {base}/proc && mount --bind {root}/cpuinfo {base}/proc/cpuinfo && "
              f"mount -t sysfs sys {base}/sys && mount --bind {work} {base}/mnt/work && chroot {base} {inner}")
    return subprocess.run(["unshare", "--mount", "--fork", "sh", "-c", script], capture_output=True,
                          text=True, timeout=timeout)


def build_wheel(repo: Path, dest: Path) -> Path:
    """The checkout's wheel, built from a clean copy (a stale build/ must not leak old modules)."""
    import shutil
    import sys
    import tempfile

    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(repo, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "runs", "*.egg-info",
                                                                 "__pycache__", ".cache"))
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(dest), str(src)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"building the wheel failed: {r.stderr[-2000:]}")
    return max(dest.glob("cmkd_edge-*.whl"), key=lambda p: p.stat().st_mtime)


def install_checkout(repo: Path, scratch: Path, root: Path = ROOT) -> None:
    """Build the checkout's wheel here and install it with its dependencies and the [geo] extra (the
    tests classify a GeoTIFF scene) into the userland's venv (from the aarch64 wheels the userland
    script fetched; no network inside)."""
    whl = build_wheel(repo, root / "root" / "wheels" / "cmkd")
    for args in (("--force-reinstall", "--no-deps", f"/wheels/cmkd/{whl.name}"), ("cmkd-edge[geo]",)):
        r = in_arm(scratch, "pip", "install", "-q", "--no-index", "--find-links", "/wheels", *args, root=root)
        if r.returncode != 0:
            raise RuntimeError(f"pip install in the userland failed: {r.stderr[-2000:]}")
