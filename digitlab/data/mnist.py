"""MNIST, shipped as package data (four gzip'd IDX files, checked against their published md5s), and any folder
of IDX files with MNIST's names (Fashion-MNIST, EMNIST digits, a folder of one's own)."""

from __future__ import annotations

from pathlib import Path

from digitlab.data.idx import FILES, find, header_shape, load_idx_set
from digitlab.data.source import Source
from digitlab.errors import DataError

BUNDLED = Path(__file__).with_name("mnist")

# md5 of the uncompressed original files (digitlab/data/mnist/README.md).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
}


class MNIST(Source):
    name = "mnist"
    title = "MNIST"
    attribution = ("The MNIST database of handwritten digits (Yann LeCun, Corinna Cortes, Christopher J.C. Burges), "
                   "CC BY-SA 3.0")
    image_shape = (1, 28, 28)
    num_images = 70_000

    def parts(self):
        arrays = load_idx_set(BUNDLED, MNIST_MD5)
        return {"train": (arrays["train_images"], arrays["train_labels"]),
                "test": (arrays["test_images"], arrays["test_labels"])}


class IdxFolder(Source):
    """The four IDX files of `path`, named as MNIST's (gzip'd or not), of any image size; no checksums."""

    name = "idx"
    title = "IDX folder"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.title = f"IDX files in {self.path}"

    def _headers(self) -> dict[str, tuple[int, ...]]:
        if not self.path.is_dir():
            raise DataError(f"{self.path}: data.path is not a folder")
        return {key: header_shape(find(self.path, name)) for key, name in FILES.items()}

    @property
    def image_shape(self):
        shape = self._headers()["train_images"]
        if len(shape) != 3:
            raise DataError(f"{find(self.path, FILES['train_images'])}: holds an array of shape {shape}, "
                            f"expected (images, rows, cols)")
        return (1, shape[1], shape[2])

    @property
    def num_images(self):
        headers = self._headers()
        return headers["train_images"][0] + headers["test_images"][0]

    def parts(self):
        arrays = load_idx_set(self.path)
        return {"train": (arrays["train_images"], arrays["train_labels"]),
                "test": (arrays["test_images"], arrays["test_labels"])}
