"""TupleDataset items, collate with variable M, the per-batch-M sampler, real and synthetic batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msgen.data.dataset import TupleDataset, VariableMBatchSampler, collate_tuples, tuple_loader
from msgen.data.folder import PoseImageFolder
from msgen.data.synthetic import generate_synthetic
from msgen.data.tuples import sample_tuples
from msgen.pose import body_part_affines, heatmaps
from msgen.pose.parts import NULL_THETA

M_VALUES = (1, 2, 3, 5)


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory):
    out = generate_synthetic(tmp_path_factory.mktemp("synthetic"), identities=5, images_per_identity=7,
                             size=(64, 48), seed=5)
    return PoseImageFolder(out / "images", out / "annotation.csv")


def test_item_shapes_dtypes_and_values(synthetic_folder):
    tuples = sample_tuples(synthetic_folder.identities, 3, seed=0, max_tuples=4)
    dataset = TupleDataset(synthetic_folder, tuples, heatmap_sigma=4.0)
    item = dataset[2]
    H, W = 64, 48
    shapes = {
        "sources": (3, 3, H, W), "source_kp": (3, 18, 2), "source_heatmaps": (3, 18, H, W), "target": (3, H, W),
        "target_kp": (18, 2), "target_heatmap": (18, H, W), "theta": (3, 10, 2, 3), "part_masks": (3, 10, H, W),
    }  # fmt: skip
    for key, shape in shapes.items():
        assert tuple(item[key].shape) == shape, key
        assert item[key].dtype == torch.float32, key
        assert torch.isfinite(item[key]).all(), key
    sources, target = tuples[2]
    assert item["names"] == [*sources, target]
    for i, name in enumerate(item["names"][:3]):
        image, kp = synthetic_folder.load(name)
        torch.testing.assert_close(item["sources"][i], image)
        torch.testing.assert_close(item["source_kp"][i], kp)
    assert item["sources"].min() >= -1 and item["sources"].max() <= 1
    # The heatmaps peak at their keypoints and match the pose module's, as do the affines.
    kp = item["target_kp"]
    seen = (kp >= 0).all(-1)
    peaks = item["target_heatmap"].flatten(1).argmax(1)
    torch.testing.assert_close(torch.stack([peaks // W, peaks % W], 1)[seen].float(), kp[seen].round())
    torch.testing.assert_close(item["source_heatmaps"], heatmaps(item["source_kp"], (H, W), 4.0))
    theta, masks = body_part_affines(item["source_kp"], kp.expand(3, -1, -1), (H, W))
    torch.testing.assert_close(item["theta"], theta)
    torch.testing.assert_close(item["part_masks"], masks)
    assert set(item["part_masks"].unique().tolist()) <= {0.0, 1.0}
    assert (item["part_masks"][:, 0] == 1).all()  # the torso's mask is the whole image


def test_index_with_m_keeps_the_first_sources(synthetic_folder):
    tuples = sample_tuples(synthetic_folder.identities, 5, seed=1, max_tuples=3)
    dataset = TupleDataset(synthetic_folder, tuples)
    full, first_two = dataset[1], dataset[(1, 2)]
    assert first_two["names"] == [*tuples[1][0][:2], tuples[1][1]]
    torch.testing.assert_close(first_two["sources"], full["sources"][:2])
    torch.testing.assert_close(first_two["theta"], full["theta"][:2])
    with pytest.raises(ValueError, match="cannot take m=6"):
        dataset[(1, 6)]


def test_collate_pads_to_the_largest_m(synthetic_folder):
    tuples = sample_tuples(synthetic_folder.identities, 5, seed=2, max_tuples=3)
    dataset = TupleDataset(synthetic_folder, tuples)
    ms = (2, 5, 1)
    items = [dataset[(i, m)] for i, m in enumerate(ms)]
    batch = collate_tuples(items)
    assert batch["sources"].shape == (3, 5, 3, 64, 48) and batch["theta"].shape == (3, 5, 10, 2, 3)
    assert batch["target"].shape == (3, 3, 64, 48) and batch["target_heatmap"].shape == (3, 18, 64, 48)
    expected_valid = torch.tensor([[i < m for i in range(5)] for m in ms])
    assert torch.equal(batch["valid"], expected_valid)
    null = torch.tensor(NULL_THETA)
    for b, (item, m) in enumerate(zip(items, ms)):
        for key in ("sources", "source_kp", "source_heatmaps", "theta", "part_masks"):
            torch.testing.assert_close(batch[key][b, :m], item[key])
        assert (batch["sources"][b, m:] == 0).all() and (batch["source_heatmaps"][b, m:] == 0).all()
        assert (batch["part_masks"][b, m:] == 0).all() and (batch["source_kp"][b, m:] == -1).all()
        assert (batch["theta"][b, m:] == null).all()
        torch.testing.assert_close(batch["target"][b], item["target"])
        assert batch["names"][b] == item["names"]
    with pytest.raises(ValueError, match="empty batch"):
        collate_tuples([])


def test_tuples_naming_dropped_or_unknown_images_are_rejected(synthetic_folder):
    name = synthetic_folder.names[0]
    with pytest.raises(ValueError, match="tuple 1 names images .*0099_front_000.png"):
        TupleDataset(synthetic_folder, [([name], synthetic_folder.names[1]), (["0099_front_000.png"], name)])
    with pytest.raises(ValueError, match="heatmap_sigma"):
        TupleDataset(synthetic_folder, [([name], synthetic_folder.names[1])], heatmap_sigma=0)


def test_variable_m_sampler_draws_one_m_per_batch():
    sampler = VariableMBatchSampler(103, 8, [1, 3, 5], seed=4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13
    indices = [i for batch in batches for i, _ in batch]
    assert sorted(indices) == list(range(103))
    ms = [{m for _, m in batch} for batch in batches]
    assert all(len(m) == 1 for m in ms) and set().union(*ms) == {1, 3, 5}
    assert batches == list(VariableMBatchSampler(103, 8, [1, 3, 5], seed=4))
    sampler.set_epoch(1)
    assert list(sampler) != batches
    assert len(VariableMBatchSampler(103, 8, [2], drop_last=True)) == 12
    with pytest.raises(ValueError, match="num_sources"):
        VariableMBatchSampler(10, 2, [])


def _check_batch(batch: dict, m: int, size: tuple[int, int]) -> None:
    B = batch["target"].shape[0]
    H, W = size
    assert batch["sources"].shape == (B, m, 3, H, W)
    assert batch["source_heatmaps"].shape == (B, m, 18, H, W)
    assert batch["theta"].shape == (B, m, 10, 2, 3) and batch["part_masks"].shape == (B, m, 10, H, W)
    assert batch["valid"].all() and len(batch["names"]) == B
    assert all(len(set(names)) == m + 1 for names in batch["names"])
    assert torch.isfinite(batch["theta"]).all() and batch["sources"].abs().max() <= 1


@pytest.mark.parametrize("m", M_VALUES)
def test_synthetic_batches_for_each_m(synthetic_folder, m):
    tuples = sample_tuples(synthetic_folder.identities, m, seed=m)
    loader = tuple_loader(TupleDataset(synthetic_folder, tuples), batch_size=4, num_workers=0)
    batch = next(iter(loader))
    _check_batch(batch, m, (64, 48))


def test_loader_with_workers_and_m_per_batch(synthetic_folder):
    tuples = sample_tuples(synthetic_folder.identities, 5, seed=9, max_tuples=24)
    loader = tuple_loader(TupleDataset(synthetic_folder, tuples), batch_size=4, num_sources=M_VALUES, num_workers=2)
    seen = set()
    for batch in loader:
        m = batch["sources"].shape[1]
        _check_batch(batch, m, (64, 48))
        seen.add(m)
    assert seen <= set(M_VALUES) and len(seen) > 1


@pytest.mark.data
@pytest.mark.parametrize("m", M_VALUES)
def test_real_market_batches_for_each_m(shared_data, m):
    root = shared_data / "market-real"
    folder = PoseImageFolder(root / "images", root / "annotation.csv")
    tuples = sample_tuples(folder.identities, m, seed=0, max_tuples=6)
    assert len(tuples) == 6
    counts = np.array([len(v) for v in folder.identities.values()])
    assert len(tuples.skipped_identities) == (counts < m + 1).sum()
    loader = tuple_loader(TupleDataset(folder, tuples), batch_size=3, num_workers=0)
    for batch in loader:
        _check_batch(batch, m, (128, 64))
        identities = {name.split("_")[0] for names in batch["names"] for name in names}
        assert len(identities) <= 3
