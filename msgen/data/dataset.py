"""The tuple dataset: M sources + 1 target as images and keypoints, and its collate.

The loader ships images and keypoints only (about 0.5 MB per sample at M = 5, 128x64, where the
dense pose tensors were 5.8 MB): heatmaps, part affines and part masks are computed where the
model runs, batched, by ``msgen.pose.pose_inputs`` (``with_pose_inputs`` on a collated batch), on
the GPU during training. Data-dependent checks happen here, where the data enter: each item's
keypoints are validated, so the training step on the device needs no host sync to check them.

Variable M: ``collate_tuples`` pads every batch to its largest M (zeros; keypoints -1 = missing,
from which ``pose_inputs`` gives the padding's NULL_THETA and zero masks) and returns ``valid``
(B, M), or None when every sample has the batch's M (the common case: the kernels then skip the
mask). ``VariableMBatchSampler`` makes one DataLoader yield batches whose M is drawn per batch
from a set: it hands the dataset ``(index, m)`` pairs and the item keeps the tuple's first m sources.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from msgen.data.folder import PoseImageFolder
from msgen.data.tuples import Tuple
from msgen.pose import check_keypoints


class TupleDataset(Dataset):
    """Tuples of one PoseImageFolder as model inputs.

    Item ``i`` (or ``(i, m)``: only the first m sources) is a dict:
        "sources" (M, 3, H, W) float32 in [-1, 1]; "source_kp" (M, 18, 2) float32 (y, x), -1 =
        missing; "target" (3, H, W); "target_kp" (18, 2); "names" [M source names..., target].
    The pose tensors come from ``msgen.pose.with_pose_inputs`` on the collated batch.
    """

    def __init__(self, folder: PoseImageFolder, tuples: Sequence[Tuple]):
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

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of every image and of the keypoints' frame."""
        return self.folder.image_size

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
        check_keypoints(keypoints, name=f"keypoints of tuple {index} ({', '.join(names)})")
        return {
            "sources": images[:M],
            "source_kp": keypoints[:M],
            "target": images[M],
            "target_kp": keypoints[M],
            "names": names,
        }


# Per-source entries and what fills the places of missing sources.
_PADDED = {"sources": 0.0, "source_kp": -1.0}


def collate_tuples(items: Sequence[dict]) -> dict:
    """Batch TupleDataset items whose M may differ, padding to the largest M.

    Returns "sources" (B, M, 3, H, W), "source_kp" (B, M, 18, 2), "target" (B, 3, H, W),
    "target_kp" (B, 18, 2), "names" (B lists) and "valid": None when every item has M sources,
    else (B, M) bool marking the real ones. Padded sources are zeros with all keypoints -1
    (missing), so they warp to nothing.
    """
    if not items:
        raise ValueError("collate_tuples got an empty batch")
    counts = [item["sources"].shape[0] for item in items]
    B, M = len(items), max(counts)
    batch: dict = {}
    for key, fill in _PADDED.items():
        first = items[0][key]
        batch[key] = first.new_full((B, M, *first.shape[1:]), fill)
        for b, item in enumerate(items):
            batch[key][b, : counts[b]] = item[key]
    for key in ("target", "target_kp"):
        batch[key] = torch.stack([item[key] for item in items])
    batch["names"] = [item["names"] for item in items]
    if min(counts) == M:
        batch["valid"] = None
    else:
        batch["valid"] = torch.arange(M)[None, :] < torch.tensor(counts)[:, None]
    return batch


def to_device(batch: dict, device: torch.device) -> dict:
    """A collated batch with its tensors moved to ``device`` (non-blocking); other values as they are."""
    return {k: (v.to(device, non_blocking=True) if isinstance(v, Tensor) else v) for k, v in batch.items()}


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
    pin_memory: bool | None = None,
) -> DataLoader:
    """A DataLoader of padded batches; ``num_sources``: None (the tuples' own M), an int (the first
    m sources of every tuple) or a set of ints (m drawn per batch, VariableMBatchSampler).
    ``pin_memory`` None pins when a CUDA GPU is visible (pinned pages only speed up copies to it)."""
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    workers = dict(collate_fn=collate_tuples, num_workers=num_workers, pin_memory=pin_memory,
                   persistent_workers=num_workers > 0)
    if num_sources is None:
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(dataset, batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last, **workers)
    choices = [num_sources] if isinstance(num_sources, int) else num_sources
    sampler = VariableMBatchSampler(len(dataset), batch_size, choices, seed, shuffle, drop_last)
    return DataLoader(dataset, batch_sampler=sampler, **workers)
