"""Training on a real-like folder: the banner's persons per M and what was dropped, best.pt chosen on
the validation persons, and --init-from an exported generator (.safetensors)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import msgen.training.loop as loop
from msgen.data.folder import market_identity
from msgen.data.split import SPLIT_FILE, read_split
from msgen.data import prepare
from msgen.data.synthetic import generate_synthetic
from msgen.pose import read_annotations, write_annotations
from msgen.training import distributed
from msgen.training.cli import main, parse_args

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "docs" / "models" / "synthetic-full.safetensors"
pytestmark = pytest.mark.filterwarnings("ignore::msgen.models.losses.FeatureSpaceWarning")


@pytest.fixture(scope="module")
def uneven_data(tmp_path_factory) -> Path:
    """16 persons at 64x32 holding 1, 2, 3 or 4 images (a quarter each), prepared: test, validation
    and training persons in split.json, the folder's rules in summary.json."""
    root = tmp_path_factory.mktemp("uneven")
    data = generate_synthetic(root / "data", identities=16, images_per_identity=4, size=(64, 32), seed=5)
    annotations = read_annotations(data / "annotation.csv")
    by_person: dict[str, list[str]] = {}
    for name in sorted(annotations):
        by_person.setdefault(market_identity(name), []).append(name)
    keep = {n: annotations[n] for p, names in by_person.items() for n in names[: 1 + int(p) % 4]}
    write_annotations(data / "annotation.csv", keep)
    prepare.prepare("market", data, num_sources=2, test_fraction=0.25, validation_fraction=0.25, seed=1)
    return data


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--model.generator.image-size", "64,32", "--model.generator.levels", "3",
            "--model.generator.warp-levels", "2", "--data.root", str(data), "--data.eval-tuples", "4",
            "--data.sample-tuples", "2", "--batch-size", "2", "--data.workers", "0", "--out", str(out),
            "--device", "cpu", *extra]


def _counts(data: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in read_annotations(data / "annotation.csv"):
        counts[market_identity(name)] = counts.get(market_identity(name), 0) + 1
    return counts


def test_the_banner_says_persons_per_m_and_who_was_dropped(uneven_data, tmp_path, capsys):
    assert main(_args(uneven_data, tmp_path / "run", "--num-sources", "1,2", "--steps", "1")) == 0
    out = capsys.readouterr().out
    split = read_split(uneven_data / SPLIT_FILE)
    counts = _counts(uneven_data)
    train = [p for p in split.train_persons if p in counts]
    serving = {m: [p for p in train if counts[p] >= m + 1] for m in (1, 2)}
    images = {m: sum(counts[p] for p in serving[m]) for m in (1, 2)}
    assert (f"training persons by M: M=1: {len(serving[1])} persons ({images[1]} images), "
            f"M=2: {len(serving[2])} persons ({images[2]} images)") in out
    single = len(train) - len(serving[1])
    assert single and f"dropped {single} training persons with fewer than 2 images" in out
    assert "data rules: identity market, framing market" in out
    assert "tuples per M M=1: 50%, M=2: 50%" in out


def test_best_pt_is_chosen_on_validation_persons_only(uneven_data, tmp_path, monkeypatch):
    scored: list[set[str]] = []
    real_evaluate = loop.evaluate

    def recording(generator, dataset, *args, **kwargs):
        scored.append({market_identity(name) for sources, target in dataset.tuples for name in (*sources, target)})
        return real_evaluate(generator, dataset, *args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", recording)
    out = tmp_path / "run"
    assert main(_args(uneven_data, out, "--num-sources", "1,2", "--steps", "2", "--eval-every", "1")) == 0
    split = read_split(uneven_data / SPLIT_FILE)
    assert len(scored) == 4  # M = 1 and M = 2 at each of the 2 evaluations
    assert set().union(*scored) <= set(split.validation_persons)
    assert not set().union(*scored) & set(split.test_persons)
    best = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert best["config"]["data"]["framing"] == "market" and best["config"]["data"]["identity"] == "market"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="docs/models/synthetic-full.safetensors is not in this checkout")
def test_init_from_an_exported_generator(uneven_data, tmp_path, capsys):
    out = tmp_path / "tuned"
    invocation, _ = parse_args(["--init-from", str(SHIPPED), "--data.root", str(uneven_data), "--data.workers", "0",
                                "--num-sources", "1,2", "--steps", "1", "--out", str(out), "--device", "cpu"])
    assert invocation.init_from == SHIPPED
    state = distributed.setup("cpu")
    trainer = loop.Trainer(invocation.config, state, init_from=invocation.init_from)
    shipped = load_file(str(SHIPPED))
    assert shipped.keys() == trainer.G.state_dict().keys()
    assert all(torch.equal(shipped[k], v) for k, v in trainer.G.state_dict().items())
    trainer.monitor.close()
    # And through the command line, to the end of a step.
    assert main(["--init-from", str(SHIPPED), "--data.root", str(uneven_data), "--data.workers", "0",
                 "--num-sources", "1,2", "--steps", "1", "--out", str(tmp_path / "cli"), "--device", "cpu"]) == 0
    assert "is an exported generator: G starts from its weights" in capsys.readouterr().out


def test_init_from_a_file_that_is_not_a_generator_says_so(tmp_path, capsys):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(SystemExit):
        parse_args(["--init-from", str(bad)])
    assert "x.safetensors is not a safetensors file" in capsys.readouterr().err
