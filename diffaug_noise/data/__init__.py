"""Datasets of the paper by name, a converter to the zips upstream trainers read, and a reader.

Importing this package needs only numpy and torch; lmdb and Pillow load when used.

>>> from diffaug_noise import data
>>> data.DATASETS["cifar10"].resolution
32
"""
from .datasets import DATASETS, ENV_VAR, DatasetSpec, data_root, get_spec, resolve_data
from .errors import DatasetError
from .prepare import PrepareOptions, PrepareReport, PrepareSettings, prepare
from .sources import SOURCE_FORMATS, ImageDataset, open_source

__all__ = ["DATASETS", "ENV_VAR", "SOURCE_FORMATS", "DatasetError", "DatasetSpec", "ImageDataset", "PrepareOptions",
           "PrepareReport", "PrepareSettings", "data_root", "get_spec", "open_source", "prepare", "resolve_data"]
