"""msgen.pose on the real Market-1501 material in ../shared/data (skipped without it)."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest
import torch
from PIL import Image

from msgen.ops import part_warp_reference
from msgen.pose import body_part_affines, is_usable, person_mask, read_annotations
from msgen.pose.parts import HEAD_POINTS, LIMB_JOINTS, LIMB_MIRROR, NULL_THETA

pytestmark = pytest.mark.data
SIZE = (128, 64)


def _expected_estimable(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Which parts the keypoints alone allow, (N, 10) bool, written from METHOD.md's rules."""
    ok_s, ok_t = (source >= 0).all(-1), (target >= 0).all(-1)
    torso = [8, 11, 5, 2]
    expected = np.zeros((len(source), 10), dtype=bool)
    expected[:, 0] = ok_s[:, torso].all(-1) & ok_t[:, torso].all(-1)
    shoulders = ok_s[:, [2, 5]].all(-1) & ok_t[:, [2, 5]].all(-1)
    expected[:, 1] = (ok_s[:, HEAD_POINTS] & ok_t[:, HEAD_POINTS]).any(-1) & shoulders
    for k, (a, b) in enumerate(LIMB_JOINTS):
        ma, mb = LIMB_JOINTS[LIMB_MIRROR[k]]
        expected[:, 2 + k] = ok_t[:, a] & ok_t[:, b] & ((ok_s[:, a] & ok_s[:, b]) | (ok_s[:, ma] & ok_s[:, mb]))
    return expected


@pytest.mark.slow
def test_geometry_of_every_real_pose_and_test_pair(shared_data):
    start = time.perf_counter()
    folder = shared_data / "market-keypoints"
    train = read_annotations(folder / "market-annotation-train.csv")
    test = read_annotations(folder / "market-annotation-test.csv")
    assert (len(train), len(test)) == (12936, 19732) and not set(train) & set(test)
    poses = {**train, **test}
    with open(folder / "market-pairs-test.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["from", "to"] and len(rows) == 12001
    pairs = rows[1:]
    names = list(poses)
    kp = np.stack([poses[n] for n in names])
    assert kp.shape == (32668, 18, 2) and (kp[..., 0] < SIZE[0]).all() and (kp[..., 1] < SIZE[1]).all()
    # Every pose once as a target (against a random other pose), then the 12,000 standard pairs.
    perm = np.random.default_rng(0).permutation(len(kp))
    sources = np.concatenate([kp[perm], np.stack([poses[a] for a, _ in pairs])])
    targets = np.concatenate([kp, np.stack([poses[b] for _, b in pairs])])
    assert is_usable(sources[-12000:]).all() and is_usable(targets[-12000:]).all()

    null = torch.tensor(NULL_THETA)
    joints = torch.tensor(LIMB_JOINTS)
    mirror_joints = joints[list(LIMB_MIRROR)]
    counts, short = np.zeros(10, dtype=np.int64), 0
    for i in range(0, len(targets), 1024):
        s, t = sources[i : i + 1024], targets[i : i + 1024]
        theta, masks = body_part_affines(torch.from_numpy(s), torch.from_numpy(t), SIZE)
        low, high = torch.aminmax(masks)  # NaN would fail these comparisons
        assert torch.isfinite(theta).all() and low >= 0 and high <= 1
        estimable = masks.flatten(2).amax(-1) > 0
        assert torch.equal(estimable, ~(theta == null).flatten(2).all(-1))
        expected = _expected_estimable(s, t)
        assert not (estimable.numpy() & ~expected).any(), "a part was estimated without its keypoints"
        short += int((expected & ~estimable.numpy()).sum())  # degenerate geometry, counted below
        usable = torch.from_numpy(is_usable(s) & is_usable(t))
        # A usable pose pair has a torso unless its transform is ill-conditioned (msgen.pose.parts:
        # masked out rather than smeared); that is rare on real pairs (0.5-1% measured).
        assert not (estimable[:, 0] & ~usable).any() and (masks[estimable[:, 0], 0] == 1).all()
        assert (usable & ~estimable[:, 0]).double().mean() < 0.02
        counts += estimable.sum(0).numpy()
        # A limb's affine takes the target's joints onto the source's (or its mirror limb's) exactly.
        s_xy, t_xy = torch.from_numpy(s).double().flip(-1), torch.from_numpy(t).double().flip(-1)
        limb = theta[:, 2:].double()
        mapped = (limb[:, :, None, :, :2] @ t_xy[:, joints][..., None])[..., 0] + limb[:, :, None, :, 2]
        error = torch.minimum(
            (mapped - s_xy[:, joints]).norm(dim=-1).amax(-1), (mapped - s_xy[:, mirror_joints]).norm(dim=-1).amax(-1)
        )
        assert (error[estimable[:, 2:]] < 1e-3).all()
        # Torso and head, least-squares fits, take the target's points into the source's surroundings.
        for k, points in ((0, [8, 11, 5, 2]), (1, [2, 5])):
            fit = theta[estimable[:, k], k].double()
            moved = (fit[:, None, :, :2] @ t_xy[estimable[:, k]][:, points, :, None])[..., 0] + fit[:, None, :, 2]
            assert ((moved > -64) & (moved < 192)).all()
    total = len(targets)
    # Keypoints allow a part yet its geometry is degenerate (zero-length bone, tiny torso) or its
    # transform ill-conditioned (masked out: 1.2% measured, random pairs included): rare.
    assert short <= 0.02 * counts.sum()
    assert counts[2:].min() >= 0.3 * total  # forearms are the least often annotated
    elapsed = time.perf_counter() - start
    print(f"\n{total} pairs, parts estimated {counts.tolist()}, {short} degenerate, {elapsed:.1f} s")


def _image(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))


def test_warping_real_sources_approaches_their_targets(shared_data):
    """Inside the target's person mask, the source warped by the part affines is closer to the
    target than the source itself, and much closer than a warp towards another pair's pose."""
    folder = shared_data / "market-real"
    poses = read_annotations(folder / "annotation.csv")
    with open(folder / "pairs.csv", newline="") as handle:
        pairs = [row for row in list(csv.reader(handle))[1:] if is_usable(poses[row[0]]) and is_usable(poses[row[1]])]
    assert len(pairs) >= 100

    def load(names):
        return torch.from_numpy(np.stack([_image(folder / "images" / n) for n in names])).permute(0, 3, 1, 2).double()

    source, target = load([a for a, _ in pairs]), load([b for _, b in pairs])
    s_kp = torch.from_numpy(np.stack([poses[a] for a, _ in pairs]))
    t_kp = torch.from_numpy(np.stack([poses[b] for _, b in pairs]))
    inside = torch.from_numpy(np.stack([person_mask(k, SIZE) for k in t_kp.numpy()]))[:, None]

    def error(image):
        return ((image - target).abs() * inside).sum() / (3 * inside.sum())

    warped = part_warp_reference(source, *body_part_affines(s_kp, t_kp, SIZE))
    other = part_warp_reference(source, *body_part_affines(s_kp, t_kp.roll(1, 0), SIZE))
    assert error(warped) < error(source) and error(warped) < 0.9 * error(other)
