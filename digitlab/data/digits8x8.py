"""scikit-learn's 8x8 digits (`load_digits`: 1,797 images of 8x8 pixels, values 0..16), the dataset of the course
notebook that builds an average-image classifier and a 64-16-10 MLP. Shipped as package data (a gzip'd CSV, one
image a line: 64 pixels row by row, then the label), checked against its published md5. It has no official test
split: a run holds out `data.test` of it, stratified, the same images for every run (see splits.py)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zlib
from pathlib import Path

import numpy as np

from digitlab.data.source import Source
from digitlab.errors import DataError

FILE = Path(__file__).with_name("digits8x8") / "digits.csv.gz"
MD5 = "a0339c30a8a5312a1b6f9e5c719dcce5"  # of the decompressed CSV (digitlab/data/digits8x8/README.md)


def read_digits_csv(path: Path = FILE, expected_md5: str | None = MD5) -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) uint8, labels (1797,) uint8) from the CSV, refusing a corrupt or altered file."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot be read or decompressed ({exc}); the file is corrupt or truncated") from None
    if expected_md5 is not None and hashlib.md5(raw).hexdigest() != expected_md5:
        raise DataError(f"{path}: md5 of the decompressed bytes is {hashlib.md5(raw).hexdigest()}, expected "
                        f"{expected_md5}; the file is corrupt or altered")
    try:
        rows = np.array([[int(v) for v in line] for line in csv.reader(io.StringIO(raw.decode("ascii")))],
                        dtype=np.int64)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a CSV of whole numbers ({exc})") from None
    if rows.ndim != 2 or rows.shape[1] != 65 or rows.min() < 0 or rows[:, :64].max() > 16 or rows[:, 64].max() > 9:
        raise DataError(f"{path}: expected rows of 64 pixels in 0..16 and a digit, got shape {rows.shape}")
    return rows[:, :64].reshape(-1, 8, 8).astype(np.uint8), rows[:, 64].astype(np.uint8)


class Digits8x8(Source):
    name = "digits8x8"
    title = "8x8 digits (UCI, scikit-learn's load_digits)"
    attribution = ("E. Alpaydin and C. Kaynak, UCI Machine Learning Repository, \"Optical Recognition of Handwritten "
                   "Digits\" (1998), CC BY 4.0; the copy scikit-learn ships (BSD-3-Clause)")
    image_shape = (1, 8, 8)
    pixel_max = 16
    num_images = 1797
    has_test = False
    default_test = 0.2

    def parts(self):
        return {"all": _cached(FILE)}


_READ: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # by (path, size, mtime): a sweep worker trains hundreds of
                                                         # points on the same file, parsed once (23 ms a time)


def _cached(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """read_digits_csv(path), parsed once a process while the file stays as it was; copies (a caller may change
    them)."""
    try:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return read_digits_csv(path)  # says what is wrong
    if key not in _READ:
        _READ.clear()
        _READ[key] = read_digits_csv(path)
    images, labels = _READ[key]
    return images.copy(), labels.copy()
