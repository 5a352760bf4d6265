"""The tuple dataset: M sources + 1 target with everything the generator needs, and its collate.

Where the pose tensors are computed: in the dataset item, vectorised over the M + 1 images (one
``heatmaps`` call for all of them, one ``body_part_affines`` call for the M source/target pairs).
That runs in the DataLoader's worker processes, in parallel with training, and a batch with mixed M
never spends work on padding. The collate only copies into padded tensors.

Variable M: ``collate_tuples`` pads every batch to its largest M (zeros; keypoints -1 = missing;
theta NULL_THETA, which samples nothing, with all-zero part masks) and returns ``valid`` (B, M).
``VariableMBatchSampler`` makes one DataLoader yield batches whose M is drawn per batch from a set:
it hands the dataset ``(index, m)`` pairs and the item keeps the tuple's first m sources.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from msgen.data.folder import PoseImageFolder
from msgen.data.tuples import Tuple
from msgen.pose import body_part_affines, heatmaps
from msgen.pose.parts import NULL_THETA


class TupleDataset(Dataset):
    """Tuples of one PoseImageFolder as model inputs.

    Item ``i`` (or ``(i, m)``: only the first m sources) is a dict:
        "sources" (M, 3, H, W) float32 in [-1, 1]; "source_kp" (M, 18, 2) float32 (y, x);
        "source_heatmaps" (M, 18, H, W); "target" (3, H, W); "target_kp" (18, 2);
        "target_heatmap" (18, H, W); "theta" (M, 10, 2, 3) backward affines target pixel -> source
        pixel; "part_masks" (M, 10, H, W) target-side masks; "names" [M source names..., target].
    """

    def __init__(self, folder: PoseImageFolder, tuples: Sequence[Tuple], heatmap_sigma: float = 6.0):
        if heatmap_sigma <= 0:
            raise ValueError(f"heatmap_sigma must be > 0, got {heatmap_sigma}")
        kept = set(folder.names)
        for index, (sources, target) in enumerate(tuples):
            if not sources:
                raise ValueError(f"tuple {index} has no source")
            unknown = [name for name in (*sources, target) if name not in kept]
            if unknown:
                raise ValueError(
                    f"tuple {index} names images that {folder.root} does not hold or dropped "
                    f"(see its report()): {', '.join(unknown)}"
                )
        self.folder = folder
        self.tuples = [(list(sources), target) for sources, target in tuples]
        self.heatmap_sigma = heatmap_sigma

    def __len__(self) -> int:
        return len(self.tuples)

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        index, m = index if isinstance(index, tuple) else (index, None)
        sources, target = self.tuples[index]
        if m is not None:
            if not 1 <= m <= len(sources):
                raise ValueError(f"tuple {index} has {len(sources)} sources, cannot take m={m}")
            sources = sources[:m]
        M = len(sources)
        names = [*sources, target]
        images, keypoints = zip(*(self.folder.load(name) for name in names))
        images, keypoints = torch.stack(images), torch.stack(keypoints)  # (M + 1, ...)
        size = self.folder.image_size
        maps = heatmaps(keypoints, size, self.heatmap_sigma)
        theta, masks = body_part_affines(keypoints[:M], keypoints[M:].expand(M, -1, -1), size)
        return {
            "sources": images[:M],
            "source_kp": keypoints[:M],
            "source_heatmaps": maps[:M],
            "target": images[M],
            "target_kp": keypoints[M],
            "target_heatmap": maps[M],
            "theta": theta,
            "part_masks": masks,
            "names": names,
        }


# Per-source entries and what fills the places of missing sources.
_PADDED = {"sources": 0.0, "source_kp": -1.0, "source_heatmaps": 0.0, "part_masks": 0.0}


def collate_tuples(items: Sequence[dict]) -> dict:
    """Batch TupleDataset items whose M may differ, padding to the largest M.

    Returns the item keys with a leading B (per-source entries (B, M, ...)), "names" as a list of
    B lists, and "valid" (B, M) bool: which sources are real. Padded sources are zeros, their
    keypoints -1 (missing), their theta NULL_THETA and their part masks zero, so a padded source
    warps to nothing.
    """
    if not items:
        raise ValueError("collate_tuples got an empty batch")
    B, M = len(items), max(item["sources"].shape[0] for item in items)
    batch: dict = {}
    for key, fill in _PADDED.items():
        first = items[0][key]
        batch[key] = first.new_full((B, M, *first.shape[1:]), fill)
    theta = items[0]["theta"]
    batch["theta"] = torch.tensor(NULL_THETA, dtype=theta.dtype).expand(B, M, *theta.shape[1:]).clone()
    valid = torch.zeros(B, M, dtype=torch.bool)
    for b, item in enumerate(items):
        m = item["sources"].shape[0]
        for key in (*_PADDED, "theta"):
            batch[key][b, :m] = item[key]
        valid[b, :m] = True
    for key in ("target", "target_kp", "target_heatmap"):
        batch[key] = torch.stack([item[key] for item in items])
    batch["names"] = [item["names"] for item in items]
    batch["valid"] = valid
    return batch


class VariableMBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(index, m)`` with one m per batch drawn uniformly from ``num_sources``.

    Use as ``DataLoader(dataset, batch_sampler=..., collate_fn=collate_tuples)``; the dataset's
    tuples must have at least max(num_sources) sources. The order depends on (seed, epoch): call
    ``set_epoch`` before each epoch for a new shuffle.
    """

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        num_sources: Sequence[int],
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not num_sources or min(num_sources) < 1:
            raise ValueError(f"num_sources must be a non-empty set of ints >= 1, got {num_sources}")
        if dataset_size < 1:
            raise ValueError(f"dataset_size must be >= 1, got {dataset_size}")
        self.dataset_size, self.batch_size = dataset_size, batch_size
        self.num_sources = sorted(set(int(m) for m in num_sources))
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        full, rest = divmod(self.dataset_size, self.batch_size)
        return full + (rest > 0 and not self.drop_last)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.dataset_size) if self.shuffle else np.arange(self.dataset_size)
        choices = rng.choice(self.num_sources, size=len(self))
        for b, m in enumerate(choices.tolist()):
            indices = order[b * self.batch_size : (b + 1) * self.batch_size].tolist()
            yield [(index, m) for index in indices]


def tuple_loader(
    dataset: TupleDataset,
    batch_size: int,
    num_sources: int | Sequence[int] | None = None,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 2,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of padded batches; ``num_sources``: None (the tuples' own M), an int (the first
    m sources of every tuple) or a set of ints (m drawn per batch, VariableMBatchSampler)."""
    workers = dict(collate_fn=collate_tuples, num_workers=num_workers, pin_memory=pin_memory,
                   persistent_workers=num_workers > 0)
    if num_sources is None:
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(dataset, batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last, **workers)
    choices = [num_sources] if isinstance(num_sources, int) else num_sources
    sampler = VariableMBatchSampler(len(dataset), batch_size, choices, seed, shuffle, drop_last)
    return DataLoader(dataset, batch_sampler=sampler, **workers)
