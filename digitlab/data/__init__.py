"""Data: datasets that know themselves (bundled MNIST, IDX folders), digit selection and splits, samplers and
loaders, augmentation."""

from digitlab.data.datasets import DATASETS, DataOptions, check_data, load_data, open_source
from digitlab.data.loader import DataLoader, Dataloader, Sampler
from digitlab.data.source import Source
from digitlab.data.splits import Dataset, DigitData, draw_splits, from_indices, select_digits, stratified_split

__all__ = ["DATASETS", "DataOptions", "check_data", "load_data", "open_source", "DataLoader", "Dataloader",
           "Sampler", "Source", "Dataset", "DigitData", "draw_splits", "from_indices", "select_digits",
           "stratified_split"]
