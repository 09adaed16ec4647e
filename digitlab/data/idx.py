"""IDX files (the MNIST format): find, verify and decode them, with a cache of the decoded arrays.

Decoding 47 MB of gzip'd pixels takes seconds; the decoded uint8 arrays are cached as `.npy` files keyed by
the md5 of the compressed file, so a warm load is a memory map. The md5 of the decompressed bytes is checked
against the published one whenever a file is decoded, so a corrupt or truncated file never reaches training.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import zlib
from pathlib import Path

import mnist
import numpy as np

from digitlab.errors import DataError

BUNDLED = Path(__file__).with_name("mnist")

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

# md5 of the uncompressed original files (shared/data/mnist/README.md).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
}


def cache_dir() -> Path:
    """Where decoded arrays are kept: $DIGITLAB_CACHE, else $XDG_CACHE_HOME/digitlab, else ~/.cache/digitlab."""
    if os.environ.get("DIGITLAB_CACHE"):
        return Path(os.environ["DIGITLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "digitlab"


def _find(folder: Path, name: str) -> Path:
    """The file `name` in `folder`, gzip'd or not."""
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder / name}: file not found (data.path must hold the four IDX files: "
                    f"{', '.join(FILES.values())}, gzip'd or not)")


def _decode(path: Path, expected_md5: str | None) -> np.ndarray:
    """Decompress, check the md5 of the raw bytes, and parse with `mnist.parse_idx`."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot be read or decompressed ({exc}); the file is corrupt or truncated")
    if expected_md5 is not None and hashlib.md5(raw).hexdigest() != expected_md5:
        raise DataError(f"{path}: md5 of the decompressed bytes is {hashlib.md5(raw).hexdigest()}, "
                        f"expected {expected_md5}; the file is corrupt or truncated")
    try:
        return mnist.parse_idx(io.BytesIO(raw))
    except Exception as exc:  # parse_idx raises IdxDecodeError, struct.error or ValueError
        raise DataError(f"{path}: not a valid IDX file ({exc})")


def read_idx(path: Path, expected_md5: str | None = None) -> np.ndarray:
    """One IDX file as a numpy array (uint8 for MNIST), from the cache when its checksum matches."""
    key = hashlib.md5(path.read_bytes()).hexdigest()
    cached = cache_dir() / f"{path.name.split('.')[0]}-{key}.npy"
    if cached.is_file():
        try:
            return np.load(cached, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            pass  # a damaged cache entry is rebuilt below
    array = _decode(path, expected_md5)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, cached)
    except OSError:
        pass  # a read-only home: no cache, still correct
    return array


def load_idx_set(folder: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The four arrays of an MNIST-shaped data set: bundled MNIST by default, or a folder of IDX files.

    Returns train_images (N, 28, 28) uint8, train_labels (N,) uint8, and the same for test.
    """
    bundled = folder is None
    root = BUNDLED if bundled else Path(folder)
    if not bundled and not root.is_dir():
        raise DataError(f"{root}: data.path is not a folder")
    arrays = {}
    for key, name in FILES.items():
        path = _find(root, name)
        arrays[key] = read_idx(path, MNIST_MD5[name] if bundled else None)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(f"{root}: {split} images must be (N, rows, cols) and labels (N,), "
                            f"got {images.shape} and {labels.shape}")
        if images.shape[1:] != (28, 28):
            raise DataError(f"{root}: {FILES[split + '_images']} holds {images.shape[1]}x{images.shape[2]} images; "
                            f"digitlab's models take 28x28 (MNIST, Fashion-MNIST, EMNIST)")
        if len(images) != len(labels):
            raise DataError(f"{root}: {FILES[split + '_images']} holds {len(images)} images but "
                            f"{FILES[split + '_labels']} holds {len(labels)} labels")
    return arrays
