"""Body-part affines and masks (msgen.pose.parts) on synthetic poses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.measure import grid_points_in_poly
from skimage.transform import estimate_transform

from msgen.ops import part_warp_reference
from msgen.pose import NUM_PARTS, PART_NAMES, affines_at_stride, body_part_affines, one_part_per_pixel, part_masks_at, torso_area
from msgen.pose import read_annotations
from msgen.pose.parts import MIN_SINGULAR_RATIO, NULL_THETA, singular_value_ratio

SIZE = (128, 64)
# A frontal standing person in a 128x64 crop, (y, x); index order of KEYPOINT_NAMES.
BASE = np.array(
    [(15, 32), (28, 32), (28, 22), (45, 18), (60, 16), (28, 42), (45, 46), (60, 48), (62, 26),
     (88, 25), (112, 24), (62, 38), (88, 39), (112, 40), (12, 35), (12, 29), (14, 38), (14, 26)],
    dtype=np.float64,
)  # fmt: skip
IDENTITY = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64)


def _jittered(generator: torch.Generator, n: int) -> torch.Tensor:
    base = torch.from_numpy(BASE).expand(n, 18, 2)
    return base + 3 * torch.randn(n, 18, 2, generator=generator, dtype=torch.float64)


def _apply(theta: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """theta (..., 2, 3) applied to points (..., K, 2) as (x, y)."""
    return xy @ theta[..., :2].transpose(-1, -2) + theta[..., None, :, 2]


def _null(theta: torch.Tensor) -> torch.Tensor:
    return (theta == torch.tensor(NULL_THETA, dtype=theta.dtype)).flatten(-2).all(-1)


def _check_invariants(theta: torch.Tensor, masks: torch.Tensor) -> None:
    assert torch.isfinite(theta).all() and torch.isfinite(masks).all()
    assert masks.min() >= 0 and masks.max() <= 1
    empty = masks.flatten(2).amax(-1) == 0
    assert torch.equal(empty, _null(theta)), "a part is empty exactly when its transform is the null one"
    estimable_torso = ~empty[:, 0]
    assert (masks[:, 0][estimable_torso] == 1).all()


def test_names():
    assert NUM_PARTS == len(PART_NAMES) == 10 and PART_NAMES[0] == "torso" and PART_NAMES[1] == "head"


def test_identical_poses_give_identity_affines():
    g = torch.Generator().manual_seed(1)
    kp = _jittered(g, 5)
    theta, masks = body_part_affines(kp, kp, SIZE)
    assert theta.shape == (5, 10, 2, 3) and masks.shape == (5, 10, 128, 64) and theta.dtype == torch.float64
    _check_invariants(theta, masks)
    assert not _null(theta).any()
    torch.testing.assert_close(theta, IDENTITY.expand_as(theta), atol=1e-9, rtol=0)


def _similarity(angle: float, scale: float, shift: tuple[float, float]) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[scale * c, -scale * s, shift[0]], [scale * s, scale * c, shift[1]]], dtype=torch.float64)


@pytest.mark.parametrize(
    "angle, scale, shift", [(0.0, 1.0, (7.0, -3.0)), (0.3, 0.8, (20.0, 5.0)), (-0.5, 1.3, (30.0, 10.0))]
)
def test_similarity_of_the_pose_is_recovered_by_every_part(angle, scale, shift):
    g = torch.Generator().manual_seed(2)
    target = _jittered(g, 4)
    T = _similarity(angle, scale, shift)
    source = _apply(T, target.flip(-1)).flip(-1)  # source = T(target): theta must be T
    lift = (1 - source.amin((0, 1))).clamp(min=0)  # keep the source's coordinates >= 0
    source, T[:, 2] = source + lift, T[:, 2] + lift.flip(0)
    theta, masks = body_part_affines(source, target, SIZE)
    _check_invariants(theta, masks)
    assert not _null(theta).any()
    torch.testing.assert_close(theta, T.expand_as(theta), atol=1e-8, rtol=0)


def test_general_affine_is_recovered_by_torso_and_head():
    g = torch.Generator().manual_seed(3)
    target = _jittered(g, 3)
    T = torch.tensor([[1.2, 0.3, 4.0], [-0.1, 0.9, 9.0]], dtype=torch.float64)
    source = _apply(T, target.flip(-1)).flip(-1)
    theta, _ = body_part_affines(source, target, SIZE)
    torch.testing.assert_close(theta[:, :2], T.expand(3, 2, 2, 3), atol=1e-8, rtol=0)


def _rectangle(p: np.ndarray, q: np.ndarray, s: float, distal: float) -> np.ndarray:
    """Corners (x, y) of a limb rectangle, written independently of the library (float64)."""
    p, q = p[::-1], q[::-1]
    bone = q - p
    start, stop = p - 0.1 * bone, q + distal * bone
    n = np.array([-bone[1], bone[0]]) / np.linalg.norm(bone) * 0.2 * s
    return np.stack([start + n, start - n, stop - n, stop + n])


def _torso_size(kp: np.ndarray) -> float:
    return math.sqrt((np.sum((kp[8] - kp[2]) ** 2) + np.sum((kp[11] - kp[5]) ** 2)) / 2)


LIMBS = [(8, 9, 0.1), (11, 12, 0.1), (9, 10, 0.3), (12, 13, 0.3), (2, 3, 0.1), (5, 6, 0.1), (3, 4, 0.3), (6, 7, 0.3)]


def test_limbs_match_a_skimage_fit_of_the_rectangles():
    g = torch.Generator().manual_seed(4)
    source, target = _jittered(g, 6), _jittered(g, 6)
    theta, masks = body_part_affines(source, target, SIZE)
    for n in range(6):
        s_kp, t_kp = source[n].numpy(), target[n].numpy()
        for k, (a, b, distal) in enumerate(LIMBS):
            src = _rectangle(s_kp[a], s_kp[b], _torso_size(s_kp), distal)
            tgt = _rectangle(t_kp[a], t_kp[b], _torso_size(t_kp), distal)
            expected = estimate_transform("affine", tgt, src).params[:2]
            np.testing.assert_allclose(theta[n, 2 + k].numpy(), expected, atol=1e-8)
            # The mask is the target rectangle, rasterised here by scikit-image (pixel centres inside
            # the polygon); a centre lying exactly on an edge may go either way.
            expected_mask = grid_points_in_poly(SIZE, tgt[:, ::-1])
            assert (masks[n, 2 + k].numpy().astype(bool) != expected_mask).sum() <= 2
            assert expected_mask.sum() > 50
        # The torso: ordinary least squares (scikit-image's estimator minimises another error).
        t_xy1 = np.c_[t_kp[[8, 11, 5, 2], ::-1], np.ones(4)]
        torso = np.linalg.lstsq(t_xy1, s_kp[[8, 11, 5, 2], ::-1], rcond=None)[0].T
        np.testing.assert_allclose(theta[n, 0].numpy(), torso, atol=1e-8)


def test_head_mask_is_the_square_around_the_head_points():
    g = torch.Generator().manual_seed(5)
    kp = _jittered(g, 1)
    _, masks = body_part_affines(kp, kp, SIZE)
    head = kp[0, [0, 14, 15, 16, 17]].mean(0).numpy()
    half = 0.4 * _torso_size(kp[0].numpy())
    yy, xx = np.mgrid[:128, :64]
    expected = (np.abs(yy - head[0]) <= half) & (np.abs(xx - head[1]) <= half)
    np.testing.assert_array_equal(masks[0, 1].numpy(), expected)


def test_mirrored_limb_is_used_when_the_source_lacks_it():
    g = torch.Generator().manual_seed(6)
    target = _jittered(g, 2)
    source = target.clone()
    source[0, 9] = -1  # no right knee: both right leg segments borrow the left ones
    source[1, [9, 12]] = -1  # no knees at all: no leg segment can be estimated
    theta, masks = body_part_affines(source, target, SIZE)
    _check_invariants(theta, masks)
    t_kp, s_kp = target[0].numpy(), source[0].numpy()
    for part, (a, b, distal), (ma, mb, _) in [(2, LIMBS[0], LIMBS[1]), (4, LIMBS[2], LIMBS[3])]:
        tgt = _rectangle(t_kp[a], t_kp[b], _torso_size(t_kp), distal)
        src = _rectangle(s_kp[ma], s_kp[mb], _torso_size(s_kp), distal)
        np.testing.assert_allclose(_apply(theta[0, part], torch.from_numpy(tgt)).numpy(), src, atol=1e-8)
        assert masks[0, part].sum() > 0
    torch.testing.assert_close(theta[0, [3, 5]], IDENTITY.expand(2, 2, 3), atol=1e-9, rtol=0)
    assert _null(theta[1, 2:6]).all() and not _null(theta[1, 6:]).any()


def test_missing_target_part_samples_nothing():
    g = torch.Generator().manual_seed(7)
    source, target = _jittered(g, 3), _jittered(g, 3)
    target[0, 4] = -1  # no right wrist: no right forearm
    target[1, [0, 14, 15, 16, 17]] = -1  # no head point
    target[2, 8] = -1  # no right hip: no torso, no right upper leg
    theta, masks = body_part_affines(source, target, SIZE)
    _check_invariants(theta, masks)
    gone = [(0, 8), (1, 1), (2, 0), (2, 2)]
    for n, k in gone:
        assert masks[n, k].sum() == 0 and _null(theta[n, k])
    # The null transform sends any pixel of any image, at any stride, outside every image.
    corners = torch.tensor([[0.0, 0.0], [4095.0, 0.0], [0.0, 4095.0], [4095.0, 4095.0]], dtype=torch.float64)
    for stride in (1, 2, 8):
        moved = _apply(affines_at_stride(theta[0, 8], stride), corners)
        assert (moved < -1).all()
    feat = torch.rand(3, 2, 128, 64, dtype=torch.float64, generator=g) + 1
    only = torch.zeros_like(masks)
    for n, k in gone:
        only[n, k] = 1  # a mask of ones on the unestimable part: its warp is still zero
    assert part_warp_reference(feat, theta, only).abs().max() == 0


def test_degenerate_poses_never_give_nan_or_inf():
    g = torch.Generator().manual_seed(8)
    n = 48
    random = torch.rand(n, 18, 2, generator=g, dtype=torch.float64) * torch.tensor([127.0, 63.0], dtype=torch.float64)
    random = torch.where(torch.rand(n, 18, 1, generator=g) < 0.3, -1.0, random)
    coincident = torch.full((4, 18, 2), 20.0, dtype=torch.float64)
    coincident[1, :9] = 21.0
    zero_bones = torch.from_numpy(BASE).repeat(4, 1, 1)
    zero_bones[:, 9] = zero_bones[:, 8]  # knee on the hip
    zero_bones[:, 3] = zero_bones[:, 2]
    side = torch.from_numpy(BASE).repeat(4, 1, 1)
    side[:, 5], side[:, 11] = side[:, 2], side[:, 8]  # a side view: torso points on a line
    tiny = torch.from_numpy(BASE).repeat(2, 1, 1) * 0.01 + 30
    poses = torch.cat([random, coincident, zero_bones, side, tiny])
    m = len(poses)
    perm = torch.randperm(m, generator=g)
    for source, target in [(poses, poses), (poses[perm], poses), (poses, poses[perm]), (poses, poses.flip(0))]:
        theta, masks = body_part_affines(source, target, (31, 17))
        _check_invariants(theta, masks)
    theta, masks = body_part_affines(side, torch.from_numpy(BASE).repeat(4, 1, 1), SIZE)
    assert not _null(theta[:, 0]).any() and (masks[:, 0] == 1).all()  # a side view still has a torso
    theta, _ = body_part_affines(torch.from_numpy(BASE).repeat(4, 1, 1), zero_bones, SIZE)
    assert _null(theta[:, [2, 6]]).all()


def _lstsq_affine(target_xy: np.ndarray, source_xy: np.ndarray) -> np.ndarray:
    """The unconditioned least-squares backward affine (what the fit gave before the check on both poses)."""
    design = np.hstack([target_xy, np.ones((len(target_xy), 1))])
    return np.linalg.lstsq(design, source_xy, rcond=None)[0].T


def test_conditioning_checks_both_poses_of_a_part():
    # A side-view SOURCE torso: its four points nearly on a line, the target frontal. The target's
    # points spread, so a check on the target alone took the least-squares affine, which is nearly
    # singular and would smear the source's sliver over the whole image (the torso mask).
    target = torch.from_numpy(BASE)[None].clone()
    source = target.clone()
    torso = [8, 11, 5, 2]
    source[0, torso, 1] = torch.tensor([31.0, 32.0, 32.5, 31.5], dtype=torch.float64)  # x within 1.5 px
    old = _lstsq_affine(target[0, torso].flip(-1).numpy(), source[0, torso].flip(-1).numpy())
    singular = np.linalg.svd(old[:, :2], compute_uv=False)
    assert singular[1] / singular[0] < 0.1
    theta, masks = body_part_affines(source, target, SIZE)
    _check_invariants(theta, masks)
    assert not _null(theta[0, 0]) and (masks[0, 0] == 1).all()
    assert singular_value_ratio(theta[0, 0]) > 0.99  # the similarity instead: no squashing
    assert (singular_value_ratio(theta[~_null(theta)]) >= MIN_SINGULAR_RATIO).all()


def test_an_ill_conditioned_part_is_masked_out_not_smeared():
    # A foreshortened source forearm (a 1.5 px bone) for a 15 px target forearm: its rectangle affine
    # stretches 1.5 px over the whole limb. It is unusable: empty mask, null transform, no NaN.
    target = torch.from_numpy(BASE)[None].repeat(2, 1, 1)
    source = target.clone()
    source[0, 4] = source[0, 3] + torch.tensor([1.5, 0.0], dtype=torch.float64)  # right wrist next to the elbow
    theta, masks = body_part_affines(source, target, SIZE)
    _check_invariants(theta, masks)
    assert _null(theta[0, 8]) and masks[0, 8].sum() == 0
    assert not _null(theta[1, 8]) and masks[1, 8].sum() > 0  # the same limb, well conditioned
    keep = [k for k in range(NUM_PARTS) if k != 8]
    assert not _null(theta[0, keep]).any()
    feat = torch.rand(2, 2, 128, 64, dtype=torch.float64) + 1
    only = torch.zeros_like(masks)
    only[0, 8] = 1
    assert part_warp_reference(feat, theta, only)[0].abs().max() == 0
    ratio = singular_value_ratio(theta)
    assert torch.isfinite(ratio).all() and ratio[0, 8] == 0


@pytest.mark.data
def test_unusable_parts_are_rare_on_real_market_pairs(shared_data):
    import csv

    root = shared_data / "market-keypoints"
    annotations = read_annotations(root / "market-annotation-test.csv")
    with open(root / "market-pairs-test.csv") as f:
        pairs = [row for row in csv.reader(f)][1:]
    pairs = [(a, b) for a, b in pairs if a in annotations and b in annotations][:600]
    source = torch.from_numpy(np.stack([annotations[a] for a, _ in pairs])).double()
    target = torch.from_numpy(np.stack([annotations[b] for _, b in pairs])).double()
    theta, masks = body_part_affines(source, target, SIZE)
    _check_invariants(theta, masks)
    usable = ~_null(theta)
    assert (singular_value_ratio(theta[usable]) >= MIN_SINGULAR_RATIO).all()
    # Measured on these 600 pairs: 0.5% of torsos and 2% of heads fail the check (a mismatched or
    # misdetected point); most limbs none.
    assert usable[:, 0].float().mean() > 0.98 and usable[:, 1].sum() > 0.9 * (masks[:, 1].sum((1, 2)) > 0).sum()


def test_float32_cpu_is_fast_and_matches_float64():
    g = torch.Generator().manual_seed(9)
    source, target = _jittered(g, 64), _jittered(g, 64)
    theta64, masks64 = body_part_affines(source, target, SIZE)
    theta32, masks32 = body_part_affines(source.float(), target.float(), SIZE)
    assert theta32.dtype == masks32.dtype == torch.float32
    torch.testing.assert_close(theta32.double(), theta64, atol=1e-4, rtol=1e-5)
    # Keypoints rounded to float32 may move a boundary pixel centre in or out of a rectangle.
    assert (masks32.double() != masks64).float().mean() < 1e-3


def test_part_masks_at_pools_and_interpolates():
    g = torch.Generator().manual_seed(10)
    masks = (torch.rand(2, 10, 16, 12, generator=g) > 0.5).float()
    pooled = part_masks_at(masks, (4, 3))
    torch.testing.assert_close(pooled, masks.view(2, 10, 4, 4, 3, 4).mean((3, 5)))
    assert part_masks_at(masks, (16, 12)) is masks
    odd = part_masks_at(masks, (5, 7))
    assert odd.shape == (2, 10, 5, 7) and odd.min() >= 0 and odd.max() <= 1
    with pytest.raises(ValueError, match="masks"):
        part_masks_at(masks[0], (4, 3))


def test_affines_at_stride_agree_with_downsampled_masks_and_features():
    """Warping a 2x-pooled smooth image with affines_at_stride and part_masks_at gives the pooled
    full-resolution warp, up to the blur the resampling adds."""
    g = torch.Generator().manual_seed(11)
    source, target = _jittered(g, 4), _jittered(g, 4)
    theta, masks = body_part_affines(source, target, SIZE)
    coarse = torch.rand(4, 3, 8, 4, generator=g, dtype=torch.float64)
    image = torch.nn.functional.interpolate(coarse, size=SIZE, mode="bicubic", align_corners=False)
    full = part_warp_reference(image, theta, masks)
    for stride in (2, 4):
        small = torch.nn.functional.avg_pool2d(image, stride)
        size = (SIZE[0] // stride, SIZE[1] // stride)
        warped = part_warp_reference(small, affines_at_stride(theta, stride), part_masks_at(masks, size))
        expected = torch.nn.functional.avg_pool2d(full, stride)
        error = (warped - expected).abs().mean()
        wrong = part_warp_reference(small, theta, part_masks_at(masks, size))  # not re-expressed
        assert error < 0.02 and error < 0.25 * (wrong - expected).abs().mean()


def test_bad_arguments():
    kp = torch.from_numpy(BASE)[None]
    with pytest.raises(ValueError, match="source_kp"):
        body_part_affines(kp[:, :17], kp, SIZE)
    with pytest.raises(ValueError, match="differ in shape"):
        body_part_affines(kp.repeat(2, 1, 1), kp, SIZE)
    with pytest.raises(ValueError, match="target_kp contains NaN"):
        body_part_affines(kp, kp * float("nan"), SIZE)
    with pytest.raises(ValueError, match="size"):
        body_part_affines(kp, kp, (0, 4))


@pytest.mark.cuda
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(12)
    source, target = _jittered(g, 16).float(), _jittered(g, 16).float()
    theta, masks = body_part_affines(source, target, SIZE)
    theta_gpu, masks_gpu = body_part_affines(source.cuda(), target.cuda(), SIZE)
    assert theta_gpu.is_cuda and masks_gpu.is_cuda
    torch.testing.assert_close(theta_gpu.cpu(), theta, atol=1e-5, rtol=1e-6)
    assert (masks_gpu.cpu() != masks).float().mean() < 1e-3


def test_one_part_per_pixel_keeps_the_most_specific_covering_part() -> None:
    g = torch.Generator().manual_seed(11)
    masks = (torch.rand(3, NUM_PARTS, 9, 7, generator=g) > 0.7).double() * torch.rand(3, NUM_PARTS, 9, 7, generator=g)
    masks[:, 0] = 1.0  # the torso covers the whole image
    kept = one_part_per_pixel(masks)
    assert ((kept > 0).sum(dim=1) == 1).all(), "exactly one part per pixel (the torso covers every pixel)"
    specific = masks[:, 1:].amax(dim=1)
    chosen = kept.argmax(dim=1)
    # A head or limb part wins over the torso wherever one covers the pixel, the largest mask first.
    assert ((chosen > 0) == (specific > 0)).all()
    torch.testing.assert_close(kept.amax(dim=1), torch.where(specific > 0, specific, masks[:, 0]))
    # The kept values are the masks' own, and an uncovered pixel keeps nothing.
    torch.testing.assert_close(kept, torch.where(kept > 0, masks, torch.zeros_like(masks)))
    assert one_part_per_pixel(torch.zeros(1, NUM_PARTS, 2, 2)).eq(0).all()


def test_torso_area_is_inside_the_four_torso_points_and_empty_without_them() -> None:
    kp = torch.full((2, 18, 2), -1.0)
    # (y, x) of Rsho, Lsho, Lhip, Rhip: a trapezoid, shoulders wider than hips.
    kp[0, [2, 5, 11, 8]] = torch.tensor([[2.0, 1.0], [2.0, 9.0], [8.0, 7.0], [8.0, 3.0]])
    area = torso_area(kp, (12, 11))
    rows = area[0].nonzero()
    assert rows[:, 0].min() == 2 and rows[:, 0].max() == 8
    assert area[0, 2, 1:10].all() and not area[0, 2, 0] and not area[0, 2, 10]
    assert area[0, 8, 3:8].all() and not area[0, 8, 2] and not area[0, 8, 8]
    assert not area[1].any(), "no torso points, no torso area"
