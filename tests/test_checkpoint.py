"""Checkpoints: atomic writes, retention, weights_only loading, format versions, RNG round trips."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

import msgen.checkpoint as ckpt
from msgen.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointManager,
    atomic_save,
    capture_rng,
    load_checkpoint,
    load_module_state,
    restore_rng,
    step_checkpoints,
)
from msgen.export import load_generator
from msgen.models import Generator, GeneratorConfig
from msgen.training.config import config_to_dict, train_preset, with_overrides


def _state(value: float) -> dict:
    return {"format_version": FORMAT_VERSION, "step": 1, "weights": torch.full((7, 3), value)}


def test_atomic_save_keeps_the_previous_file_when_the_write_crashes(tmp_path, monkeypatch):
    path = tmp_path / "step.pt"
    atomic_save(_state(1.0), path)
    real_save = torch.save

    def crash_half_way(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip archive")  # some bytes reach the disk, then the crash
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", crash_half_way)
    with pytest.raises(OSError, match="disk full"):
        atomic_save(_state(2.0), path)
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    assert torch.equal(load_checkpoint(path)["weights"], torch.full((7, 3), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step.pt"], "the temporary file must go"


def test_atomic_save_replaces_the_file(tmp_path):
    path = tmp_path / "sub" / "x.pt"
    atomic_save(_state(1.0), path)
    atomic_save(_state(3.0), path)
    assert torch.equal(load_checkpoint(path)["weights"], torch.full((7, 3), 3.0))


def test_manager_keeps_the_last_k_and_the_best(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    metrics = [0.1, 0.7, None, 0.3, 0.5]
    for step, metric in enumerate(metrics, start=1):
        manager.save(step, {"weights": torch.tensor([float(step)])}, metric)
    assert [s for s, _ in step_checkpoints(tmp_path)] == [4, 5]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["step"] == 2 and best["weights"].item() == 2.0 and best["best_metric"] == 0.7
    # Every checkpoint records the best so far, so a resumed run keeps the same "best".
    assert load_checkpoint(tmp_path / "step-00000005.pt")["best_metric"] == 0.7
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_manager_rejects_keep_last_zero(tmp_path):
    with pytest.raises(ValueError, match="keep_last"):
        CheckpointManager(tmp_path, keep_last=0)


class _Pickled:
    """Not a tensor or plain container: weights_only loading must refuse it."""


def test_loading_is_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": FORMAT_VERSION, "payload": _Pickled()}, path)
    with pytest.raises(CheckpointError, match="not a loadable msgen checkpoint"):
        load_checkpoint(path)


def test_format_version_mismatch_is_named(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format_version": FORMAT_VERSION + 98, "step": 3}, path)
    with pytest.raises(CheckpointError, match=f"format_version {FORMAT_VERSION + 98}.*reads format_version {FORMAT_VERSION}"):
        load_checkpoint(path)
    torch.save({"step": 3}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an msgen training checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(5), np.random.seed(6), random.seed(7)
    np.random.normal()  # leaves a cached Gaussian in NumPy's legacy state
    random.gauss(0, 1)
    path = atomic_save({"format_version": FORMAT_VERSION, "rng": capture_rng()}, tmp_path / "rng.pt")
    expected = (torch.rand(5), np.random.normal(size=5), [random.gauss(0, 1), random.random()])
    torch.rand(3), np.random.rand(3), random.random()  # move every generator on
    restore_rng(load_checkpoint(path)["rng"])
    again = (torch.rand(5), np.random.normal(size=5), [random.gauss(0, 1), random.random()])
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def test_module_of_another_size_gets_a_clear_error(tmp_path):
    small, big = nn.Linear(3, 4), nn.Linear(3, 5)
    with pytest.raises(CheckpointError, match=r"weight is \(5, 3\) in the checkpoint but \(4, 3\)"):
        load_module_state(small, big.state_dict(), "generator", tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="missing"):
        load_module_state(nn.Sequential(small, nn.Linear(4, 1)), {}, "generator", "x.pt")


def test_load_generator_rebuilds_the_saved_model(tmp_path):
    config = with_overrides(train_preset("synthetic"), {
        "model.generator.image_size": (32, 16), "model.generator.levels": 3, "model.generator.warp_levels": 3,
    })
    torch.manual_seed(0)
    generator = Generator(config.model.generator)
    for p in generator.parameters():  # not the initialisation a fresh build would give
        p.data.add_(torch.randn_like(p) * 0.01)
    CheckpointManager(tmp_path, keep_last=1).save(
        9, {"config": config_to_dict(config), "generator": generator.state_dict()}
    )
    loaded, loaded_config = load_generator(tmp_path / "step-00000009.pt")
    assert loaded_config == config and not loaded.training
    B, M, (H, W) = 2, 3, (32, 16)
    inputs = (torch.rand(B, M, 3, H, W) * 2 - 1, torch.rand(B, M, 18, H, W), torch.rand(B, 18, H, W),
              torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(B, M, 10, 2, 3), torch.rand(B, M, 10, H, W))
    with torch.no_grad():
        assert torch.equal(loaded(*inputs).image, generator(*inputs).image)


def test_load_generator_of_another_size_names_the_mismatch(tmp_path):
    config = with_overrides(train_preset("synthetic"), {"model.generator.image_size": (32, 16),
                                                         "model.generator.levels": 3,
                                                         "model.generator.warp_levels": 3})
    other = Generator(GeneratorConfig(image_size=(32, 16), levels=3, warp_levels=3, width=0.25))
    CheckpointManager(tmp_path, keep_last=1).save(1, {"config": config_to_dict(config),
                                                      "generator": other.state_dict()})
    with pytest.raises(CheckpointError, match="generator in .* has another size"):
        load_generator(tmp_path / "step-00000001.pt")


def test_checkpoint_files_have_no_stray_temporaries_after_many_saves(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=3)
    for step in range(1, 8):
        manager.save(step, {"w": torch.randn(4)}, metric=float(step % 3))
    names = sorted(os.listdir(tmp_path))
    assert names == ["best.pt", "step-00000005.pt", "step-00000006.pt", "step-00000007.pt"]
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 2


# -- why a checkpoint cannot be used; newest valid; best.pt from the first save; stale temporaries --


def _bad_files(tmp_path) -> dict[str, tuple]:
    """name -> (path, expected reason) of files that are not usable checkpoints."""
    files = {}
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    files["empty"] = (empty, r"empty \(0 bytes\)")
    text = tmp_path / "text.pt"
    text.write_text("174812789 lines of notes\n")
    files["text"] = (text, r"text file.*'174812789")
    pickled = tmp_path / "pickled.pt"
    torch.save({"format_version": FORMAT_VERSION, "payload": _Pickled()}, pickled)
    files["foreign pickle"] = (pickled, r"pickled Python objects.*weights_only=True")
    whole = tmp_path / "whole.pt"
    atomic_save(_state(1.0), whole)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    files["truncated"] = (truncated, r"truncated or corrupt")
    binary = tmp_path / "binary.pt"
    binary.write_bytes(bytes(range(200, 256)) * 4)
    files["binary"] = (binary, r"not a torch checkpoint \(it starts with the bytes c8 c9")
    return files


@pytest.mark.parametrize("kind", ["empty", "text", "foreign pickle", "truncated", "binary"])
def test_an_unusable_checkpoint_says_why(tmp_path, kind):
    path, reason = _bad_files(tmp_path)[kind]
    with pytest.raises(CheckpointError, match=reason) as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_newest_valid_checkpoint_skips_corrupt_newer_files(tmp_path):
    atomic_save(_state(1.0) | {"step": 2}, tmp_path / "step-00000002.pt")
    atomic_save(_state(2.0) | {"step": 4}, tmp_path / "step-00000004.pt")
    (tmp_path / "step-00000006.pt").write_bytes(b"")
    (tmp_path / "step-00000008.pt").write_text("not a checkpoint")
    path, state, skipped = ckpt.newest_valid_checkpoint(tmp_path)
    assert path == tmp_path / "step-00000004.pt" and state["weights"][0, 0].item() == 2.0
    assert len(skipped) == 2 and "step-00000008.pt" in skipped[0] and "step-00000006.pt" in skipped[1]
    assert ckpt.newest_valid_checkpoint(tmp_path / "none") == (None, None, [])


def test_best_exists_from_the_first_save_and_follows_the_metric_once_there_is_one(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=5)
    manager.save(1, {"weights": torch.tensor(1.0)})
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 1  # no evaluation yet: the newest
    manager.save(2, {"weights": torch.tensor(2.0)})
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 2
    manager.save(3, {"weights": torch.tensor(3.0)}, metric=0.5)
    manager.save(4, {"weights": torch.tensor(4.0)})  # not evaluated: the evaluated best stays
    manager.save(5, {"weights": torch.tensor(5.0)}, metric=0.4)
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["step"] == 3 and best["best_metric"] == 0.5


def test_stale_temporaries_of_a_killed_save_are_removed(tmp_path):
    atomic_save(_state(1.0), tmp_path / "step-00000001.pt")
    stale = [tmp_path / ".step-00000002.pt.abc123.tmp", tmp_path / ".best.pt.link"]
    for path in stale:
        path.write_bytes(b"")
    keep = tmp_path / "notes.tmp"  # not one of ours
    keep.write_text("x")
    assert sorted(ckpt.remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp", "step-00000001.pt"]
