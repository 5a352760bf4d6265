"""python -m msgen.evaluate end to end on a checkpoint trained for one step, with stand-in networks.

Stand-ins (random weights, never real scores) let every column be produced here: an Inception
stand-in giving pool features and class probabilities, and LPIPS with random AlexNet weights.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from msgen import evaluate
from msgen.data import PoseImageFolder, TupleDataset
from msgen.evaluation import LPIPS, alexnet_features, ssim
from msgen.models import FeatureSpaceWarning, preset
from msgen.training.config import DataConfig, TrainConfig
from msgen.evaluation import Method, score_methods, warp_baseline
from msgen.training.loop import train

SIZE = (64, 64)  # GFLA's SSIM needs >= 51x51


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("evaluate")
    config = TrainConfig(
        model=preset("synthetic-small", image_size=SIZE, levels=4),
        data=DataConfig(synthetic_cache=str(root / "cache"), identities=10, images_per_identity=5,
                        test_fraction=0.3, eval_tuples=2, sample_tuples=1, workers=0),
        num_sources=(2,), batch_size=2, steps=1, log_every=1, sample_every=100, eval_every=100,
        device="cpu", out=str(root / "run"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FeatureSpaceWarning)
        result = train(config)
    return {"root": root, "checkpoint": result.last_checkpoint}


class StandInInception(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 5, stride=8)
        self.fc = nn.Linear(8, 6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert tuple(x.shape[-2:]) == (299, 299) and x.min() >= -1 - 1e-6 and x.max() <= 1 + 1e-6
        features = self.conv(x).relu().mean((2, 3))
        return features, self.fc(features).softmax(1)


class StandInFIDInception(nn.Module):
    """Pool features of the TF graph's input convention: (N, 3, 299, 299) in [-1, 1) -> (N, 8)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(3, 8, 5, stride=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert tuple(x.shape[-2:]) == (299, 299) and x.min() >= -1 and x.max() < 1
        return self.conv(x).relu().mean((2, 3))


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(1)
    heads = [torch.rand(1, c, 1, 1) for c in (64, 192, 384, 256, 256)]
    monkeypatch.setattr(evaluate, "load_fid_inception", lambda weights, device: StandInFIDInception())
    monkeypatch.setattr(evaluate, "load_inception_model", lambda weights, device: StandInInception())
    monkeypatch.setattr(evaluate, "load_lpips", lambda *args: LPIPS(alexnet_features(), heads))


def test_whole_run_with_stand_in_networks_gives_every_column(run: dict, stand_ins, capsys) -> None:
    out = run["root"] / "eval"
    argv = ["--checkpoint", str(run["checkpoint"]), "--sources", "1", "2", "--max-tuples", "12",
            "--out", str(out), "--no-progress"]
    assert evaluate.main(argv) == 0
    printed = capsys.readouterr().out
    assert "unavailable" not in printed
    report = json.loads((out / "evaluation.json").read_text())
    methods = {(row["method"], row["M"]) for row in report["rows"]}
    assert {("model", 1), ("model", 2), ("warp baseline", 1), ("warp baseline", 2)} <= methods
    assert any(row["method"].startswith("constant") for row in report["rows"])
    n = report["num_tuples"]
    assert n == 12
    for row in report["rows"]:
        assert row["fid"] is not None and np.isfinite(row["fid"]) and row["is"] is not None
        assert np.isfinite(row["fid_tf"]) and len(row["kid"]) == 2 and np.isfinite(row["kid"]).all()
        if row["pairwise"]:
            assert set(row["metrics"]) == {"ssim", "ssim_256", "mask_ssim", "lpips"}
            for summary in row["metrics"].values():
                assert summary["low"] <= summary["mean"] <= summary["high"] and summary["n"] == n
        else:  # the ground truth: FID of the test images against the real set
            assert row["metrics"] == {}
    for per_m in report["per_tuple"]["model"].values():
        assert all(len(values) == n for values in per_m.values())
    # The real set's statistics were cached in the dataset folder; a second run reuses them.
    cached = list((run["root"] / "cache").glob("synthetic-*/.msgen-cache/fid-real-*.npz"))
    assert len(cached) == 1
    whats = {item["what"] for item in report["paired"]}
    assert "model M=2 minus M=1" in whats and "model minus warp baseline at M=1" in whats
    # compare pairs the runs tuple by tuple: a run against itself differs by exactly 0.
    assert evaluate.main(["compare", str(out / "evaluation.json"), str(out / "evaluation.json")]) == 0
    assert "+0.0000 [+0.0000, +0.0000]" in capsys.readouterr().out
    assert "| FID (TF graph) | KID | FID (torchvision, GFLA) |" in printed
    assert evaluate.main([*argv[:-3], "--out", str(out / "again"), "--no-progress"]) == 0
    again = json.loads((out / "again" / "evaluation.json").read_text())
    assert [row["fid"] for row in again["rows"]] == [row["fid"] for row in report["rows"]]
    assert "cached statistics" in capsys.readouterr().err


def test_the_real_set_cache_belongs_to_the_network_that_made_it(run: dict, stand_ins, monkeypatch, capsys) -> None:
    """Two FID networks of different weights on one folder: the second computes its own real-set
    features instead of reading the first's (a stand-in's 8-d features once reached a 2048-d graph)."""
    argv = ["--checkpoint", str(run["checkpoint"]), "--sources", "1", "--max-tuples", "4",
            "--no-progress"]
    assert evaluate.main([*argv, "--out", str(run["root"] / "first")]) == 0
    first = json.loads((run["root"] / "first" / "evaluation.json").read_text())

    class OtherFIDInception(StandInFIDInception):
        def __init__(self) -> None:
            super().__init__()
            with torch.no_grad():
                self.conv.weight.mul_(-1.5)

    monkeypatch.setattr(evaluate, "load_fid_inception", lambda weights, device: OtherFIDInception())
    capsys.readouterr()
    assert evaluate.main([*argv, "--out", str(run["root"] / "second")]) == 0
    assert "FID (TF graph) real set: cached features" not in capsys.readouterr().err
    second = json.loads((run["root"] / "second" / "evaluation.json").read_text())
    assert [r["fid_tf"] for r in second["rows"]] != [r["fid_tf"] for r in first["rows"]]
    assert len(list((run["root"] / "cache").glob("synthetic-*/.msgen-cache/fid-tf-real-*.npy"))) >= 2


def test_without_weights_the_columns_say_why(run: dict, monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("MSGEN_CACHE", str(tmp_path / "empty-cache"))  # no converted networks either
    for name in ("MSGEN_INCEPTION_WEIGHTS", "MSGEN_ALEXNET_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
    # Heads present (whether or not the lpips package is installed here), the backbone missing.
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(heads, tmp_path / "heads.pth")
    monkeypatch.setenv("MSGEN_LPIPS_HEADS", str(tmp_path / "heads.pth"))
    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", str(run["checkpoint"]), "--sources", "1", "--max-tuples", "4",
                          "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "LPIPS unavailable: no AlexNet weights" in printed
    assert "FID (torchvision, GFLA) unavailable: no Inception-v3" in printed
    assert "FID (TF graph) unavailable" in printed and "msgen.weights fetch" in printed
    assert "IS and mask-IS unavailable: they need an Inception classifier head" in printed
    report = json.loads((out / "evaluation.json").read_text())
    assert all(row["fid"] is None and "lpips" not in row["metrics"] for row in report["rows"])
    assert all(row["fid_tf"] is None and row["kid"] is None for row in report["rows"])


def test_scores_match_a_direct_computation(run: dict) -> None:
    from msgen.api import MultiSourceGenerator

    model = MultiSourceGenerator.from_checkpoint(run["checkpoint"])
    data = model.config.data
    from msgen.training.data import open_folder

    folder = open_folder(data, SIZE)
    names = folder.identities[sorted(folder.identities)[0]]
    dataset = TupleDataset(folder, [(names[:2], names[2])])
    [result] = score_methods([Method("model", lambda b: model.generate_batch(b).image)], dataset, [2])
    item = dataset[(0, 2)]
    from msgen.evaluation import to_uint8
    from msgen.pose import with_pose_inputs

    batch = with_pose_inputs({k: (v[None] if torch.is_tensor(v) else [v]) for k, v in item.items()} | {"valid": None},
                             SIZE)
    fake = to_uint8(model.generate_batch(batch).image[0])
    assert result.per_tuple["ssim_256"][0] == pytest.approx(ssim(fake, to_uint8(item["target"])))
    warped = warp_baseline(batch)
    assert warped.shape == (1, 3, *SIZE) and warped.min() >= -1 - 1e-5 and warped.max() <= 1 + 1e-5


def test_cli_errors_are_one_line(run: dict, tmp_path, capsys) -> None:
    assert evaluate.main(["--data", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("error: --data")
    assert evaluate.main(["--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert capsys.readouterr().err.startswith("error: --checkpoint: file not found")


def test_every_tuple_names_its_person_and_the_table_its_persons(run: dict, tmp_path, capsys) -> None:
    from msgen.data.folder import market_identity

    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", str(run["checkpoint"]), "--sources", "1", "--max-tuples", "6",
                          "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "evaluation.json").read_text())
    persons = report["tuple_persons"]
    assert persons == [market_identity(names[-1]) for names in report["tuple_names"]]  # the synthetic set's rule
    assert all(market_identity(name) == person for names, person in zip(report["tuple_names"], persons) for name in names)
    count = len(set(persons))
    for row in report["rows"]:
        assert all(summary["persons"] == count for summary in row["metrics"].values())
    assert f"Each M rests on: M = 1: 6 tuples of {count} persons." in printed
    assert "interval over persons" in printed


def _evaluation_json(path, names, persons, scores) -> str:
    report = {"tuple_names": names, "per_tuple": {"model": {"1": {"mask_ssim": scores}}}}
    if persons is not None:
        report["tuple_persons"] = persons
    path.write_text(json.dumps(report))
    return str(path)


def test_compare_resamples_persons_and_refuses_other_tuples(tmp_path, capsys) -> None:
    from msgen.evaluation import paired_difference

    rng = np.random.default_rng(5)
    names = [[f"{p:04d}_a.png", f"{p:04d}_{k}.png"] for p in range(4) for k in range(3)]
    persons = [f"{p:04d}" for p in range(4) for _ in range(3)]
    x, y = rng.uniform(size=12).tolist(), rng.uniform(size=12).tolist()
    a = _evaluation_json(tmp_path / "a.json", names, persons, x)
    b = _evaluation_json(tmp_path / "b.json", names, persons, y)
    assert evaluate.main(["compare", a, b]) == 0
    printed = capsys.readouterr().out
    d = paired_difference(np.array(x), np.array(y), persons=persons)
    assert "12 paired tuples of 4 persons; intervals resample persons" in printed
    assert f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]" in printed
    # A file from before tuple_persons beside one that names them: the same tuples are the same
    # persons, so the intervals still resample persons (the output says whose names it took).
    old = _evaluation_json(tmp_path / "old.json", names, None, y)
    assert evaluate.main(["compare", old, a]) == 0
    printed = capsys.readouterr().out
    assert f"of 4 persons (as {a} names them; {old} was written before tuple_persons)" in printed
    assert f"{-d['mean']:+.4f} [{-d['high']:+.4f}, {-d['low']:+.4f}]" in printed
    # Two such files: tuple-level intervals, and the output says so.
    assert evaluate.main(["compare", old, old]) == 0
    assert f"intervals over tuples: neither {old} nor {old} names persons" in capsys.readouterr().out
    other = _evaluation_json(tmp_path / "other.json", names[::-1], persons[::-1], y)
    assert evaluate.main(["compare", a, other]) == 2
    assert "scored different test tuples" in capsys.readouterr().err
    renamed = _evaluation_json(tmp_path / "renamed.json", names, [p + "x" for p in persons], y)
    assert evaluate.main(["compare", a, renamed]) == 2
    assert "name different persons for the same tuples" in capsys.readouterr().err


def test_market_style_folder_on_its_official_split(run: dict, stand_ins, tmp_path, capsys) -> None:
    """Market-named images + the public files' format -> prepare --official -> every column."""
    from msgen.data import prepare
    from msgen.data.synthetic import generate_synthetic
    from msgen.pose import read_annotations, write_annotations

    source = generate_synthetic(tmp_path / "s", identities=8, images_per_identity=4, size=(128, 64), seed=3)
    renamed: dict[str, dict] = {"train": {}, "test": {}}
    for side in renamed:  # the releases ship train/ and test/ image folders apart
        (tmp_path / side).mkdir()
    for index, (name, kp) in enumerate(sorted(read_annotations(source / "annotation.csv").items())):
        person = int(name.split("_")[0])
        side = "train" if person < 5 else "test"
        new = f"{person + 1:04d}_c{index % 6 + 1}s1_{index:06d}_01.png"
        (tmp_path / side / new).write_bytes((source / "images" / name).read_bytes())
        renamed[side][new] = kp
    for side, rows in renamed.items():
        write_annotations(tmp_path / f"market-annotation-{side}.csv", rows)
    test_names = sorted(renamed["test"])
    pairs = [(a, b) for a in test_names for b in test_names if a != b and a[:4] == b[:4]][::2]
    (tmp_path / "market-pairs-test.csv").write_text("from,to\n" + "".join(f"{a},{b}\n" for a, b in pairs))
    out = tmp_path / "market"
    files = [str(tmp_path / f) for f in ("market-annotation-train.csv", "market-annotation-test.csv", "market-pairs-test.csv")]
    assert prepare.main(["--dataset", "market", "--out", str(out), "--images", str(tmp_path / "train"),
                         str(tmp_path / "test"), "--official", *files,
                         "--num-sources", "2"]) == 0
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(run["checkpoint"]), "--data", str(out), "--sources", "1", "2",
                          "--resize", "--out", str(tmp_path / "eval"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "unavailable" not in printed and "market-pairs-test.csv" in printed
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    # M = 1 and 2 score the same tuples: every pair here has a second source, its own source first.
    assert report["num_tuples"] == len(pairs)
    assert [[names[0], names[-1]] for names in report["tuple_names"]] == [list(p) for p in pairs]
    assert report["real_set"] == f"{len(renamed['train'])} training images"


def test_warp_baseline_on_known_warps() -> None:
    torch.manual_seed(0)
    B, M, P, H, W = 1, 2, 10, 16, 12
    sources = torch.rand(B, M, 3, H, W) * 2 - 1
    identity = torch.tensor([[1.0, 0, 0], [0, 1, 0]])
    theta = identity.expand(B, M, P, 2, 3).clone()
    masks = torch.zeros(B, M, P, H, W)
    masks[:, :, 0] = 1  # the torso part: whole image, identity warp
    out = warp_baseline({"sources": sources, "theta": theta, "part_masks": masks, "valid": None})
    assert torch.allclose(out, sources.mean(1), atol=1e-5)  # both sources cover every pixel: their average
    # Source 1 padded away (valid False): the result is source 0 alone.
    valid = torch.tensor([[True, False]])
    out = warp_baseline({"sources": sources, "theta": theta, "part_masks": masks, "valid": valid})
    assert torch.allclose(out, sources[:, 0], atol=1e-5)
    # Every warp lands outside its source: no coverage, so the mean of the unwarped sources, not black.
    theta[..., 0, 2] = 1000.0
    out = warp_baseline({"sources": sources, "theta": theta, "part_masks": masks, "valid": None})
    assert torch.allclose(out, sources.mean(1), atol=1e-5)
    theta[..., 0, 2] = 0.0
    theta[:, 0, 0, 0, 2] = 1000.0  # only source 0 misses: source 1 alone
    out = warp_baseline({"sources": sources, "theta": theta, "part_masks": masks, "valid": None})
    assert torch.allclose(out, sources[:, 1], atol=1e-5)
