"""prepare writes the one split (split.json) that training and evaluation read; the leak tests."""

from __future__ import annotations

import json
import shutil

import pytest

from msgen.data import prepare
from msgen.data.split import SPLIT_FILE, SplitLeakError, Split, check_disjoint, official_split, read_split, run_split
from msgen.data.folder import market_identity, deepfashion_identity
from msgen.data.synthetic import generate_synthetic
from msgen.errors import UsageError
from msgen.pose import read_annotations, write_annotations
from msgen.training.config import DataConfig
from msgen.training.data import build_run_data
import torch

from msgen.training.distributed import Distributed

SINGLE = Distributed(0, 1, 0, torch.device("cpu"))


def _assert_no_leak(split: Split, identity_fn) -> None:
    assert split.train_persons and split.test_persons
    assert not set(split.train_persons) & set(split.test_persons)
    for sources, target in split.test_tuples:
        assert {identity_fn(n) for n in (*sources, target)} <= set(split.test_persons)


def test_training_never_sees_a_test_person_of_the_written_split(tmp_path) -> None:
    data = generate_synthetic(tmp_path / "data", identities=10, images_per_identity=4, size=(64, 32), seed=1)
    summary = prepare.prepare("market", data, test_fraction=0.3, num_sources=2, seed=5)
    split = read_split(data / SPLIT_FILE)
    _assert_no_leak(split, market_identity)
    assert summary["persons"] == {"train": len(split.train_persons), "validation": len(split.validation_persons),
                                  "test": len(split.test_persons)}
    # Training reads the same file: a test fraction in its config that would split differently is ignored.
    run = build_run_data(DataConfig(root=str(data), test_fraction=0.5, seed=0, workers=0), (64, 32), 2, SINGLE)
    trained = {market_identity(n) for s, t in run.train.tuples for n in (*s, t)}
    held = {market_identity(n) for s, t in run.held_out.tuples for n in (*s, t)}
    assert trained <= set(split.train_persons) and not trained & set(split.test_persons)
    # The evaluation during training (and best.pt) rests on the validation persons, never on test persons.
    assert held <= set(split.validation_persons) and not held & set(split.test_persons)
    assert all({market_identity(t) for s, t in d.tuples} <= set(split.validation_persons)
               for d in run.held_out_by_m.values())
    # And evaluation's call gives the same split.
    assert run_split(data, {}, 0.5, 0, 2).to_json() == split.to_json()


def test_derived_split_is_shared_and_leak_free(tmp_path) -> None:
    data = generate_synthetic(tmp_path / "data", identities=12, images_per_identity=4, size=(64, 32), seed=2)
    config = DataConfig(root=str(data), test_fraction=0.25, workers=0)
    run = build_run_data(config, (64, 32), 2, SINGLE)
    split = run.split
    _assert_no_leak(split, market_identity)
    trained = {market_identity(n) for s, t in run.train.tuples for n in (*s, t)}
    assert not trained & set(split.test_persons)


def test_leak_check_fails_on_a_shared_person() -> None:
    with pytest.raises(SplitLeakError, match="also training persons: 0001"):
        check_disjoint(Split(["0001", "0002"], ["0001"], [], "test"))
    with pytest.raises(SplitLeakError, match="one test person"):
        check_disjoint(Split(["0002"], ["0001"], [(["0002_a.png"], "0001_b.png")], "test"), market_identity)


def _public_files(tmp_path, names_train, names_test, pairs, prefix):
    kp = "[10, 20, 20, 30, 40, 20, 30, 40, 50, 60, 70, 50, 60, 70, 8, 8, 9, 9]: [16, 16, 10, 8, 6, 22, 24, 26, 12, 12, 12, 20, 20, 20, 15, 17, 14, 18]"
    for split_name, names in (("train", names_train), ("test", names_test)):
        (tmp_path / f"{prefix}-annotation-{split_name}.csv").write_text(
            "name:keypoints_y:keypoints_x\n" + "".join(f"{n}: {kp}\n" for n in names))
    (tmp_path / f"{prefix}-pairs-test.csv").write_text("from,to\n" + "".join(f"{a},{b}\n" for a, b in pairs))
    return [tmp_path / f"{prefix}-annotation-train.csv", tmp_path / f"{prefix}-annotation-test.csv",
            tmp_path / f"{prefix}-pairs-test.csv"]


def test_official_market_split_from_public_format(tmp_path, capsys) -> None:
    train = ["0002_c1s1_000001_01.jpg", "0002_c2s1_000002_01.jpg", "0007_c1s1_000003_01.jpg"]
    test = ["0001_c1s1_1.jpg", "0001_c2s1_2.jpg", "0001_c3s1_3.jpg", "0003_c1_1.jpg", "0003_c2_2.jpg",
            "0000_c1_junk.jpg", "-1_c1_distractor.jpg"]
    pairs = [("0001_c2s1_2.jpg", "0001_c1s1_1.jpg"), ("0003_c1_1.jpg", "0003_c2_2.jpg")]
    files = _public_files(tmp_path, train, test, pairs, "market")
    out = tmp_path / "market"
    assert prepare.main(["--dataset", "market", "--out", str(out), "--official", *map(str, files),
                         "--num-sources", "2"]) == 0
    split = read_split(out / SPLIT_FILE)
    # The training CSV's persons are the training and validation persons (one validation person here).
    assert sorted(split.train_persons + split.validation_persons) == ["0002", "0007"]
    assert len(split.validation_persons) == 1 and split.test_persons == ["0001", "0003"]
    # M = 1: exactly the standard pairs, in order; M = 2: the pair's source first, then another image.
    assert split.tuples_with(1) == [([a], b) for a, b in pairs]
    assert split.test_tuples[0] == (["0001_c2s1_2.jpg", "0001_c3s1_3.jpg"], "0001_c1s1_1.jpg")
    assert split.test_tuples[1] == (["0003_c1_1.jpg"], "0003_c2_2.jpg")  # no third image: one source
    assert len(read_annotations(out / "annotation.csv")) == len(train) + len(test)
    assert "persons train 1, validation 1, test 2" in capsys.readouterr().out


def test_official_deepfashion_split_and_bad_pairs(tmp_path) -> None:
    train = ["fashionWOMENDressesid0000000101_1front.jpg", "fashionWOMENDressesid0000000101_2side.jpg"]
    test = ["fashionMENTeesid0000000201_1front.jpg", "fashionMENTeesid0000000201_2back.jpg"]
    files = _public_files(tmp_path, train, test, [(test[0], test[1])], "fasion")
    split = official_split(*files, deepfashion_identity, num_sources=1)
    assert split.train_persons == ["fashionWOMENDressesid0000000101"]
    assert split.test_tuples == [([test[0]], test[1])]
    bad = _public_files(tmp_path, train, test, [(test[0], train[0])], "bad")
    with pytest.raises(UsageError, match="names an image not in"):
        official_split(*bad, deepfashion_identity, num_sources=1)


@pytest.mark.data
def test_official_market_split_of_the_public_files(shared_data, tmp_path) -> None:
    keypoints = shared_data / "market-keypoints"
    summary = prepare.prepare("market", tmp_path / "m", official=[keypoints / "market-annotation-train.csv",
                              keypoints / "market-annotation-test.csv", keypoints / "market-pairs-test.csv"])
    split = read_split(tmp_path / "m" / SPLIT_FILE)
    _assert_no_leak(split, market_identity)
    persons = summary["persons"]
    assert summary["test_tuples"] == 12000 and persons["train"] + persons["validation"] == 751
    # 0.1 of the training persons with a usable pose, rounded either way
    assert persons["test"] == 750 and abs(persons["validation"] - 75) <= 2
    with open(keypoints / "market-pairs-test.csv") as file:
        pairs = [line.strip().split(",") for line in file.readlines()[1:] if line.strip()]
    assert [[s[0], t] for s, t in split.test_tuples] == pairs


@pytest.mark.data
def test_prepare_real_market_persons(shared_data, tmp_path) -> None:
    root = shared_data / "market-real"
    summary = prepare.prepare("market", tmp_path / "mr", images=root / "images", annotations=root / "annotation.csv",
                              num_sources=3, test_fraction=0.2, seed=3)
    split = read_split(tmp_path / "mr" / SPLIT_FILE)
    _assert_no_leak(split, market_identity)
    assert summary["kept_images"] == 386 and (tmp_path / "mr" / "images").is_symlink()
    # Every test person serves the M its images allow (85 of the 135 persons have only 2 images).
    counts = {}
    for name in read_annotations(root / "annotation.csv"):
        counts[market_identity(name)] = counts.get(market_identity(name), 0) + 1
    assert all(len(s) == min(counts[market_identity(t)] - 1, 3) for s, t in split.test_tuples)
    assert {market_identity(t) for _, t in split.test_tuples} == set(split.test_persons)


def test_prepare_reports_bad_input(tmp_path, capsys) -> None:
    assert prepare.main(["--dataset", "market", "--images", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --images") and "nowhere" in error


def test_nonexistent_data_root_is_a_usage_error_naming_it(tmp_path) -> None:
    with pytest.raises(UsageError, match="--data.root .*nowhere: no such folder"):
        build_run_data(DataConfig(root=str(tmp_path / "nowhere"), workers=0), (64, 32), 2, SINGLE)


@pytest.mark.filterwarnings("ignore::msgen.models.losses.FeatureSpaceWarning")
def test_train_cli_refuses_a_nonexistent_root_in_one_line(tmp_path, capsys) -> None:
    from msgen.training import cli

    code = cli.main(["--data.root", str(tmp_path / "nowhere"), "--steps", "1", "--data.workers", "0",
                     "--device", "cpu", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "error: --data.root" in capsys.readouterr().err


def test_every_data_option_says_what_it_does_and_its_default() -> None:
    import dataclasses

    for f in dataclasses.fields(DataConfig):
        text = f.metadata.get("help", "")
        assert len(text) > 20 and "default" in text, f.name


def test_evaluate_refuses_tuples_of_training_persons(tmp_path, capsys) -> None:
    from msgen import evaluate
    from msgen.data import write_tuples_csv

    data = generate_synthetic(tmp_path / "data", identities=6, images_per_identity=4, size=(64, 32), seed=1)
    prepare.prepare("market", data, test_fraction=0.34, num_sources=1)
    split = read_split(data / SPLIT_FILE)
    person = split.train_persons[0]
    names = sorted(n for n in read_annotations(data / "annotation.csv") if market_identity(n) == person)
    write_tuples_csv(tmp_path / "t.csv", [([names[0]], names[1])])
    assert evaluate.main(["--data", str(data), "--tuples", str(tmp_path / "t.csv"), "--sources", "1",
                          "--no-progress", "--out", str(tmp_path / "e")]) == 2
    assert f"persons {person} are training persons" in capsys.readouterr().err
