"""Gaussian heatmaps and Ma et al.'s person mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msgen.pose import heatmaps, person_mask, read_annotations


def _poses(generator: torch.Generator, shape: tuple[int, ...], size: tuple[int, int]) -> torch.Tensor:
    kp = torch.rand(*shape, 18, 2, generator=generator, dtype=torch.float64)
    kp = (kp * torch.tensor([size[0] - 1, size[1] - 1], dtype=torch.float64)).round()
    missing = torch.rand(*shape, 18, generator=generator) < 0.25
    return torch.where(missing[..., None], torch.full_like(kp, -1.0), kp)


def test_heatmaps_match_float64_formula_and_peak_at_points():
    g = torch.Generator().manual_seed(0)
    size, sigma = (37, 23), 3.5
    kp = _poses(g, (2, 3), size)
    maps = heatmaps(kp, size, sigma)
    assert maps.shape == (2, 3, 18, 37, 23) and maps.dtype == torch.float32
    ys, xs = torch.meshgrid(torch.arange(37.0).double(), torch.arange(23.0).double(), indexing="ij")
    d2 = (ys - kp[..., 0, None, None]) ** 2 + (xs - kp[..., 1, None, None]) ** 2
    present = (kp >= 0).all(-1)
    expected = torch.exp(-d2 / (2 * sigma**2)) * present[..., None, None]
    torch.testing.assert_close(maps.double(), expected, atol=1e-6, rtol=1e-5)
    flat = maps.flatten(-2)
    peak = flat.argmax(-1)
    rows, cols = peak // 23, peak % 23
    assert torch.equal(rows[present], kp[..., 0][present].long())
    assert torch.equal(cols[present], kp[..., 1][present].long())
    assert torch.all(flat.amax(-1)[present] == 1)
    assert torch.all(flat[~present] == 0)


def test_heatmaps_subpixel_and_sigma():
    kp = torch.full((18, 2), -1.0)
    kp[4] = torch.tensor([10.5, 7.25])
    maps = heatmaps(kp, (21, 15), sigma=6.0)
    assert maps.shape == (18, 21, 15)
    assert maps[4, 10, 7] == pytest.approx(np.exp(-(0.5**2 + 0.25**2) / 72), rel=1e-6)
    assert maps[4, 10, 7] == maps[4, 11, 7]  # symmetric about y = 10.5
    assert torch.count_nonzero(maps[torch.arange(18) != 4]) == 0


@pytest.mark.parametrize("bad", [torch.zeros(3, 17, 2), torch.full((18, 2), float("nan")), torch.full((18, 2), -2.0)])
def test_heatmaps_reject_bad_keypoints(bad):
    with pytest.raises(ValueError, match="kp"):
        heatmaps(bad, (8, 8))


def test_heatmaps_reject_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        heatmaps(torch.zeros(18, 2), (0, 8))
    with pytest.raises(ValueError, match="sigma"):
        heatmaps(torch.zeros(18, 2), (8, 8), sigma=0)


def test_person_mask_covers_joints_and_limbs_only_near_skeleton():
    kp = np.full((18, 2), -1.0)
    kp[2], kp[3] = (20, 10), (60, 30)  # Rsho -> Relb, one limb
    mask = person_mask(kp, (80, 50))
    assert mask.dtype == bool and mask.shape == (80, 50)
    assert mask[20, 10] and mask[60, 30] and mask[40, 20]  # ends and middle of the limb
    ys, xs = np.nonzero(mask)
    # Distance of every masked pixel to the segment: at most the radius plus the closing's reach.
    a, b = kp[2], kp[3]
    p = np.stack([ys, xs], -1).astype(float)
    t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    distance = np.linalg.norm(p - (a + t[:, None] * (b - a)), axis=-1)
    assert distance.max() <= 4 + 2 * np.sqrt(2)
    # And every pixel within 3 px of the segment is in the mask.
    yy, xx = np.mgrid[:80, :50]
    q = np.stack([yy, xx], -1).reshape(-1, 2).astype(float)
    tq = np.clip(((q - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    near = np.linalg.norm(q - (a + tq[:, None] * (b - a)), axis=-1) <= 3
    assert mask.reshape(-1)[near].all()


def test_person_mask_empty_pose_and_missing_points():
    assert not person_mask(np.full((18, 2), -1.0), (16, 8)).any()
    kp = np.full((18, 2), -1.0)
    kp[0] = (5, 5)
    mask = person_mask(torch.as_tensor(kp), (16, 12))
    assert mask[5, 5] and mask.sum() <= np.pi * 5**2  # a lone joint gives a disk


@pytest.mark.data
def test_person_mask_of_real_poses_is_a_plausible_body(shared_data):
    annotations = read_annotations(shared_data / "market-real" / "annotation.csv")
    areas = []
    for kp in list(annotations.values())[:40]:
        mask = person_mask(kp, (128, 64))
        ok = (kp >= 0).all(-1)
        assert mask[kp[ok, 0].astype(int), kp[ok, 1].astype(int)].all()
        areas.append(mask.mean())
    assert 0.05 < np.median(areas) < 0.6


def test_heatmaps_without_the_value_check_are_the_same_and_still_check_the_shape():
    kp = torch.tensor([[10.0, 5.0]] * 17 + [[-1.0, -1.0]])
    torch.testing.assert_close(heatmaps(kp, (32, 16), check=False), heatmaps(kp, (32, 16)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 18, 2\)"):
        heatmaps(kp[:17], (32, 16), check=False)
