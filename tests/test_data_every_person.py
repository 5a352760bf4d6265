"""Every person serves every M it can (tuples, sampler, prepare, training's data), the dataset
folder's rules, the validation split, and prepare leaving nothing behind when it fails."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from msgen.data import prepare
from msgen.data.folder import deepfashion_identity, market_identity
from msgen.data.split import SPLIT_FILE, Split, SplitLeakError, check_disjoint, read_split, run_split
from msgen.data.synthetic import generate_synthetic
from msgen.data.tuples import persons_serving, sample_tuples, tuple_persons
from msgen.errors import UsageError
from msgen.pose import read_annotations, write_annotations
from msgen.training.config import DataConfig
from msgen.training.data import build_run_data, resolve_rules
from msgen.training.distributed import Distributed
from msgen.training.sampler import StepBatchSampler, served_sources, sources_at_step, step_weights

SINGLE = Distributed(0, 1, 0, torch.device("cpu"))


def _identities(counts: dict[str, int]) -> dict[str, list[str]]:
    return {identity: [f"{identity}_{i:02d}.png" for i in range(n)] for identity, n in counts.items()}


COUNTS = {"0007": 2, "0011": 3, "0013": 4, "0017": 6, "0023": 1}


def test_a_person_serves_the_m_its_images_allow():
    tuples = sample_tuples(_identities(COUNTS), 3, seed=3, min_sources=1)
    per_person = Counter(t.split("_")[0] for _, t in tuples)
    assert per_person == {"0007": 2, "0011": 6, "0013": 12, "0017": 30}  # n * (n - 1) each
    for sources, target in tuples:
        n = COUNTS[target.split("_")[0]]
        assert len(sources) == min(n - 1, 3)
        assert len({*sources, target}) == len(sources) + 1
    assert tuples.skipped_identities == ["0023"]  # one image: no source and target
    assert persons_serving(_identities(COUNTS), [1, 2, 3]) == {1: (4, 15), 2: (3, 13), 3: (2, 10)}
    assert tuple_persons(tuples, market_identity, [1, 2, 3]) == {1: 4, 2: 3, 3: 2}


def test_tuple_csv_keeps_tuples_of_fewer_sources(tmp_path):
    from msgen.data.tuples import read_tuples_csv, write_tuples_csv

    tuples = [(["a_1.png", "a_2.png"], "a_3.png"), (["b_1.png"], "b_2.png")]
    write_tuples_csv(tmp_path / "t.csv", tuples)
    assert (tmp_path / "t.csv").read_text().splitlines()[2] == "b_1.png,,b_2.png"
    assert read_tuples_csv(tmp_path / "t.csv") == tuples
    assert read_tuples_csv(tmp_path / "t.csv", 1) == [(["a_1.png"], "a_3.png"), (["b_1.png"], "b_2.png")]
    (tmp_path / "gap.csv").write_text("from_0,from_1,to\n,a_1.png,a_3.png\n")
    with pytest.raises(ValueError, match="gap.csv:2: empty image name"):
        read_tuples_csv(tmp_path / "gap.csv")


def test_min_sources_changes_nothing_when_every_person_has_enough_images():
    identities = _identities({"0001": 6, "0002": 7, "0003": 9})
    assert sample_tuples(identities, 5, seed=2, min_sources=1) == sample_tuples(identities, 5, seed=2)


def test_step_weights_give_each_m_its_share_of_the_tuples():
    ms = [1, 2, 3]
    capacities = [1] * 20 + [2] * 30 + [3] * 50
    weights, shares = step_weights(ms, capacities)
    assert sum(weights) == pytest.approx(1) and min(weights) >= 0
    assert shares == pytest.approx([1 / 3] * 3)
    # What a sampler draws, tuple by tuple, matches those shares and never exceeds a tuple's sources.
    sampler = StepBatchSampler(len(capacities), 10, 3000, ms, seed=1, capacities=capacities)
    drawn = Counter()
    for batch in sampler:
        for index, m in batch:
            assert m <= capacities[index]
            drawn[m] += 1
    total = sum(drawn.values())
    assert [drawn[m] / total for m in ms] == pytest.approx([1 / 3] * 3, abs=0.02)
    # Too few tuples serve M = 3 for a third: its weight is capped and the shares say so.
    weights, shares = step_weights(ms, [1] * 90 + [3] * 10)
    assert weights[-1] == 1 and shares == pytest.approx([0.9, 0.0, 0.1])


def test_full_tuples_keep_the_uniform_draw_of_every_step():
    plain = StepBatchSampler(40, 4, 50, (1, 2, 5), seed=3)
    full = StepBatchSampler(40, 4, 50, (1, 2, 5), seed=3, capacities=[5] * 40)
    assert list(plain) == list(full)
    assert [batch[0][1] for batch in plain] == [sources_at_step((1, 2, 5), 3, s) for s in range(50)]
    assert served_sources((1, 2, 5), 4) == 2 and served_sources((2, 5), 1) == 0


def _few_images(tmp_path: Path, identities: int = 12) -> Path:
    """A synthetic folder whose persons have 2, 3 or 4 images (a third each), no summary.json."""
    data = generate_synthetic(tmp_path / "data", identities=identities, images_per_identity=4, size=(64, 32), seed=4)
    annotations = read_annotations(data / "annotation.csv")
    keep = {}
    for name, kp in annotations.items():
        person, index = int(market_identity(name)), sorted(n for n in annotations
                                                           if market_identity(n) == market_identity(name)).index(name)
        if index < 2 + person % 3:
            keep[name] = kp
    write_annotations(data / "annotation.csv", keep)
    return data


def test_prepare_writes_tuples_at_each_m_for_every_test_person(tmp_path, capsys):
    data = _few_images(tmp_path)
    assert prepare.main(["--dataset", "market", "--out", str(data), "--num-sources", "3",
                         "--test-fraction", "0.5", "--seed", "1"]) == 0
    split = read_split(data / SPLIT_FILE)
    summary = json.loads((data / "summary.json").read_text())
    counts = {p: len(n) for p, n in _person_images(data).items()}
    test = set(split.test_persons)
    for m in (1, 2, 3):
        serving = {p for p in test if counts[p] >= m + 1}
        assert {market_identity(t) for s, t in split.tuples_with(m)} == serving
        assert summary["test_persons_by_sources"][str(m)] == len(serving)
    assert len(split.tuples_with(1)) == sum(counts[p] * (counts[p] - 1) for p in test)
    assert f"M=1: {len(split.tuples_with(1))} tuples of {len(test)} persons" in capsys.readouterr().out
    # Three disjoint sides, and the folder records its rules.
    assert split.validation_persons and not set(split.validation_persons) & (test | set(split.train_persons))
    assert (summary["identity"], summary["framing"], summary["image_size"]) == ("market", "market", [64, 32])


def _person_images(data: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in read_annotations(data / "annotation.csv"):
        out.setdefault(market_identity(name), []).append(name)
    return out


def test_validation_persons_are_apart_and_do_not_move_the_test_persons():
    identities = _identities({f"{i:04d}": 2 + i % 5 for i in range(40)})
    from msgen.data.split import derive_split

    with_validation = derive_split(identities, 0.2, 3, 2, None, validation_fraction=0.25)
    without = derive_split(identities, 0.2, 3, 2, None)
    assert with_validation.test_persons == without.test_persons
    assert with_validation.test_tuples == without.test_tuples
    assert len(with_validation.validation_persons) == 8  # 0.25 of the 32 non-test persons
    assert set(with_validation.train_persons) | set(with_validation.validation_persons) == set(without.train_persons)
    with pytest.raises(SplitLeakError, match="validation person"):
        check_disjoint(Split(["0001"], ["0002"], [], "t", validation_persons=["0001"]))
    with pytest.raises(SplitLeakError, match="test person"):
        check_disjoint(Split(["0001"], ["0002"], [], "t", validation_persons=["0002"]))


def test_an_older_split_file_gets_validation_persons_from_its_training_persons(tmp_path):
    identities = _identities({f"{i:04d}": 3 for i in range(20)})
    old = {"format": 1, "origin": "old", "train_persons": sorted(identities)[4:], "test_persons": sorted(identities)[:4],
           "test_tuples": [["0000_00.png", "0000_01.png"]]}
    (tmp_path / SPLIT_FILE).write_text(json.dumps(old))
    split = run_split(tmp_path, identities, 0.1, 0, 2, validation_fraction=0.125)
    assert split.test_persons == old["test_persons"] and len(split.validation_persons) == 2
    assert set(split.validation_persons) <= set(old["train_persons"])
    assert not set(split.validation_persons) & set(split.train_persons)
    assert "names no validation persons" in split.origin


def test_training_data_uses_every_person_and_evaluates_on_validation_persons(tmp_path):
    data = _few_images(tmp_path, identities=24)
    run = build_run_data(DataConfig(root=str(data), test_fraction=0.25, workers=0), (64, 32), (1, 2), SINGLE)
    counts = {p: len(n) for p, n in _person_images(data).items()}
    trained = {market_identity(t) for _, t in run.train.tuples}
    assert trained == set(run.split.train_persons)  # the persons with 2 images too
    assert run.capacities == [len(s) for s, _ in run.train.tuples]
    assert {len(s) for s, _ in run.train.tuples} == {1, 2}
    two = sum(1 for p in run.split.train_persons if counts[p] == 2)
    assert f"M=1: {len(trained)} persons" in run.description and f"M=2: {len(trained) - two} persons" in run.description
    for m, dataset in run.held_out_by_m.items():
        persons = {market_identity(t) for _, t in dataset.tuples}
        assert persons <= set(run.split.validation_persons) and all(len(s) == m for s, _ in dataset.tuples)


def test_the_folder_carries_its_rules(tmp_path):
    data = generate_synthetic(tmp_path / "data", identities=6, images_per_identity=3, size=(64, 32), seed=2)
    config = DataConfig(root=str(data), workers=0)
    resolved, notices = resolve_rules(config, (64, 32))
    assert (resolved.identity, resolved.framing) == ("market", "market")
    assert any("no summary.json" in n and "Market rule" in n for n in notices)
    # A folder prepared as deepfashion: its rule applies without a flag; a flag overrides with a notice.
    (data / "summary.json").write_text(json.dumps({"dataset": "deepfashion", "image_size": [128, 64]}))
    resolved, notices = resolve_rules(config, (64, 32))
    assert (resolved.identity, resolved.framing) == ("deepfashion", "full-body")
    assert any("128x64" in n and "resized" in n for n in notices)
    resolved, notices = resolve_rules(DataConfig(root=str(data), identity="market", workers=0), (64, 32))
    assert resolved.identity == "market" and resolved.framing == "full-body"
    assert any("--data.identity market overrides the identity deepfashion" in n for n in notices)
    assert deepfashion_identity  # the rule the folder names is the one the folder is read with


def test_prepare_records_the_framing_option(tmp_path):
    data = generate_synthetic(tmp_path / "data", identities=8, images_per_identity=3, size=(64, 32), seed=2)
    assert prepare.prepare("deepfashion", data, test_fraction=0.3)["framing"] == "full-body"
    assert prepare.prepare("market", data, test_fraction=0.3, framing="full-body")["framing"] == "full-body"
    with pytest.raises(UsageError, match="--framing"):
        prepare.prepare("market", data, framing="close-up")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"") for p in sorted(root.rglob("*"))}


def test_prepare_leaves_nothing_behind_when_it_fails(tmp_path, capsys):
    data = generate_synthetic(tmp_path / "data", identities=4, images_per_identity=1, size=(64, 32), seed=2)
    # A new folder: no test tuple can be made (every person has one image), so no folder is left.
    out = tmp_path / "new"
    assert prepare.main(["--dataset", "market", "--out", str(out), "--images", str(data / "images"),
                         "--annotations", str(data / "annotation.csv")]) == 2
    assert "no test tuple" in capsys.readouterr().err
    assert not out.exists()
    # An existing folder keeps exactly what it held.
    before = _tree(data)
    assert prepare.main(["--dataset", "market", "--out", str(data)]) == 2
    assert _tree(data) == before
    # A failure while reading the folder (an annotated image that is missing) leaves nothing either.
    rows = (data / "annotation.csv").read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(rows + [rows[1].replace(rows[1].split(":")[0], "missing.png", 1)]) + "\n")
    assert prepare.main(["--dataset", "market", "--out", str(out), "--images", str(data / "images"),
                         "--annotations", str(bad)]) == 2
    assert not out.exists()
