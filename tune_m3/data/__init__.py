"""Datasets: published feature files, the synthetic benchmark, and the Parquet store.

``python -m tune_m3.data import|synth|info`` is the command line; in Python::

    from tune_m3.data import load_dataset, build_synthetic
    build_synthetic("mosei", scale=0.05)            # -> DatasetMeta of 'synth_mosei_x0.05'
    ds = load_dataset("synth_mosei_x0.05")
    ds.splits["train"].features["text"].shape       # (N, L, 300)
"""

from tune_m3.data.api import DataWarning, build_synthetic, ensure_synthetic, import_file
from tune_m3.data.formats import MODALITIES, SPLITS
from tune_m3.data.store import (
    Dataset,
    DatasetMeta,
    Split,
    default_data_dir,
    list_datasets,
    load_dataset,
    read_meta,
)

__all__ = [
    "DataWarning",
    "MODALITIES",
    "SPLITS",
    "Dataset",
    "DatasetMeta",
    "Split",
    "build_synthetic",
    "default_data_dir",
    "ensure_synthetic",
    "import_file",
    "list_datasets",
    "load_dataset",
    "read_meta",
]
