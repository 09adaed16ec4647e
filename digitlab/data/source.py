"""What every dataset knows about itself, as torchvision's datasets and scikit-learn's Bunch do: its image
shape, its pixel range, its classes, whether it has an official test split, its files and its attribution.
Nothing outside `digitlab.data` knows that MNIST is 28x28: models, figures and memory estimates ask the source.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from digitlab.options import plural


class Source:
    """A dataset as it is stored. `parts()` gives its labelled images by part: {"train": (images, labels),
    "test": (images, labels)} for a dataset with an official test split, {"all": (images, labels)} for one
    without (the config's data.test fraction then sets a test split aside). Images are (N, rows, cols) integers
    in 0..pixel_max, labels (N,) integers: the digits themselves."""

    name: ClassVar[str]
    title: ClassVar[str] = ""
    attribution: ClassVar[str] = ""
    pixel_max: ClassVar[int] = 255
    classes: ClassVar[list[int]] = list(range(10))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, rows, cols) of one image as models see it."""
        raise NotImplementedError

    @property
    def num_images(self) -> int:
        """How many images all parts hold (for memory estimates, before anything is read)."""
        raise NotImplementedError

    has_test: ClassVar[bool] = True  # an official test split; without one, data.test holds out a fraction
    default_test: ClassVar[float | None] = None  # that fraction when the config gives none

    def parts(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        raise NotImplementedError

    @property
    def input_size(self) -> int:
        return math.prod(self.image_shape)

    def describe(self) -> str:
        c, h, w = self.image_shape
        return f"{self.title or self.name}: {plural(self.num_images, 'image')} of {h}x{w} pixels (0..{self.pixel_max})"
