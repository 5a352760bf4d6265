"""TupleDataset items, collate with variable M, the per-batch-M sampler, real and synthetic batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msgen.data.dataset import TupleDataset, VariableMBatchSampler, collate_tuples, tuple_loader
from msgen.data.folder import PoseImageFolder
from msgen.data.synthetic import generate_synthetic
from msgen.data.tuples import sample_tuples
from msgen.pose import POSE_KEYS, body_part_affines, heatmaps, pose_inputs, read_annotations, with_pose_inputs
from msgen.pose.parts import NULL_THETA

M_VALUES = (1, 2, 3, 5)


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory):
    out = generate_synthetic(tmp_path_factory.mktemp("synthetic"), identities=5, images_per_identity=7,
                             size=(64, 48), seed=5)
    return PoseImageFolder(out / "images", out / "annotation.csv")


ITEM_KEYS = {"sources", "source_kp", "target", "target_kp", "names"}


def legacy_item_pose(source_kp: torch.Tensor, target_kp: torch.Tensor, size: tuple[int, int], sigma: float) -> dict:
    """What the loader's item computed before the pose tensors moved to the device, per tuple."""
    M = source_kp.shape[0]
    maps = heatmaps(torch.cat([source_kp, target_kp[None]]), size, sigma)
    theta, masks = body_part_affines(source_kp, target_kp.expand(M, -1, -1), size)
    return {"source_heatmaps": maps[:M], "target_heatmap": maps[M], "theta": theta, "part_masks": masks}


def legacy_batch_pose(source_kps: list, target_kps: list, size: tuple[int, int], sigma: float = 6.0) -> dict:
    """The old collate's padding of those per-tuple tensors to the largest M."""
    items = [legacy_item_pose(s, t, size, sigma) for s, t in zip(source_kps, target_kps)]
    B, M, (H, W) = len(items), max(s.shape[0] for s in source_kps), size
    out = {
        "source_heatmaps": torch.zeros(B, M, 18, H, W),
        "target_heatmap": torch.stack([item["target_heatmap"] for item in items]),
        "theta": torch.tensor(NULL_THETA).expand(B, M, 10, 2, 3).clone(),
        "part_masks": torch.zeros(B, M, 10, H, W),
    }
    for b, item in enumerate(items):
        m = source_kps[b].shape[0]
        for key in ("source_heatmaps", "theta", "part_masks"):
            out[key][b, :m] = item[key]
    return out


def _assert_same_pose(got: dict, want: dict) -> None:
    for key in POSE_KEYS:
        assert got[key].shape == want[key].shape and got[key].dtype == want[key].dtype, key
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-5, msg=key)
        assert torch.isfinite(got[key]).all(), key


def test_item_holds_images_and_keypoints_only(synthetic_folder):
    tuples = sample_tuples(synthetic_folder.identities, 3, seed=0, max_tuples=4)
    dataset = TupleDataset(synthetic_folder, tuples)
    item = dataset[2]
    H, W = dataset.image_size
    assert set(item) == ITEM_KEYS
    shapes = {"sources": (3, 3, H, W), "source_kp": (3, 18, 2), "target": (3, H, W), "target_kp": (18, 2)}
    for key, shape in shapes.items():
        assert tuple(item[key].shape) == shape, key
        assert item[key].dtype == torch.float32, key
    sources, target = tuples[2]
    assert item["names"] == [*sources, target]
    for i, name in enumerate(item["names"][:3]):
        image, kp = synthetic_folder.load(name)
        torch.testing.assert_close(item["sources"][i], image)
        torch.testing.assert_close(item["source_kp"][i], kp)
    assert item["sources"].min() >= -1 and item["sources"].max() <= 1
    # The batch's pose tensors, built from the keypoints, are what the item used to carry.
    batch = with_pose_inputs(collate_tuples([item]), (H, W), heatmap_sigma=4.0)
    want = legacy_batch_pose([item["source_kp"]], [item["target_kp"]], (H, W), sigma=4.0)
    _assert_same_pose(batch, want)
    peaks = batch["target_heatmap"][0].flatten(1).argmax(1)
    seen = (item["target_kp"] >= 0).all(-1)
    torch.testing.assert_close(torch.stack([peaks // W, peaks % W], 1)[seen].float(), item["target_kp"][seen].round())
    assert (batch["part_masks"][0, :, 0] == 1).all()  # the torso's mask is the whole image


def test_item_rejects_bad_keypoints_where_they_enter(synthetic_folder, monkeypatch):
    tuples = sample_tuples(synthetic_folder.identities, 2, seed=0, max_tuples=2)
    dataset = TupleDataset(synthetic_folder, tuples)
    name = tuples[0][0][0]
    broken = synthetic_folder.keypoints(name).copy()
    broken[3] = (np.nan, 2.0)
    monkeypatch.setitem(synthetic_folder._keypoints, name, broken)
    with pytest.raises(ValueError, match="keypoints of tuple 0 .*NaN"):
        dataset[0]


def test_index_with_m_keeps_the_first_sources(synthetic_folder):
    tuples = sample_tuples(synthetic_folder.identities, 5, seed=1, max_tuples=3)
    dataset = TupleDataset(synthetic_folder, tuples)
    full, first_two = dataset[1], dataset[(1, 2)]
    assert first_two["names"] == [*tuples[1][0][:2], tuples[1][1]]
    torch.testing.assert_close(first_two["sources"], full["sources"][:2])
    torch.testing.assert_close(first_two["source_kp"], full["source_kp"][:2])
    with pytest.raises(ValueError, match="cannot take m=6"):
        dataset[(1, 6)]


def test_collate_pads_to_the_largest_m(synthetic_folder):
    tuples = sample_tuples(synthetic_folder.identities, 5, seed=2, max_tuples=3)
    dataset = TupleDataset(synthetic_folder, tuples)
    ms = (2, 5, 1)
    items = [dataset[(i, m)] for i, m in enumerate(ms)]
    batch = collate_tuples(items)
    assert set(batch) == ITEM_KEYS | {"valid"}
    assert batch["sources"].shape == (3, 5, 3, 64, 48) and batch["source_kp"].shape == (3, 5, 18, 2)
    assert batch["target"].shape == (3, 3, 64, 48) and batch["target_kp"].shape == (3, 18, 2)
    expected_valid = torch.tensor([[i < m for i in range(5)] for m in ms])
    assert torch.equal(batch["valid"], expected_valid)
    for b, (item, m) in enumerate(zip(items, ms)):
        for key in ("sources", "source_kp"):
            torch.testing.assert_close(batch[key][b, :m], item[key])
        assert (batch["sources"][b, m:] == 0).all() and (batch["source_kp"][b, m:] == -1).all()
        torch.testing.assert_close(batch["target"][b], item["target"])
        assert batch["names"][b] == item["names"]
    # Padded sources warp to nothing: the device-built tensors equal the old collate's padding.
    pose = with_pose_inputs(batch, (64, 48))
    _assert_same_pose(pose, legacy_batch_pose([i["source_kp"] for i in items], [i["target_kp"] for i in items], (64, 48)))
    null = torch.tensor(NULL_THETA)
    for b, m in enumerate(ms):
        assert (pose["part_masks"][b, m:] == 0).all() and (pose["source_heatmaps"][b, m:] == 0).all()
        assert (pose["theta"][b, m:] == null).all()
    with pytest.raises(ValueError, match="empty batch"):
        collate_tuples([])


def test_collate_gives_no_valid_mask_when_every_source_is_real(synthetic_folder):
    tuples = sample_tuples(synthetic_folder.identities, 3, seed=2, max_tuples=3)
    dataset = TupleDataset(synthetic_folder, tuples)
    assert collate_tuples([dataset[(i, 3)] for i in range(3)])["valid"] is None


def _random_poses(g: torch.Generator, n: int, size: tuple[int, int]) -> torch.Tensor:
    """Random poses around a standing person, a quarter of the points missing at random."""
    H, W = size
    base = torch.tensor([[0.12, 0.5], [0.22, 0.5], [0.22, 0.35], [0.35, 0.3], [0.47, 0.27], [0.22, 0.65],
                         [0.35, 0.7], [0.47, 0.73], [0.5, 0.4], [0.69, 0.4], [0.88, 0.38], [0.5, 0.6],
                         [0.69, 0.6], [0.88, 0.62], [0.1, 0.55], [0.1, 0.45], [0.11, 0.6], [0.11, 0.4]])
    kp = base * torch.tensor([H - 1.0, W - 1.0]) + torch.randn(n, 18, 2, generator=g) * 0.04 * H
    kp = kp.clamp(min=0).round()
    missing = torch.rand(n, 18, generator=g) < 0.25
    return torch.where(missing[..., None], torch.full_like(kp, -1.0), kp)


@pytest.mark.parametrize("ms", [(1, 1), (2, 2, 2), (3, 1, 2), (5, 2, 5, 1)])
def test_device_built_pose_equals_the_old_loader_output_on_random_keypoints(ms):
    g = torch.Generator().manual_seed(sum(ms))
    size = (64, 32)
    sources = [_random_poses(g, m, size) for m in ms]
    targets = list(_random_poses(g, len(ms), size))
    sources[0][0, :] = -1.0  # a source with no point at all
    items = [{"sources": torch.zeros(m, 3, *size), "source_kp": s, "target": torch.zeros(3, *size), "target_kp": t,
              "names": []} for m, s, t in zip(ms, sources, targets)]
    batch = with_pose_inputs(collate_tuples(items), size)
    _assert_same_pose(batch, legacy_batch_pose(sources, targets, size))


@pytest.mark.data
@pytest.mark.parametrize("m", M_VALUES)
def test_device_built_pose_equals_the_old_loader_output_on_real_keypoints(shared_data, m):
    annotations = read_annotations(shared_data / "market-keypoints" / "market-annotation-test.csv")
    names = sorted(annotations)[m * 40 : m * 40 + 4 * (m + 1)]
    kps = torch.tensor(np.stack([annotations[name] for name in names]), dtype=torch.float32).view(4, m + 1, 18, 2)
    sources, targets = list(kps[:, :m]), list(kps[:, m])
    sources[1] = sources[1][: max(1, m - 1)]  # one tuple with fewer sources: padding
    items = [{"sources": torch.zeros(len(s), 3, 128, 64), "source_kp": s, "target": torch.zeros(3, 128, 64),
              "target_kp": t, "names": []} for s, t in zip(sources, targets)]
    batch = with_pose_inputs(collate_tuples(items), (128, 64), check=False)
    _assert_same_pose(batch, legacy_batch_pose(sources, targets, (128, 64)))


def test_tuples_naming_dropped_or_unknown_images_are_rejected(synthetic_folder):
    name = synthetic_folder.names[0]
    with pytest.raises(ValueError, match="tuple 1 names images .*0099_front_000.png"):
        TupleDataset(synthetic_folder, [([name], synthetic_folder.names[1]), (["0099_front_000.png"], name)])


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
    assert set(batch) == ITEM_KEYS | {"valid"}  # images and keypoints only
    assert batch["sources"].shape == (B, m, 3, H, W) and batch["source_kp"].shape == (B, m, 18, 2)
    assert batch["valid"] is None and len(batch["names"]) == B
    assert all(len(set(names)) == m + 1 for names in batch["names"])
    assert batch["sources"].abs().max() <= 1
    pose = with_pose_inputs(batch, size)
    assert pose["theta"].shape == (B, m, 10, 2, 3) and pose["part_masks"].shape == (B, m, 10, H, W)
    assert torch.isfinite(pose["theta"]).all()


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


def test_pose_inputs_treat_sources_marked_invalid_as_padding():
    g = torch.Generator().manual_seed(3)
    source, target = _random_poses(g, 4, (64, 32)).view(2, 2, 18, 2), _random_poses(g, 2, (64, 32))
    valid = torch.tensor([[True, False], [True, True]])
    pose = pose_inputs(source, target, (64, 32), valid)
    assert (pose["source_heatmaps"][0, 1] == 0).all() and (pose["part_masks"][0, 1] == 0).all()
    assert (pose["theta"][0, 1] == torch.tensor(NULL_THETA)).all()
    torch.testing.assert_close(pose["theta"][1], pose_inputs(source, target, (64, 32))["theta"][1])
    with pytest.raises(ValueError, match="valid must be a bool tensor of shape"):
        pose_inputs(source, target, (64, 32), valid.float())
    with pytest.raises(ValueError, match="source_kp must be"):
        pose_inputs(source[0], target, (64, 32))
