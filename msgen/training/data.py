"""The training and held-out tuples of a run, from its DataConfig.

The synthetic dataset is generated on first use into a cache folder named by a hash of its
generation parameters (``$MSGEN_CACHE``, default ~/.cache/msgen, ``/synthetic-<hash>``), through a
temporary folder renamed into place, so an interrupted generation never leaves a half-written
dataset and concurrent runs do not collide. Under torchrun, rank 0 generates while the others wait.

Identities are split into training and held-out persons (``split_by_identity``); tuples are drawn
at the largest M of the run and truncated to each batch's M, the way
evaluation at several M truncates the same test tuples: the dataset's items ``(index, m)`` load
only the first m sources.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from msgen.data import (
    PoseImageFolder,
    TupleDataset,
    deepfashion_identity,
    market_identity,
    sample_tuples,
    split_by_identity,
)
from msgen.data.synthetic import generate_synthetic
from msgen.training.config import DataConfig
from msgen.training.distributed import Distributed, barrier

def cache_root() -> Path:
    return Path(os.environ.get("MSGEN_CACHE", Path.home() / ".cache" / "msgen"))


def synthetic_parameters(data: DataConfig, image_size: tuple[int, int]) -> dict:
    return {"identities": data.identities, "images_per_identity": data.images_per_identity,
            "size": list(image_size), "seed": data.seed}


def synthetic_dir(data: DataConfig, image_size: tuple[int, int]) -> Path:
    """Where the synthetic set of these parameters lives: data.root, or the cache folder."""
    if data.root is not None:
        return Path(data.root)
    key = json.dumps(synthetic_parameters(data, image_size), sort_keys=True)
    return cache_root() / f"synthetic-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def ensure_synthetic(data: DataConfig, image_size: tuple[int, int], log: Callable[[str], None] = print) -> Path:
    """Generate the synthetic set unless it is there; returns its folder."""
    folder = synthetic_dir(data, image_size)
    if (folder / "synthetic.json").is_file():
        return folder
    count = data.identities * data.images_per_identity
    log(f"generating the synthetic dataset ({count} images, {image_size[0]}x{image_size[1]}) into {folder}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        workers = max(1, min(os.cpu_count() or 1, 8))
        generate_synthetic(tmp, data.identities, data.images_per_identity, image_size, data.seed, workers)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished first: keep its copy
            if not (folder / "synthetic.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


@dataclass
class RunData:
    """The datasets of a run: training tuples and held-out tuples (persons disjoint)."""

    train: TupleDataset
    held_out: TupleDataset
    description: str


def data_paths(data: DataConfig, image_size: tuple[int, int]) -> tuple[Path, Path]:
    """The image folder and the annotation CSV that ``data`` names."""
    if data.dataset == "synthetic":
        folder = synthetic_dir(data, image_size)
        return folder / "images", folder / "annotation.csv"
    if data.root is None:
        raise ValueError(f"data.root must name the image folder of a {data.dataset!r} dataset")
    root = Path(data.root)
    return root, Path(data.annotations) if data.annotations else root / "annotation.csv"


def _image_folder(data: DataConfig, image_size: tuple[int, int], state: Distributed,
                  log: Callable[[str], None]) -> PoseImageFolder:
    if data.dataset == "synthetic":
        if state.is_main:
            ensure_synthetic(data, image_size, log)
        barrier(state)
    root, annotations = data_paths(data, image_size)
    if data.dataset == "synthetic":
        return PoseImageFolder(root, annotations, image_size=image_size)
    identity_fn = deepfashion_identity if data.identity == "deepfashion" else market_identity
    return PoseImageFolder(root, annotations, image_size=image_size, identity_fn=identity_fn,
                           drop_junk=data.identity == "market", resize=True)


def build_run_data(data: DataConfig, image_size: tuple[int, int], max_sources: int,
                   state: Distributed, log: Callable[[str], None] = print) -> RunData:
    """Split the folder's persons, draw tuples of ``max_sources`` sources for both sides."""
    folder = _image_folder(data, image_size, state, log)
    train_ids, held_ids = split_by_identity(folder.identities, data.test_fraction, data.seed)
    if not held_ids:
        raise ValueError(f"data.test_fraction={data.test_fraction} holds out no identity of "
                         f"{len(folder.identities)}; raise it")
    train_tuples = sample_tuples(train_ids, max_sources, seed=data.seed, max_tuples=None)
    held_tuples = sample_tuples(held_ids, max_sources, seed=data.seed + 1,
                                max_tuples=max(data.eval_tuples, data.sample_tuples))
    if not train_tuples or not held_tuples:
        raise ValueError(
            f"no tuples of M={max_sources} sources: the identities have too few images "
            f"(each needs >= {max_sources + 1}); lower num_sources or add images"
        )
    description = (f"{folder.root}: {len(train_ids)} training identities ({len(train_tuples)} tuples), "
                   f"{len(held_ids)} held out ({len(held_tuples)} tuples), M <= {max_sources}")
    return RunData(TupleDataset(folder, train_tuples), TupleDataset(folder, held_tuples), description)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, Tensor) else v) for k, v in batch.items()}
