"""Tests of msgen.export: a checkpoint's generator exported as safetensors and loaded back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from msgen import export
from msgen.checkpoint import FORMAT_VERSION, atomic_save
from msgen.export import load_generator
from msgen.models import Generator
from msgen.training.config import config_to_dict, train_preset, with_overrides


@pytest.fixture()
def checkpoint(tmp_path: Path) -> tuple[Path, Generator]:
    config = with_overrides(train_preset("synthetic"), {"model.generator.variant": "att2d"})
    torch.manual_seed(0)
    G = Generator(config.model.generator)
    state = {"format_version": FORMAT_VERSION, "step": 7, "config": config_to_dict(config),
             "generator": G.state_dict(), "discriminator": {}, "optim_g": {}, "optim_d": {}, "rng": {},
             "metrics": {}, "best_metric": None}
    return atomic_save(state, tmp_path / "step-00000007.pt"), G.eval()


def test_export_then_load_gives_the_same_generator(checkpoint, tmp_path: Path) -> None:
    path, G = checkpoint
    assert export.main(["export", "--checkpoint", str(path), "--out", str(tmp_path / "g.safetensors")]) == 0
    loaded, config = export.load_generator_weights(tmp_path / "g.safetensors")
    assert config.model.generator.variant == "att2d"
    assert export.read_metadata(tmp_path / "g.safetensors")["step"] == "7"
    H, W = config.model.generator.image_size
    g = torch.Generator().manual_seed(1)
    args = (torch.rand(2, 3, 3, H, W, generator=g) * 2 - 1, torch.rand(2, 3, 18, H, W, generator=g),
            torch.rand(2, 18, H, W, generator=g), torch.eye(2, 3).expand(2, 3, 10, 2, 3).clone(),
            torch.rand(2, 3, 10, H, W, generator=g))
    via_checkpoint_loader, _ = load_generator(tmp_path / "g.safetensors")  # what the API and CLIs call
    with torch.no_grad():
        torch.testing.assert_close(loaded(*args).image, G(*args).image, rtol=0, atol=0)
        torch.testing.assert_close(via_checkpoint_loader(*args).image, G(*args).image, rtol=0, atol=0)
    # The exported file holds G alone: smaller than the checkpoint it came from.
    assert (tmp_path / "g.safetensors").stat().st_size < path.stat().st_size


def test_files_that_are_not_exported_generators_are_refused_by_name(tmp_path: Path) -> None:
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "someone-else"})
    (tmp_path / "text.safetensors").write_text("hello")
    with pytest.raises(ValueError, match="other.safetensors is not an msgen generator file"):
        export.load_generator_weights(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="text.safetensors is not a safetensors file"):
        export.load_generator_weights(tmp_path / "text.safetensors")
    with pytest.raises(ValueError, match="no such file"):
        export.load_generator_weights(tmp_path / "missing.safetensors")


def test_cli_errors_are_one_line_with_exit_2(checkpoint, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path, _ = checkpoint
    assert export.main(["export", "--checkpoint", str(path), "--out", str(tmp_path / "g.pt")]) == 2
    assert "--out must end in .safetensors" in capsys.readouterr().err
    assert export.main(["export", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "g.safetensors")]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "g.safetensors").exists()


def test_export_stores_further_metadata_but_not_over_its_own(checkpoint, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    path, _ = checkpoint
    (tmp_path / "persons.txt").write_text("0002,0007\n")
    out = tmp_path / "g.safetensors"
    assert export.main(["export", "--checkpoint", str(path), "--out", str(out), "--metadata",
                        "held_out_persons=@" + str(tmp_path / "persons.txt"), "split=seed 0"]) == 0
    metadata = export.read_metadata(out)
    assert metadata["held_out_persons"] == "0002,0007" and metadata["split"] == "seed 0"
    assert export.read_config(out) is not None  # still loads
    assert export.main(["export", "--checkpoint", str(path), "--out", str(tmp_path / "h.safetensors"),
                        "--metadata", "step=9"]) == 2
    assert "may not set step" in capsys.readouterr().err
    assert export.main(["export", "--checkpoint", str(path), "--out", str(tmp_path / "h.safetensors"),
                        "--metadata", "novalue"]) == 2
    assert not (tmp_path / "h.safetensors").exists()
