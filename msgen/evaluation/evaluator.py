"""The evaluator: ``msgen.evaluate``'s table and the periodic evaluation inside training share it.

Rows are *methods*, each a function of a batch (with its pose tensors) that returns images
(B, 3, H, W) in [-1, 1]: the model, and the reference rows of ``msgen.evaluation.baselines``: the
non-learned warp baseline (``warp_baseline``), a constant image of the training mean colour
(``constant_method``) and the ground truth itself (scored only by the metrics that are not
pairwise: FID and IS of the test images). Every M is scored on the tuples that hold M sources or
more, truncated to their first M (TupleDataset items ``(i, m)``): the same tuples at every M when
all hold the largest M, and otherwise every person at each M its images allow (a person with 2
images serves M = 1 only). Each result records which tuples it scored and their persons.

Per tuple (kept for paired comparisons, with the tuple's person from ``tuple_persons``, so that
intervals resample persons): SSIM in GFLA's form (``ssim_gfla``), SSIM_256
(``ssim``, its data range as chosen), mask-SSIM (both images masked with the TARGET's person
mask), LPIPS. Per set: FID against the real set's Inception statistics, IS and mask-IS (10
splits). The images are scored as uint8, as saved PNGs would be. Inception features and IS
sums are accumulated batch by batch (``FeatureStats``, ``StreamingInceptionScore``), so no
image set is held in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from msgen.data import PoseImageFolder, TupleDataset, collate_tuples, to_device
from msgen.evaluation.features import (
    IS_SPLITS,
    FeatureStats,
    InceptionModel,
    StreamingInceptionScore,
    images_to_inception_input,
)
from msgen.evaluation.intervals import bootstrap_interval, count_persons
from msgen.evaluation.ssim import apply_mask, ssim, ssim_gfla, to_uint8
from msgen.pose import person_mask, with_pose_inputs

PAIRWISE = ("ssim", "ssim_256", "mask_ssim", "lpips")


@dataclass
class Method:
    """A row of the table. make: batch (on the device, with pose tensors) -> (B, 3, H, W) in [-1, 1].

    per_m False: the output does not depend on M (scored once, at the smallest M).
    pairwise False: only FID and IS are computed (the ground truth row).
    """

    name: str
    make: Callable[[dict], Tensor]
    per_m: bool = True
    pairwise: bool = True


@dataclass
class Networks:
    """The feature networks of the set metrics; None with the reason in the note when unavailable."""

    inception: InceptionModel | None = None
    inception_note: str | None = "not requested"
    lpips: Callable[[Tensor, Tensor], Tensor] | None = None
    lpips_note: str | None = "not requested"
    batch_size: int = 32


@dataclass
class MethodResult:
    """The scores of one method at one M: per-tuple arrays, the person of each tuple and the set
    metrics (None: unavailable).

    tuples: the dataset indices of the scored tuples, in the order of the per-tuple arrays;
    persons: each scored tuple's person (its target's identity), for intervals over persons.
    """

    method: str
    num_sources: int
    per_tuple: dict[str, np.ndarray] = field(default_factory=dict)
    persons: list[str] = field(default_factory=list)
    fid: float | None = None
    inception: tuple[float, float] | None = None
    mask_inception: tuple[float, float] | None = None
    tuples: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    persons: list[str] = field(default_factory=list)


def real_statistics(folder: PoseImageFolder, names: Sequence[str], inception: InceptionModel, batch_size: int = 32,
                    progress: bool = False) -> FeatureStats:
    """Inception pool-feature statistics of the real set (the training images ``names``), streamed."""
    stats = FeatureStats()
    starts = range(0, len(names), batch_size)
    for start in _progress(starts, progress, "real set (FID)"):
        images = to_uint8(torch.stack([folder.load(n)[0] for n in names[start : start + batch_size]]))
        stats.add(inception(images_to_inception_input(images))[0])
    return stats


def tuple_persons(dataset: TupleDataset, count: int | None = None) -> list[str]:
    """The person of each of the first ``count`` tuples (all: None): the identity of its target by
    the folder's identity function (a tuple's sources are the same person)."""
    return [dataset.folder.identity_fn(target) for _, target in dataset.tuples[:count]]


def _progress(iterable: Iterable, enabled: bool, description: str) -> Iterable:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=description, unit="batch", leave=False)


@torch.no_grad()
def score_methods(
    methods: Sequence[Method],
    dataset: TupleDataset,
    num_sources: Sequence[int],
    device: torch.device | str = "cpu",
    batch_size: int = 16,
    data_range: str = "255",
    networks: Networks | None = None,
    real: FeatureStats | None = None,
    count: int | None = None,
    workers: int = 0,
    autocast: Callable[[], object] = contextlib.nullcontext,
    progress: bool = False,
) -> list[MethodResult]:
    """Score every method on the first ``count`` tuples (all: None) at every M of ``num_sources``,
    each M on those of them that hold M sources or more.

    networks: Inception (FID with ``real``, IS) and LPIPS; a metric whose network is None is left
    out (its arrays/values absent). Returns one MethodResult per (method, M) it applies to.
    """
    networks = networks or Networks()
    device = torch.device(device)
    count = len(dataset) if count is None else min(count, len(dataset))
    ms = sorted(set(num_sources))
    size = tuple(dataset.image_size)
    gfla_fits = min(size) >= 51
    persons = tuple_persons(dataset, count)  # of every scored tuple; each M keeps those it scores
    results: list[MethodResult] = []
    serving = {m: [i for i in range(count) if len(dataset.tuples[i][0]) >= m] for m in ms}
    total_batches = sum(-(-len(serving[m]) // batch_size) for m in ms)
    bar = _progress(range(total_batches), progress, "evaluating")
    ticks = iter(bar)
    for m in ms:
        active = [method for method in methods if method.per_m or m == ms[0]]
        current = {method.name: MethodResult(method.name, m) for method in active}
        scores = {method.name: {key: [] for key in PAIRWISE} for method in active}
        feats = {method.name: FeatureStats() for method in active}
        indices = serving[m]
        inception = {method.name: (StreamingInceptionScore(len(indices)), StreamingInceptionScore(len(indices)))
                     for method in active}
        batches = [[(i, m) for i in indices[start:start + batch_size]] for start in range(0, len(indices), batch_size)]
        loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate_tuples, num_workers=workers)
        for batch in loader:
            next(ticks, None)
            batch = with_pose_inputs(to_device(batch, device), size)
            real_u8 = to_uint8(batch["target"])
            masks = [person_mask(kp, size) for kp in batch["target_kp"].cpu().numpy()]
            real_masked = [apply_mask(r, mask) for r, mask in zip(real_u8, masks)]
            for method in active:
                with autocast():
                    image = method.make(batch)
                fake_u8 = to_uint8(image.float())
                fake_masked = np.stack([apply_mask(f, mask) for f, mask in zip(fake_u8, masks)])
                if method.pairwise:
                    record = scores[method.name]
                    for f, r, fm, rm in zip(fake_u8, real_u8, fake_masked, real_masked):
                        record["ssim_256"].append(ssim(f, r, data_range))
                        record["mask_ssim"].append(ssim(fm, rm, data_range))
                        if gfla_fits:
                            record["ssim"].append(ssim_gfla(f, r))
                    if networks.lpips is not None:
                        # From the uint8 images, as the published scripts read saved PNGs.
                        x0 = torch.from_numpy(fake_u8).permute(0, 3, 1, 2).float().to(device) / 127.5 - 1
                        x1 = torch.from_numpy(real_u8).permute(0, 3, 1, 2).float().to(device) / 127.5 - 1
                        record["lpips"] += networks.lpips(x0, x1).float().cpu().tolist()
                if networks.inception is not None:
                    for start in range(0, len(fake_u8), networks.batch_size):
                        part = slice(start, start + networks.batch_size)
                        features, probs = networks.inception(images_to_inception_input(fake_u8[part]))
                        feats[method.name].add(features)
                        inception[method.name][0].add(probs.double().cpu().numpy())
                        inception[method.name][1].add(
                            networks.inception(images_to_inception_input(fake_masked[part]))[1].double().cpu().numpy())
        for method in active:
            result = current[method.name]
            result.per_tuple = {k: np.asarray(v) for k, v in scores[method.name].items() if v}
            result.tuples = np.asarray(indices, np.int64)
            result.persons = [persons[i] for i in indices]
            if networks.inception is not None:
                if real is not None and feats[method.name].count >= 2:
                    result.fid = feats[method.name].frechet_distance(real)
                if len(indices) >= IS_SPLITS:
                    result.inception = inception[method.name][0].score()
                    result.mask_inception = inception[method.name][1].score()
            results.append(result)
    if progress:
        bar.close()
    return results


def summarise(values: np.ndarray, seed: int = 0, persons: Sequence[str] | None = None) -> dict[str, float]:
    """Mean, 95% bootstrap interval and the tuple count "n" of per-tuple scores; given each tuple's
    person, the interval resamples persons and "persons" counts them."""
    enough = len(values) >= 2 and (persons is None or count_persons(persons) >= 2)
    low, high = bootstrap_interval(values, seed=seed, persons=persons) if enough else (float("nan"), float("nan"))
    summary = {"mean": float(np.mean(values)), "low": low, "high": high, "n": int(len(values))}
    if persons is not None:
        summary["persons"] = count_persons(persons)
    return summary


@torch.no_grad()
def evaluate(
    generator: nn.Module,
    dataset: TupleDataset,
    count: int,
    num_sources: Iterable[int],
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], object],
) -> dict[str, float]:
    """Training's periodic evaluation: SSIM_256 (range 255) and mask-SSIM over the first ``count``
    held-out tuples at each M, through ``score_methods``.

    Returns {"ssim_m<M>", "mask_ssim_m<M>"} per M and their means over M as "ssim", "mask_ssim"
    (the run's "best" checkpoint maximises "mask_ssim").
    """
    was_training = generator.training
    generator.eval()
    try:
        method = Method("model", lambda batch: generator.forward_batch(batch).image)
        results = score_methods([method], dataset, list(num_sources), device, batch_size, count=count,
                                autocast=autocast)
    finally:
        generator.train(was_training)
    metrics: dict[str, float] = {}
    for result in results:
        metrics[f"ssim_m{result.num_sources}"] = float(result.per_tuple["ssim_256"].mean())
        metrics[f"mask_ssim_m{result.num_sources}"] = float(result.per_tuple["mask_ssim"].mean())
    ms = [result.num_sources for result in results]
    metrics["ssim"] = float(np.mean([metrics[f"ssim_m{m}"] for m in ms]))
    metrics["mask_ssim"] = float(np.mean([metrics[f"mask_ssim_m{m}"] for m in ms]))
    return metrics
