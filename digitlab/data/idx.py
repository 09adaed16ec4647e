"""IDX files (the MNIST format): find, verify and decode them, with a cache of the decoded arrays.

Decoding 47 MB of gzip'd pixels takes seconds; the decoded uint8 arrays are cached as `.npy` files keyed by
the md5 of the compressed file, so a warm load is a memory map. When a file has a published checksum, the md5
of its decompressed bytes is checked whenever it is decoded, so a corrupt or truncated file never reaches
training.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import struct
import zlib
from pathlib import Path

import mnist
import numpy as np

from digitlab.errors import DataError, StorageError
from digitlab.options import plural
from digitlab.system.storage import atomic_write

# The four files of an MNIST-shaped data set, by role.
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


ITEM_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}  # IDX type byte -> bytes per value
GZIP_MOST = 1100  # deflate expands at most about 1032 times


def cache_dir() -> Path:
    """Where decoded arrays are kept: $DIGITLAB_CACHE, else $XDG_CACHE_HOME/digitlab, else ~/.cache/digitlab."""
    if os.environ.get("DIGITLAB_CACHE"):
        return Path(os.environ["DIGITLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "digitlab"


def find(folder: Path, name: str) -> Path:
    """The file `name` in `folder`, gzip'd or not."""
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder / name}: file not found (data.path must hold the four IDX files: "
                    f"{', '.join(FILES.values())}, gzip'd or not)")


def read_bytes(path: Path, size: int | None = None) -> bytes:
    """The decompressed bytes of an IDX file (all, or the first `size`), as one-line DataErrors."""
    try:
        if path.suffix == ".gz":
            if size is None:
                return gzip.decompress(path.read_bytes())
            with gzip.open(path, "rb") as f:
                return f.read(size)
        with open(path, "rb") as f:
            return f.read(size if size is not None else -1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot be read or decompressed ({exc}); the file is corrupt or truncated") from None


def header_shape(path: Path) -> tuple[int, ...]:
    """The array shape an IDX file declares in its header, without reading its data."""
    head = read_bytes(path, 4)
    if len(head) < 4 or head[:2] != b"\0\0":
        raise DataError(f"{path}: not a valid IDX file (bad magic number)")
    ndim = head[3]
    dims = read_bytes(path, 4 + 4 * ndim)[4:]
    if len(dims) != 4 * ndim:
        raise DataError(f"{path}: not a valid IDX file (header cut short)")
    shape = struct.unpack(f">{ndim}I", dims)
    needed = 4 + 4 * ndim + math.prod(shape) * ITEM_BYTES.get(head[2], 1)
    size = path.stat().st_size
    if needed > size * (GZIP_MOST if path.suffix == ".gz" else 1):  # sized before anything is allocated for it
        raise DataError(f"{path}: its header declares {' x '.join(map(str, shape))} values "
                        f"({plural(needed, 'byte')}), but the file holds {plural(size, 'byte')}"
                        f"{' compressed' if path.suffix == '.gz' else ''}; the file is truncated or its header damaged")
    return shape


def _decode(path: Path, expected_md5: str | None) -> np.ndarray:
    """Decompress, check the md5 of the raw bytes, and parse with `mnist.parse_idx`."""
    raw = read_bytes(path)
    if expected_md5 is not None and hashlib.md5(raw).hexdigest() != expected_md5:
        raise DataError(f"{path}: md5 of the decompressed bytes is {hashlib.md5(raw).hexdigest()}, "
                        f"expected {expected_md5}; the file is corrupt or truncated")
    try:
        return mnist.parse_idx(io.BytesIO(raw))
    except Exception as exc:  # parse_idx raises IdxDecodeError, struct.error or ValueError
        raise DataError(f"{path}: not a valid IDX file ({exc})") from None


def read_idx(path: Path, expected_md5: str | None = None) -> np.ndarray:
    """One IDX file as a numpy array (uint8 for MNIST), from the cache when its checksum matches."""
    try:
        key = hashlib.md5(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    cached = cache_dir() / f"{path.name.split('.')[0]}-{key}.npy"
    if cached.is_file():
        try:
            return np.load(cached, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            pass  # a damaged cache entry is rebuilt below
    array = _decode(path, expected_md5)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        atomic_write(cached, buffer.getvalue())
    except (OSError, StorageError):
        pass  # a read-only home: no cache, still correct
    return array


def load_idx_set(folder: str | os.PathLike, checksums: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """The four arrays of an MNIST-shaped data set in `folder` (see FILES), each checked against its md5 in
    `checksums` when given: train_images (N, rows, cols), train_labels (N,), and the same for test."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: data.path is not a folder")
    arrays = {key: read_idx(find(root, name), (checksums or {}).get(name)) for key, name in FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(f"{root}: {split} images must be (N, rows, cols) and labels (N,), "
                            f"got {images.shape} and {labels.shape}")
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            raise DataError(f"{root}: {split} images and labels must be unsigned bytes, got {images.dtype} and "
                            f"{labels.dtype}")
        if len(images) != len(labels):
            raise DataError(f"{root}: {FILES[split + '_images']} holds {plural(len(images), 'image')} but "
                            f"{FILES[split + '_labels']} holds {plural(len(labels), 'label')}")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(f"{root}: training images are {'x'.join(map(str, arrays['train_images'].shape[1:]))} but "
                        f"test images {'x'.join(map(str, arrays['test_images'].shape[1:]))}")
    return arrays
