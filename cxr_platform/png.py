"""8-bit grayscale PNG files that are cheap to write and cheap to read back.

Every generated radiograph is stored once as PNG and decoded again by screening, thumbnails
and, for each exported image, by the DICOM export. Pillow's writer picks a filter per row
(mostly Paeth) and deflates with the default strategy: for a 512 x 512 radiograph about
26 ms to write and 3 ms to read. Filtering every row with "Up" (a vectorised subtraction) and
deflating with zlib's run-length strategy gives files of about the same size (within a few
per cent on the shared radiographs) that take about 3 ms to write and 1.6 ms to read, with
any PNG reader: it is a plain PNG (IHDR, one IDAT, IEND).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILTER_UP = 2


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_gray_png(pixels: np.ndarray, *, level: int = 6) -> bytes:
    """The PNG of a 2-D uint8 array (bit depth 8, colour type 0: grayscale)."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.dtype != np.uint8 or 0 in pixels.shape:
        raise ValueError("encode_gray_png needs a non-empty 2-D uint8 array")
    height, width = pixels.shape
    rows = np.empty((height, width + 1), dtype=np.uint8)
    rows[:, 0] = _FILTER_UP
    rows[0, 1:] = pixels[0]  # the row above the first is zeros
    np.subtract(pixels[1:], pixels[:-1], out=rows[1:, 1:])  # uint8 wraps modulo 256, as PNG's Up filter does
    compressor = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = compressor.compress(rows.data) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def picture_to_png(picture) -> bytes:
    """A PIL image (any mode) stored as an 8-bit grayscale PNG."""
    return encode_gray_png(np.asarray(picture if picture.mode == "L" else picture.convert("L")))
