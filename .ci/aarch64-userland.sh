#!/usr/bin/env bash
# Build (once) an arm64 Debian userland with Python and the base runtime's aarch64 wheels, for
# tests/runtime/test_aarch64.py: the torch-free runtime run under qemu-user on aarch64.
# Usage: .ci/aarch64-userland.sh [DEST]   (default: $CMKD_AARCH64_ROOT or ~/.cache/cmkd-edge/aarch64)
# Needs root (apt, binfmt registration, debootstrap). Prints why and exits 0 where it cannot, so CI
# goes on and the test skips with that reason.
set -uo pipefail
DEST="${1:-${CMKD_AARCH64_ROOT:-$HOME/.cache/cmkd-edge/aarch64}}"
mkdir -p "$DEST"
note() { echo "aarch64 userland: $*"; echo "$*" > "$DEST/UNAVAILABLE"; exit 0; }
[ "$(id -u)" = 0 ] || note "not root: cannot register binfmt or run debootstrap"
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static debootstrap \
    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static debootstrap; }; \
  } >/dev/null 2>&1 || note "apt-get could not install qemu-user-static and debootstrap"
fi
# binfmt: qemu runs aarch64 ELF files (the F flag opens the interpreter now, so it works in a chroot)
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register 2>/dev/null \
    || note "cannot register qemu-aarch64 with binfmt_misc"
fi
ROOT="$DEST/root"
if [ ! -x "$ROOT/opt/venv/bin/python" ]; then
  rm -rf "$ROOT"
  debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv bookworm "$ROOT" \
    http://deb.debian.org/debian > "$DEST/debootstrap.log" 2>&1 || note "debootstrap failed (see $DEST/debootstrap.log)"
  chroot "$ROOT" /usr/bin/python3 -m venv /opt/venv || note "python3 -m venv failed inside the userland"
fi
# PyPI's aarch64 wheels of the base install, fetched on the host (pip inside the userland would
# have to trust the registry's certificates), installed inside with --no-index
mkdir -p "$ROOT/wheels"
P=""; for v in 2_17 2_27 2_28 2_31 2_34 2_35 2_36; do P="$P --platform manylinux_${v}_aarch64"; done
python3 -m pip download -q -d "$ROOT/wheels" $P --platform manylinux2014_aarch64 --python-version 3.11 \
  --only-binary=:all: "numpy>=1.24" "click>=8.1" "rich>=13" "onnxruntime>=1.17" "rasterio>=1.3" \
  "Pillow>=10.0" "openvino>=2024.0" >/dev/null 2>&1 || note "pip download of the aarch64 wheels failed"
# ONNX Runtime's cpuinfo library crashes on the host's x86 /proc/cpuinfo under qemu: the test
# bind-mounts this one (a Cortex-A76, dot product: a Raspberry Pi 5) over it
{
  for i in 0 1 2 3; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n' "$i"
  done
} > "$DEST/cpuinfo"
rm -f "$DEST/UNAVAILABLE"
echo "aarch64 userland ready: $ROOT"
