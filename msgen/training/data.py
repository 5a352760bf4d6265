"""The training and held-out tuples of a run, from its DataConfig.

The synthetic dataset is generated on first use into a cache folder named by a hash of its
generation parameters (``--data.synthetic-cache``, else ``$MSGEN_CACHE``, default ~/.cache/msgen,
``/synthetic-<hash>``), through a
temporary folder renamed into place, so an interrupted generation never leaves a half-written
dataset and concurrent runs do not collide. Under torchrun, rank 0 generates while the others wait.

Persons are split into training and held-out persons by ``msgen.data.split.run_split``: the
folder's split.json, else ``split_by_identity``, the same call msgen.evaluate makes; tuples are drawn
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

from msgen.data import PoseImageFolder, TupleDataset, deepfashion_identity, market_identity, sample_tuples
from msgen.data.split import Split, restrict, run_split
from msgen.data.synthetic import generate_synthetic
from msgen.training.config import DataConfig
from msgen.training.distributed import Distributed, barrier
from msgen.errors import UsageError


def cache_root(data: DataConfig | None = None) -> Path:
    """Where synthetic sets are generated: data.synthetic_cache, $MSGEN_CACHE or ~/.cache/msgen."""
    if data is not None and data.synthetic_cache is not None:
        return Path(data.synthetic_cache)
    return Path(os.environ.get("MSGEN_CACHE", Path.home() / ".cache" / "msgen"))


def synthetic_parameters(data: DataConfig, image_size: tuple[int, int]) -> dict:
    return {"identities": data.identities, "images_per_identity": data.images_per_identity,
            "size": list(image_size), "seed": data.seed}


def synthetic_dir(data: DataConfig, image_size: tuple[int, int]) -> Path:
    """The folder of the synthetic set of these parameters, under ``cache_root(data)``."""
    key = json.dumps(synthetic_parameters(data, image_size), sort_keys=True)
    return cache_root(data) / f"synthetic-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


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
    """The datasets of a run: training tuples and held-out tuples (persons disjoint), and the split."""

    train: TupleDataset
    held_out: TupleDataset
    description: str
    split: Split | None = None


def dataset_dir(data: DataConfig, image_size: tuple[int, int]) -> Path:
    """The dataset folder ``data`` names: data.root, or the synthetic set's cache folder.

    Raises UsageError naming --data.root when the folder or its images/annotation.csv is missing.
    """
    if data.root is None:
        return synthetic_dir(data, image_size)
    root = Path(data.root)
    expected = "a dataset folder holding images/, annotation.csv and (from python -m msgen.data.prepare) split.json"
    if not root.is_dir():
        raise UsageError(f"--data.root {root}: no such folder; expected {expected}")
    for part in ("images", "annotation.csv"):
        if not (root / part).exists():
            raise UsageError(f"--data.root {root}: {part} is missing; expected {expected}")
    return root


def identity_function(name: str) -> Callable[[str], str]:
    return deepfashion_identity if name == "deepfashion" else market_identity


def open_folder(data: DataConfig, image_size: tuple[int, int], resize: bool = True) -> PoseImageFolder:
    """The PoseImageFolder of the run's dataset folder (which must exist)."""
    root = dataset_dir(data, image_size)
    return PoseImageFolder(root / "images", root / "annotation.csv", image_size=image_size,
                           identity_fn=identity_function(data.identity),
                           drop_junk=data.identity == "market", resize=resize)


def build_run_data(data: DataConfig, image_size: tuple[int, int], max_sources: int,
                   state: Distributed, log: Callable[[str], None] = print) -> RunData:
    """The run's split (``run_split``: split.json or derived), tuples of ``max_sources`` for both sides.

    Training tuples come from the split's training persons only; the held-out tuples, scored
    during training and drawn in the sample grids, from its test persons.
    """
    if data.root is None:
        if state.is_main:
            ensure_synthetic(data, image_size, log)
        barrier(state)
    folder = open_folder(data, image_size)
    split = run_split(dataset_dir(data, image_size), folder.identities, data.test_fraction, data.seed, max_sources)
    train_ids = restrict(folder.identities, split.train_persons)
    held_ids = restrict(folder.identities, split.test_persons)
    if not held_ids:
        raise UsageError(f"the split of {folder.root.parent} holds out no person of the folder "
                         f"({len(folder.identities)} persons); raise --data.test-fraction or rewrite split.json")
    train_tuples = sample_tuples(train_ids, max_sources, seed=data.seed, max_tuples=None)
    held_tuples = sample_tuples(held_ids, max_sources, seed=data.seed + 1,
                                max_tuples=max(data.eval_tuples, data.sample_tuples))
    if not train_tuples or not held_tuples:
        raise UsageError(
            f"no tuples of M={max_sources} sources: the persons have too few images "
            f"(each needs >= {max_sources + 1}); lower --num-sources or add images"
        )
    description = (f"{folder.root}: {len(train_ids)} training persons ({len(train_tuples)} tuples), "
                   f"{len(held_ids)} held out ({len(held_tuples)} tuples), M <= {max_sources}; split: {split.origin}")
    return RunData(TupleDataset(folder, train_tuples), TupleDataset(folder, held_tuples), description, split)
