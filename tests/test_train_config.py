"""The training configuration, its command line, presets and the step-indexed data order."""

from __future__ import annotations

import dataclasses

import pytest

from msgen.training.cli import _leaf_fields, build_parser, main, parse_args
from msgen.training.config import (
    PRESETS,
    DataConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    train_preset,
    with_overrides,
)
from msgen.training.sampler import StepBatchSampler, epoch_permutation, sources_at_step


def test_no_arguments_is_the_synthetic_preset():
    invocation, _ = parse_args([])
    assert invocation.config == train_preset("synthetic")
    assert invocation.resume is None and invocation.init_from is None
    assert invocation.config.model.loss.features == "l1"  # no VGG weights ship with msgen


def test_every_field_is_overridable_from_the_command_line():
    parser = build_parser()
    dests = {action.dest for action in parser._actions}
    leaves = [path for path, _, _ in _leaf_fields(TrainConfig)]
    assert "model.generator.width" in leaves and "data.workers" in leaves and "steps" in leaves
    assert set(leaves) <= dests


def test_overrides_reach_nested_fields_and_parse_their_types():
    invocation, _ = parse_args([
        "--steps", "7", "--num-sources", "1,2,3,5", "--model.generator.width", "0.25",
        "--data.workers", "1", "--betas", "0.4,0.9", "--compile", "--model.loss.lambda-nn", "0.5",
        "--model.generator.image-size", "128x64", "--checkpoint-every", "none", "--model.generator.ops", "fast",
    ])
    c = invocation.config
    assert (c.steps, c.num_sources, c.betas, c.compile) == (7, (1, 2, 3, 5), (0.4, 0.9), True)
    assert c.model.generator.width == 0.25 and c.model.generator.image_size == (128, 64)
    assert c.model.loss.lambda_nn == 0.5 and c.model.generator.ops == "fast"
    assert c.data.workers == 1 and c.checkpoint_every is None
    # Fields not given keep the preset's values.
    assert c.lr == train_preset("synthetic").lr and c.data.identities == DataConfig().identities


@pytest.mark.parametrize("argv", [
    ["--steps", "many"],
    ["--betas", "0.5"],
    ["--num-sources", "0"],
    ["--precision", "fp8"],
    ["--preset", "imagenet"],
    ["--resume", "auto"],  # needs --out
    ["--model.generator.variant", "nope"],
])
def test_bad_command_lines_exit_with_status_2_and_a_message(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_lr_decay_falls_linearly_over_the_end_of_the_run():
    from msgen.training.loop import learning_rate

    constant = TrainConfig(steps=8, lr=0.4)
    assert [learning_rate(constant, s) for s in range(8)] == [0.4] * 8
    decayed = TrainConfig(steps=8, lr=0.4, lr_decay=0.5)
    assert [learning_rate(decayed, s) for s in range(8)] == pytest.approx(
        [0.4, 0.4, 0.4, 0.4, 0.4, 0.3, 0.2, 0.1])
    whole = TrainConfig(steps=4, lr=0.4, lr_decay=1.0)
    assert [learning_rate(whole, s) for s in range(4)] == pytest.approx([0.4, 0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match="--lr-decay"):
        TrainConfig(lr_decay=1.5)


def test_resume_auto_without_a_checkpoint_starts_afresh(tmp_path):
    invocation, _ = parse_args(["--resume", "auto", "--out", str(tmp_path / "new"), "--steps", "3"])
    assert invocation.resume is None and invocation.config.steps == 3
    assert invocation.config.out == str(tmp_path / "new")


def test_resume_and_preset_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--resume", "x.pt", "--preset", "market"])
    assert "--preset cannot be combined" in capsys.readouterr().err


def test_paper_settings_in_the_real_data_presets():
    for name in ("market", "deepfashion"):
        c = train_preset(name)
        assert (c.lr, c.betas, c.model.loss.lambda_nn, c.num_sources) == (2e-4, (0.5, 0.999), 0.01, (2,))
        assert c.model.loss.features == "vgg19"
        assert c.lr_decay == 0 and not c.model.generator.coarse_attention
    assert train_preset("market").model.generator.image_size == (128, 64)
    assert train_preset("deepfashion").model.generator.image_size == (256, 256)
    assert train_preset("deepfashion").model.loss.neighbourhood == 5
    assert train_preset("deepfashion").data.identity == "deepfashion"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_configs_round_trip_through_plain_containers(name):
    config = with_overrides(train_preset(name), {"num_sources": (1, 3), "model.generator.ops": "fast"})
    plain = config_to_dict(config)
    assert all(not dataclasses.is_dataclass(v) for v in plain.values())
    assert config_from_dict(plain) == config


def test_config_from_dict_names_unknown_fields():
    plain = config_to_dict(train_preset("synthetic"))
    plain["data"]["colour"] = 3
    with pytest.raises(ValueError, match=r"DataConfig has no field\(s\) \['colour'\]"):
        config_from_dict(plain)


def test_bf16_on_cpu_is_refused_with_a_clear_message(capsys, tmp_path):
    status = main(["--precision", "bf16", "--device", "cpu", "--out", str(tmp_path / "run")])
    assert status == 2
    err = capsys.readouterr().err
    assert "bf16 autocasts on a CUDA GPU only" in err and "--precision fp32" in err


# -- the data order ---------------------------------------------------------------------------


def test_data_order_is_a_function_of_the_step():
    full = list(StepBatchSampler(23, 4, steps=15, num_sources=(1, 2, 5), seed=3))
    resumed = list(StepBatchSampler(23, 4, steps=15, num_sources=(1, 2, 5), seed=3, start_step=9))
    assert resumed == full[9:]
    assert len(full) == 15 and all(len(batch) == 4 for batch in full)
    # One M per batch, from the set, and not always the same one.
    ms = [{m for _, m in batch} for batch in full]
    assert all(len(m) == 1 and m <= {1, 2, 5} for m in ms)
    assert len(set().union(*ms)) > 1
    # Consecutive batches walk through each epoch's permutation: every tuple once per epoch.
    flat = [i for batch in full for i, _ in batch]
    assert sorted(flat[:23]) == list(range(23)) and flat[:23] == epoch_permutation(23, 3, 0).tolist()
    assert flat[23:46] == epoch_permutation(23, 3, 1).tolist()


def test_ranks_share_out_the_global_batch():
    single = StepBatchSampler(17, 6, steps=5, num_sources=(2, 3), seed=1)
    ranks = [StepBatchSampler(17, 3, steps=5, num_sources=(2, 3), seed=1, rank=r, world_size=2) for r in (0, 1)]
    for global_batch, *shares in zip(single, *ranks):
        assert shares[0] + shares[1] == global_batch  # disjoint halves, the same M on both ranks


def test_sources_at_step_is_deterministic_and_covers_the_set():
    draws = [sources_at_step((1, 2, 3, 5), seed=0, step=s) for s in range(200)]
    assert draws == [sources_at_step((1, 2, 3, 5), seed=0, step=s) for s in range(200)]
    assert set(draws) == {1, 2, 3, 5}
    assert all(sources_at_step((4,), seed=9, step=s) == 4 for s in range(5))


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        StepBatchSampler(10, 2, steps=3, rank=2, world_size=2)
    with pytest.raises(ValueError, match="start_step"):
        StepBatchSampler(10, 2, steps=3, start_step=4)
    with pytest.raises(ValueError, match="num_items"):
        StepBatchSampler(0, 2, steps=3)


@pytest.mark.parametrize("old, root", [
    ({"root": None, "annotations": None}, None),                                  # the synthetic default
    ({"root": "data/market/images", "annotations": "data/market/annotation.csv"}, "data/market"),
    ({"root": "data/market/images", "annotations": None}, "data/market"),
    ({"root": "data/market", "annotations": "data/market/annotation.csv"}, "data/market"),
])
def test_checkpoints_of_the_image_folder_layout_still_load(old: dict, root: str | None) -> None:
    plain = config_to_dict(train_preset("market" if old["root"] else "synthetic"))
    plain["data"].pop("synthetic_cache", None)
    plain["data"].update(old)
    config = config_from_dict(plain)
    assert config.data.root == root


def test_a_checkpoint_with_a_foreign_annotation_file_is_refused() -> None:
    plain = config_to_dict(train_preset("market"))
    plain["data"].update({"root": "data/market/images", "annotations": "elsewhere/poses.csv"})
    with pytest.raises(ValueError, match="now one folder holding images/ and annotation.csv"):
        config_from_dict(plain)


@pytest.mark.parametrize("cpus, workers", [(1, 0), (2, 0), (3, 2), (4, 3), (8, 4), (64, 4)])
def test_default_workers_leave_the_training_process_a_cpu(monkeypatch, cpus, workers):
    import os

    from msgen.training.config import DataConfig, default_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert default_workers() == workers
    assert DataConfig().workers == workers
    assert train_preset("market").data.workers == workers
