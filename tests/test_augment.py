"""Training-time augmentation (msgen.training.augment) and the keypoint mirror it uses: a mirrored
tuple is the mirror image of the same person, with right and left swapped; jitter keeps a sample's
images alike; the options reach the training step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msgen.data import collate_tuples
from msgen.pose import KEYPOINT_NAMES, MIRRORED, heatmaps, mirror_keypoints, person_mask
from msgen.training.augment import augment_batch, jitter_colours
from msgen.training.config import DataConfig
from msgen.errors import UsageError

SIZE = (32, 16)
# A person facing the camera: their right side (R*) on the image's left (small x).
POSE = torch.tensor([[4, 8], [7, 8], [7, 5], [11, 4], [15, 4], [7, 11], [11, 12], [15, 12], [16, 6],
                     [22, 6], [28, 6], [16, 10], [22, 10], [28, 10], [3, 9], [3, 7], [4, 10], [4, 6]],
                    dtype=torch.float32)


def _pose(generator: torch.Generator) -> torch.Tensor:
    kp = (POSE + torch.rand(18, 2, generator=generator) * 2 - 1).clamp(0, SIZE[1] - 1)
    kp[16] = -1  # a missing point
    return kp


def test_mirrored_points_swap_sides_and_move_across() -> None:
    assert {KEYPOINT_NAMES[i]: KEYPOINT_NAMES[j] for i, j in enumerate(MIRRORED)}["Rsho"] == "Lsho"
    assert all(MIRRORED[j] == i for i, j in enumerate(MIRRORED))
    kp = POSE.clone()
    kp[16] = -1
    mirrored = mirror_keypoints(kp, SIZE[1])
    rsho, lsho = KEYPOINT_NAMES.index("Rsho"), KEYPOINT_NAMES.index("Lsho")
    # The right shoulder was at x = 5; in the mirror the left one is drawn there, at 15 - 5 = 10.
    assert mirrored[lsho].tolist() == [7.0, 10.0] and mirrored[rsho].tolist() == [7.0, 4.0]
    assert mirrored[KEYPOINT_NAMES.index("Rear")].tolist() == [-1.0, -1.0]  # Lear was missing
    torch.testing.assert_close(mirror_keypoints(mirrored, SIZE[1]), kp, rtol=0, atol=0)
    past = POSE.clone()
    past[0, 1] = SIZE[1] - 0.5  # half a pixel past the last column: lands on column 0
    assert mirror_keypoints(past, SIZE[1])[0, 1] == 0


def test_the_pose_drawn_from_mirrored_points_is_the_mirror_of_the_pose() -> None:
    g = torch.Generator().manual_seed(0)
    kp = _pose(g)
    mirrored = mirror_keypoints(kp, SIZE[1])
    # Channel i of the mirrored pose is the mirror image of channel MIRRORED[i] of the pose.
    torch.testing.assert_close(heatmaps(mirrored, SIZE), heatmaps(kp, SIZE)[list(MIRRORED)].flip(-1))
    np.testing.assert_array_equal(person_mask(mirrored, SIZE), person_mask(kp, SIZE)[:, ::-1])


def _batch(ms: tuple[int, ...], seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    items = []
    for m in ms:
        kp = torch.stack([_pose(g) for _ in range(m + 1)])
        items.append({"sources": torch.rand(m, 3, *SIZE, generator=g) * 2 - 1, "source_kp": kp[:m],
                      "target": torch.rand(3, *SIZE, generator=g) * 2 - 1, "target_kp": kp[m], "names": []})
    return collate_tuples(items)


def test_a_sample_is_mirrored_whole_or_not_at_all() -> None:
    batch = _batch((2,) * 16)
    out = augment_batch(batch, flip=0.5, generator=torch.Generator().manual_seed(3))
    flipped = []
    for b in range(16):
        as_is = torch.equal(out["target"][b], batch["target"][b])
        mirror = torch.equal(out["target"][b], batch["target"][b].flip(-1))
        assert as_is != mirror
        expected_images = batch["sources"][b].flip(-1) if mirror else batch["sources"][b]
        assert torch.equal(out["sources"][b], expected_images)
        for key in ("source_kp", "target_kp"):
            expected = mirror_keypoints(batch[key][b], SIZE[1]) if mirror else batch[key][b]
            assert torch.equal(out[key][b], expected)
        flipped.append(mirror)
    assert 0 < sum(flipped) < 16  # both happen at p = 0.5 (seeded)
    assert torch.equal(augment_batch(batch, flip=1.0)["target"], batch["target"].flip(-1))


def test_nothing_asked_nothing_changed_and_the_input_is_left_alone() -> None:
    batch = _batch((2, 2))
    assert augment_batch(batch) is batch
    copy = {k: v.clone() for k, v in batch.items() if isinstance(v, torch.Tensor)}
    augment_batch(batch, flip=1.0, color_jitter=0.5)
    assert all(torch.equal(batch[k], v) for k, v in copy.items())


def test_jitter_keeps_a_samples_images_alike_and_in_range() -> None:
    batch = _batch((3,) * 8)
    batch["sources"][:, 1] = batch["target"]  # one source is the target's image
    out = augment_batch(batch, color_jitter=0.4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out["sources"][:, 1], out["target"])  # same image, same factors
    assert out["target"].min() >= -1 and out["target"].max() <= 1
    assert not torch.allclose(out["target"], batch["target"])
    assert torch.equal(out["target_kp"], batch["target_kp"])  # colour only


def test_jitter_factors_do_what_they_say() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 1, 3, *SIZE, generator=g) * 1.0 - 0.5  # in [-0.5, 0.5]: no clamping below
    ones = torch.ones(2)
    torch.testing.assert_close(jitter_colours(images, ones, ones, ones), images)
    half = torch.full((2,), 0.5)
    torch.testing.assert_close(jitter_colours(images, half, ones, ones), ((images + 1) / 2 * 0.5) * 2 - 1)
    grey = jitter_colours(images, ones, ones, torch.zeros(2))  # saturation 0: every channel the luma
    assert torch.allclose(grey[:, :, 0], grey[:, :, 1]) and torch.allclose(grey[:, :, 1], grey[:, :, 2])
    flat = jitter_colours(images, ones, torch.zeros(2), ones)  # contrast 0: the image's mean grey
    assert torch.allclose(flat, flat[..., :1, :1].expand_as(flat))


def test_padded_sources_stay_padding() -> None:
    batch = _batch((1, 3))
    out = augment_batch(batch, flip=1.0, color_jitter=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out["sources"][0, 1:], batch["sources"][0, 1:])  # zeros
    assert (out["source_kp"][0, 1:] == -1).all()
    assert not torch.allclose(out["sources"][0, 0], batch["sources"][0, 0])  # the real one was changed


@pytest.mark.parametrize("flip, jitter, name", [(1.5, 0.0, "flip"), (-0.1, 0.0, "flip"), (0.0, 1.0, "color_jitter")])
def test_bad_strengths_are_refused_by_name(flip: float, jitter: float, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        augment_batch(_batch((1,)), flip=flip, color_jitter=jitter)
    with pytest.raises(UsageError, match="--data." + name.replace("_", "-")):
        DataConfig(flip=flip, color_jitter=jitter)


def test_the_run_options_reach_the_training_step_and_its_banner(monkeypatch, tmp_path, capsys) -> None:
    import msgen.training.step as step_module
    from msgen.training.cli import main
    from tiny_runs import tiny_args  # tests/tiny_runs.py
    from msgen.data.synthetic import generate_synthetic

    data = generate_synthetic(tmp_path / "data", identities=6, images_per_identity=4, size=(64, 32), seed=1)
    seen = []

    def spy(batch, flip, color_jitter):
        seen.append((flip, color_jitter))
        return augment_batch(batch, flip, color_jitter)

    monkeypatch.setattr(step_module, "augment_batch", spy)
    args = tiny_args(data, tmp_path / "run", "--steps", "1", "--eval-every", "1", "--sample-every", "1",
                     "--data.flip", "0.5", "--data.color-jitter", "0.2")
    assert main(args) == 0
    assert seen == [(0.5, 0.2)]
    assert "augmentation: tuples mirrored with probability 0.5, colour jitter 0.2" in capsys.readouterr().out
