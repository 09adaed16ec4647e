"""Data: bundled MNIST (IDX files with checksums), digit selection and splits, samplers and loaders."""

from digitlab.data.datasets import Dataset, DigitData, load_digits, select_digits, stratified_split
from digitlab.data.loader import DataLoader, Dataloader, Sampler

__all__ = ["Dataset", "DigitData", "load_digits", "select_digits", "stratified_split",
           "DataLoader", "Dataloader", "Sampler"]
