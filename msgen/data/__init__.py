"""Data: image folders with keypoints, tuples of M sources + 1 target, the tuple dataset, and the
built-in synthetic people.

- ``folder``: ``PoseImageFolder``, the images + annotation CSV with the validity filter.
- ``tuples``: ``sample_tuples``, ``split_by_identity``, tuple CSVs.
- ``dataset``: ``TupleDataset``, ``collate_tuples`` (variable M), ``to_device``, ``VariableMBatchSampler``.
- ``synthetic``: ``generate_synthetic`` (``python -m msgen.data.synthetic``).
- ``split``: the one train/test split of a dataset folder (split.json; ``run_split``, official splits).
- ``prepare``: ``python -m msgen.data.prepare``: a dataset folder and its split.json.
"""

from msgen.data.dataset import TupleDataset, VariableMBatchSampler, collate_tuples, to_device, tuple_loader
from msgen.data.folder import PoseImageFolder, deepfashion_identity, market_identity
from msgen.data.tuples import SampledTuples, read_tuples_csv, sample_tuples, split_by_identity, write_tuples_csv

__all__ = [
    "PoseImageFolder",
    "SampledTuples",
    "TupleDataset",
    "VariableMBatchSampler",
    "collate_tuples",
    "deepfashion_identity",
    "generate_synthetic",
    "market_identity",
    "read_tuples_csv",
    "sample_tuples",
    "split_by_identity",
    "to_device",
    "tuple_loader",
    "write_tuples_csv",
]


def __getattr__(name: str):
    # Imported on first use, so `python -m msgen.data.synthetic` does not import itself twice.
    if name == "generate_synthetic":
        from msgen.data.synthetic import generate_synthetic

        return generate_synthetic
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
