"""Image chips (PNG/JPEG/TIFF without geo-referencing) read with Pillow: the runtime's chip reader.

Why in the runtime: a device classifies chips as they come off the sensor's product chain (MSTAR
ships 8-bit magnitude JPEGs), so the reader must work on the base install (numpy + Pillow, no
torch, no rasterio), and the training data layer uses the same function so a chip is the same
array in training and on the device.

A chip is one band: 8-bit greyscale (Pillow mode ``L``), or an RGB/RGBA/palette file whose colour
channels are all equal (a greyscale image saved as colour), read as ``(1, H, W)`` float32 in
``magnitude_u8`` units. Anything else (real colour, 16-bit, float, multi-frame) is refused with a
one-line :class:`DataError` naming the file, since its units would be a guess.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from cmkd_edge.errors import DataError

#: Suffixes read as chips (lower case).
CHIP_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: Units of every chip this reader returns.
CHIP_UNITS = "magnitude_u8"
#: The one band of a magnitude chip.
CHIP_BANDS: tuple[str, ...] = ("MAG",)


def is_chip_path(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` has a chip suffix (PNG, JPEG or TIFF)."""
    return Path(path).suffix.lower() in CHIP_SUFFIXES


def read_chip(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one 8-bit magnitude chip as ``(1, H, W)`` float32 (values 0-255).

    Raises:
        DataError: missing file, not an image Pillow can decode, truncated pixel data, more than one
            frame, real colour, or not 8 bits per pixel.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise DataError(f"file not found: {p}")
    if not p.is_file():
        raise DataError(f"{p} is not a readable file (a directory or special file)")
    try:
        with Image.open(p) as im:
            if getattr(im, "n_frames", 1) > 1:
                raise DataError(f"{p} has {im.n_frames} frames, expected one chip")
            mode = im.mode
            im.load()  # why here: a truncated file fails on the pixel read, not on open
            arr = np.asarray(im)
    except DataError:
        raise
    except UnidentifiedImageError as exc:
        raise DataError(f"{p} is not an image Pillow can read (expected PNG, JPEG or TIFF)") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's decoders raise these for bad data
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{p} is truncated or corrupt ({first})") from exc
    return _one_band(arr, mode, p)


def _one_band(arr: np.ndarray, mode: str, path: Path) -> np.ndarray:
    if mode == "P":
        raise DataError(f"{path} is a palette image; expected 8-bit greyscale magnitude",
                        "save the chip as greyscale (mode L)")
    if arr.dtype != np.uint8:
        raise DataError(f"{path} holds {arr.dtype} pixels (mode {mode}); chips must be 8-bit magnitude",
                        "convert to 8-bit greyscale, or use a GeoTIFF layout for float SAR")
    if arr.ndim == 3:
        colour = arr[..., :3]
        if not (np.array_equal(colour[..., 0], colour[..., 1])
                and np.array_equal(colour[..., 0], colour[..., 2])):
            raise DataError(f"{path} is a colour image (mode {mode}); chips are one band of 8-bit "
                            "SAR magnitude", "save the chip as greyscale (mode L)")
        arr = colour[..., 0]
    if arr.ndim != 2:
        raise DataError(f"{path} has pixel shape {arr.shape}; expected a 2-D greyscale chip")
    return arr.astype(np.float32)[None]


def find_chips(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders into chip files: a folder gives its chips (recursively, sorted).

    Raises:
        DataError: a path that does not exist, a file without a chip suffix, a folder without chips.
    """
    out: list[Path] = []
    for given in paths:
        p = Path(given)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and is_chip_path(f))
            if not found:
                raise DataError(f"{p} holds no chips ({', '.join(CHIP_SUFFIXES)})")
            out.extend(found)
        elif not p.exists():
            raise DataError(f"input {p} does not exist")
        elif not is_chip_path(p):
            raise DataError(f"{p} is not a chip ({', '.join(CHIP_SUFFIXES)})")
        else:
            out.append(p)
    return out


def read_chips(paths: Sequence[str | os.PathLike[str]]) -> np.ndarray:
    """Read several chips of one size into ``(N, 1, H, W)`` float32.

    Raises:
        DataError: an unreadable chip, or chips of different sizes (naming the odd one).
    """
    arrays = [read_chip(p) for p in paths]
    if not arrays:
        raise DataError("no chips to read")
    first = arrays[0].shape
    for a, p in zip(arrays, paths, strict=True):
        if a.shape != first:
            raise DataError(f"{p} is {a.shape[-2]}x{a.shape[-1]}, expected {first[-2]}x{first[-1]} "
                            "like the first chip")
    return np.stack(arrays)

