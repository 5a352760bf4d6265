"""The prepare CLI: tuple CSVs and summary for Market-1501 and DeepFashion layouts."""

from __future__ import annotations

import json
import shutil

import pytest

from msgen.data import prepare
from msgen.data.synthetic import generate_synthetic
from msgen.data.tuples import read_tuples_csv
from msgen.pose import read_annotations, write_annotations


def _check_output(out, num_sources: int) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    train_ids, test_ids = set(summary["identities"]["train"]), set(summary["identities"]["test"])
    assert train_ids and test_ids and not train_ids & test_ids
    for split, identities in (("train", train_ids), ("test", test_ids)):
        tuples = read_tuples_csv(out / f"{split}_tuples.csv")
        assert len(tuples) == summary["tuples"][split] > 0
        assert all(len(sources) == num_sources for sources, _ in tuples)
        assert {target.split("_")[0] for _, target in tuples} <= identities
    return summary


@pytest.mark.data
@pytest.mark.parametrize("num_sources", [1, 5])
def test_prepare_real_market(shared_data, tmp_path, capsys, num_sources):
    root = shared_data / "market-real"
    prepare.main(["--dataset", "market", "--images", str(root / "images"), "--annotations",
                  str(root / "annotation.csv"), "--out", str(tmp_path), "--num-sources", str(num_sources),
                  "--test-fraction", "0.2", "--seed", "3"])
    assert "tuples train" in capsys.readouterr().out
    summary = _check_output(tmp_path, num_sources)
    counts = {}
    for name in read_annotations(root / "annotation.csv"):
        counts[name.split("_")[0]] = counts.get(name.split("_")[0], 0) + 1
    assert summary["kept_images"] == 386 and summary["image_size"] == [128, 64]
    for split in ("train", "test"):
        identities = summary["identities"][split]
        usable = [i for i in identities if counts[i] >= num_sources + 1]
        assert sorted(summary["skipped_identities"][split]) == sorted(set(identities) - set(usable))
        expected = sum(counts[i] * (counts[i] - 1) for i in usable)
        assert summary["tuples"][split] == expected


def test_prepare_deepfashion_naming(tmp_path):
    # A small synthetic set renamed to DeepFashion's flattened names: identity = id + item.
    source = generate_synthetic(tmp_path / "synthetic", identities=6, images_per_identity=4, size=(64, 64), seed=2)
    images = tmp_path / "df" / "images"
    images.mkdir(parents=True)
    renamed = {}
    for name, kp in read_annotations(source / "annotation.csv").items():
        identity, view, index = name[: -len(".png")].split("_")
        new = f"fashionWOMENDressesid{int(identity):08d}01_{int(index)}{view}.png"
        shutil.copy(source / "images" / name, images / new)
        renamed[new] = kp
    write_annotations(tmp_path / "df" / "annotation.csv", renamed)
    summary = prepare.prepare("deepfashion", images, tmp_path / "df" / "annotation.csv", tmp_path / "out",
                              num_sources=2, test_fraction=0.34, seed=0)
    assert len(summary["identities"]["train"]) + len(summary["identities"]["test"]) == 6
    assert all(i.startswith("fashionWOMENDressesid") and i.endswith("01") for i in summary["identities"]["train"])
    assert summary["tuples"]["train"] + summary["tuples"]["test"] == 6 * 4 * 3


def test_prepare_reports_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["--dataset", "market", "--images", str(tmp_path / "nowhere"), "--annotations",
                      str(tmp_path / "a.csv"), "--out", str(tmp_path / "out"), "--num-sources", "2"])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "image folder" in error and "nowhere" in error


def test_prepare_fails_clearly_without_enough_images(tmp_path):
    source = generate_synthetic(tmp_path / "s", identities=3, images_per_identity=2, seed=1)
    with pytest.raises(ValueError, match="no training tuple: none of the 2 training identities has 4 usable"):
        prepare.prepare("market", source / "images", source / "annotation.csv", tmp_path / "out", num_sources=3,
                        test_fraction=0.34)
