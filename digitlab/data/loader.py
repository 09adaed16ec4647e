"""Sampler and DataLoader, kept apart as in kudzu: the sampler decides which samples form each batch
(shuffled afresh every epoch from the run's Generator), the loader only gathers them.

Keeping the order in the sampler makes seeding and resuming simple: the batches of an epoch depend only on
the Generator's state when the epoch starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np


class Sampler:
    """Yields arrays of sample indices, `batch_size` at a time; a new permutation per epoch when shuffling."""

    def __init__(self, n: int, batch_size: int, shuffle: bool = True,
                 rng: np.random.Generator | None = None, drop_last: bool = False):
        if shuffle and rng is None:
            raise ValueError("a shuffling Sampler needs the run's Generator")
        self.n, self.batch_size, self.shuffle, self.rng, self.drop_last = n, batch_size, shuffle, rng, drop_last

    def __iter__(self) -> Iterator[np.ndarray]:
        order = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        stop = self.n - self.n % self.batch_size if self.drop_last else self.n
        for start in range(0, stop, self.batch_size):
            yield order[start:start + self.batch_size]

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)


class DataLoader:
    """Gathers the batches a Sampler names from arrays of equal length (inputs, targets, ...). An optional
    `transform` (data augmentation) is applied to each gathered batch of the first array, the inputs."""

    def __init__(self, arrays: tuple[np.ndarray, ...], sampler: Sampler,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None):
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1 or lengths.pop() != sampler.n:
            raise ValueError("all arrays of a DataLoader need the sampler's length")
        self.arrays, self.sampler, self.transform = arrays, sampler, transform

    def __iter__(self) -> Iterator[tuple[np.ndarray, ...]]:
        for idx in self.sampler:
            batch = tuple(a[idx] for a in self.arrays)
            yield batch if self.transform is None else (self.transform(batch[0]),) + batch[1:]

    def __len__(self) -> int:
        return len(self.sampler)


# The course notebooks' word for it.
Dataloader = DataLoader
