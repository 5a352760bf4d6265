"""One full training step, reference ops vs fast ops: time, where it goes, and the loader beside it.

A step is ``msgen.training.step.TrainingStep``, exactly what training runs: batch (images and
keypoints) to the device, pose tensors built there, G forward, D step (real and detached fake in
one call), G step (L_M-GAN + lambda L_NN), both Adam steps.

Cases (``--case``):
- "market": the "market" model (128x64, 6 levels, width 1), batch 16, M = 5: PERFORMANCE.md's
  target shape (a GPU case; about a minute a step on a 2-core CPU);
- "market-width": the same model at batch 2, M = 2, which a CPU can time;
- "synthetic": the training default (64x32, 5 levels, width 0.125, pixel NN loss), batch 8, M = 2;
- "synthetic-small": the "synthetic-small" model (128x64, width 0.125), batch 4, M = 2;
- "tiny": 32x16, 4 levels, width 1/16 (CI's smoke run).
The VGG-19 of the NN loss gets random weights (weights do not change the time; none ship).

As a script (interleaved rounds: reference step, fast step, reference step, ...; medians):
    python benchmarks/bench_train_step.py --case synthetic --rounds 15 --workers 2
prints both step times, the fast/reference ratio, peak memory, the split of a step into data
(host-to-device copy), pose, forward, backward and optimiser (a separate profiled pass that
synchronises between phases), and the loader's samples/s over a synthetic folder beside the
step's samples/s, so one sees whether the data or the model limits training.
Under pytest (``pytest benchmarks/ --benchmark-only``): one benchmark times the fast and the
reference step interleaved, the "synthetic" case on a CPU and "market" on a GPU;
``--benchmark-disable`` runs the tiny case once.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import device_name, synchronized  # noqa: E402
from pose_inputs import random_poses  # noqa: E402

from msgen.data import collate_tuples  # noqa: E402
from msgen.models import (  # noqa: E402
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
    LossConfig,
    NearestNeighbourLoss,
    preset,
)
from msgen.training.config import SYNTHETIC_MODEL  # noqa: E402
from msgen.training.step import PHASES, TrainingStep  # noqa: E402


@dataclass(frozen=True)
class StepCase:
    name: str
    generator: GeneratorConfig
    discriminator: DiscriminatorConfig
    loss: LossConfig
    batch: int
    sources: int


def step_case(name: str) -> StepCase:
    if name == "tiny":
        tiny = GeneratorConfig(image_size=(32, 16), levels=4, width=1 / 16)
        return StepCase("tiny 32x16 B2 M2", tiny, DiscriminatorConfig(width=1 / 16), LossConfig("pixel"), 2, 2)
    if name in ("market", "market-width"):
        config = preset("market")
        batch, sources = (16, 5) if name == "market" else (2, 2)
        return StepCase(f"market 128x64 B{batch} M{sources}", config.generator, config.discriminator, config.loss,
                        batch, sources)
    if name == "synthetic":
        m = SYNTHETIC_MODEL
        return StepCase("synthetic default 64x32 B8 M2", m.generator, m.discriminator, m.loss, 8, 2)
    if name == "synthetic-small":
        config = preset("synthetic-small")
        return StepCase("synthetic-small 128x64 B4 M2", config.generator, config.discriminator, config.loss, 4, 2)
    raise ValueError(f"unknown case {name!r}")


def random_batch(case: StepCase) -> dict:
    """A collated batch as the loader gives it (images and keypoints, on the host)."""
    B, M, (H, W) = case.batch, case.sources, case.generator.image_size
    g = torch.Generator().manual_seed(0)
    kp = random_poses(B * (M + 1), (H, W), g).view(B, M + 1, 18, 2)
    items = [{"sources": torch.rand(M, 3, H, W, generator=g) * 2 - 1, "source_kp": kp[b, :M],
              "target": torch.rand(3, H, W, generator=g) * 2 - 1, "target_kp": kp[b, M], "names": []}
             for b in range(B)]
    batch = collate_tuples(items)
    if torch.cuda.is_available():
        batch = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return batch


def random_vgg19(path: Path) -> Path:
    """A state dict with torchvision's names for relu1_2's layers, random values (timing only)."""
    torch.save({"features.0.weight": torch.randn(64, 3, 3, 3) * 0.1, "features.0.bias": torch.zeros(64),
                "features.2.weight": torch.randn(64, 64, 3, 3) * 0.03, "features.2.bias": torch.zeros(64)}, path)
    return path


def make_step(case: StepCase, ops: str, device: torch.device, vgg_weights: Path) -> TrainingStep:
    torch.manual_seed(0)
    G = Generator(replace(case.generator, ops=ops)).to(device)
    D = Discriminator(case.discriminator).to(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns which features it uses: random ones, on purpose
        loss = replace(case.loss, vgg_weights=str(vgg_weights)) if case.loss.features == "vgg19" else case.loss
        nn_loss = NearestNeighbourLoss.from_config(loss).to(device)
    adam = dict(lr=2e-4, betas=(0.5, 0.999))
    return TrainingStep(G, D, nn_loss, torch.optim.Adam(G.parameters(), **adam), torch.optim.Adam(D.parameters(), **adam),
                        image_size=case.generator.image_size, lambda_nn=case.loss.lambda_nn, device=device)


def peak_memory(run, device: torch.device) -> int | None:
    """CUDA allocator peak of one call (None on a CPU, where the process's RSS says little)."""
    if device.type != "cuda":
        run()
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    run()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device)


def phase_profile(step: TrainingStep, batch: dict, device: torch.device, steps: int) -> dict[str, float]:
    """Median seconds per step of each phase, synchronising between phases."""
    times: dict[str, float] = defaultdict(float)
    per_step: dict[str, list[float]] = defaultdict(list)

    @contextlib.contextmanager
    def timer(name: str):
        synchronized(lambda: None, device)()
        start = time.perf_counter()
        yield
        synchronized(lambda: None, device)()
        times[name] += time.perf_counter() - start

    step.phase_timer = timer
    try:
        for _ in range(steps):
            times.clear()
            step(batch)
            for name in PHASES:
                per_step[name].append(times[name])
    finally:
        step.phase_timer = None
    return {name: statistics.median(per_step[name]) for name in PHASES}


def loader_rate(size: tuple[int, int], batch: int, sources: int, workers: int, batches: int) -> float:
    """Samples/s of msgen's loader (TupleDataset + collate, images and keypoints) over a synthetic folder."""
    from msgen.data import PoseImageFolder, TupleDataset, sample_tuples, tuple_loader
    from msgen.data.synthetic import generate_synthetic

    identities = max(8, batch * batches // 4)
    size = (max(size[0], 64), max(size[1], 32))  # the generator's smallest
    with tempfile.TemporaryDirectory() as tmp:
        out = generate_synthetic(Path(tmp), identities, sources + 2, size, 0, 1)
        folder = PoseImageFolder(out / "images", out / "annotation.csv")
        tuples = sample_tuples(folder.identities, sources, seed=0, max_tuples=None)
        loader = tuple_loader(TupleDataset(folder, tuples), batch, num_sources=sources, num_workers=workers)
        iterator = iter(loader)
        next(iterator)  # workers started
        start, count = time.perf_counter(), 0
        for _ in range(batches):
            try:
                count += next(iterator)["sources"].shape[0]
            except StopIteration:
                break
        return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="synthetic",
                        choices=["tiny", "synthetic", "synthetic-small", "market-width", "market"],
                        help="model and batch shape (see the module docstring); default synthetic")
    parser.add_argument("--rounds", type=int, default=11, help="interleaved rounds, one step of each ops per round")
    parser.add_argument("--profile-steps", type=int, default=3, help="steps of the per-phase profile")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the loader measurement")
    parser.add_argument("--loader-batches", type=int, default=20,
                        help="batches the loader measurement reads (0: skip it)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="device of the step; default cuda when there is one")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    case = step_case(args.case)
    print(f"{case.name} on {device_name(device)}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    batch = random_batch(case)
    with tempfile.TemporaryDirectory() as tmp:
        weights = random_vgg19(Path(tmp) / "vgg19.pth")
        steps = {ops: make_step(case, ops, device, weights) for ops in ("reference", "fast")}
    times: dict[str, list[float]] = {ops: [] for ops in steps}
    cpu_times: dict[str, list[float]] = {ops: [] for ops in steps}
    peaks = {ops: peak_memory(lambda s=s: s(batch), device) for ops, s in steps.items()}  # also warms up
    for _ in range(args.rounds):
        for ops, step in steps.items():
            run = synchronized(lambda step=step: step(batch), device)
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            times[ops].append(time.perf_counter() - start)
            cpu_times[ops].append(time.process_time() - cpu_start)
    medians = {ops: statistics.median(t) for ops, t in times.items()}
    cpu_medians = {ops: statistics.median(t) for ops, t in cpu_times.items()}
    for ops, median in medians.items():
        peak = f", peak {peaks[ops] / 2**20:.0f} MiB" if peaks[ops] is not None else ""
        print(f"  {ops:9s} median {median * 1e3:8.1f} ms wall over {args.rounds} interleaved rounds "
              f"(min {min(times[ops]) * 1e3:.1f}, max {max(times[ops]) * 1e3:.1f}), "
              f"{cpu_medians[ops] * 1e3:.1f} ms process CPU time{peak}; {case.batch / median:.1f} samples/s")
    print(f"  fast is {medians['reference'] / medians['fast']:.2f}x the reference step (wall), "
          f"{cpu_medians['reference'] / cpu_medians['fast']:.2f}x (process CPU time: on a shared machine the "
          "steadier measure; with one thread it is the step's work)")
    for ops, step in steps.items():
        split = phase_profile(step, batch, device, args.profile_steps)
        total = sum(split.values())
        print(f"  {ops:9s} split: " + ", ".join(f"{name} {t * 1e3:.1f} ms ({t / total:.0%})" for name, t in split.items()))
    if args.loader_batches:
        rate = loader_rate(case.generator.image_size, case.batch, case.sources, args.workers, args.loader_batches)
        step_rate = case.batch / medians["fast"]
        limit = "the data" if rate < step_rate else "the model"
        print(f"  loader {rate:.0f} samples/s with {args.workers} workers | fast step {step_rate:.0f} samples/s "
              f"-> {limit} limits training")
    return 0


# -- pytest-benchmark: `pytest benchmarks/ --benchmark-only` ---------------------------------------


def _pytest_case(device: torch.device, smoke: bool) -> StepCase:
    if smoke:
        return step_case("tiny")
    return step_case("market" if device.type == "cuda" else "synthetic")


try:
    import pytest
except ImportError:  # the script needs no pytest
    pytest = None

if pytest is not None:
    from conftest import record, rounds, smoke_run
    from timing import Interleaved

    def test_train_step(benchmark, bench_device, request, tmp_path) -> None:
        """The fast and the reference step of one case, interleaved (timing.py); on a CPU the
        training default ("synthetic"), on a GPU PERFORMANCE.md's market case."""
        smoke = smoke_run(request.config)
        case = _pytest_case(bench_device, smoke)
        weights = random_vgg19(tmp_path / "vgg19.pth")
        steps = {ops: make_step(case, ops, bench_device, weights) for ops in ("fast", "reference")}
        batch = random_batch(case)
        # The first call of each is also the warm-up: allocator, Adam state, Triton's compilation.
        peaks = {} if smoke else {ops: peak_memory(lambda s=s: s(batch), bench_device) for ops, s in steps.items()}
        timer = Interleaved({ops: (lambda s=s: s(batch)) for ops, s in steps.items()}, bench_device)
        n_rounds = rounds(bench_device, cpu=15)
        medians = timer.run(benchmark, n_rounds)
        benchmark.group = "train_step"
        record(benchmark, {
            "op": "train_step",
            "case": case.name + (" smoke" if smoke else ""),
            "impls": ["fast", "reference"],
            "medians_s": medians,
            "rounds": 1 if smoke else n_rounds,
            "calls": timer.calls,
            "peak_bytes": peaks if bench_device.type == "cuda" else None,
            "notes": ["train_step: fast = part_warp and fused_attention on impl='auto' (on a CPU the "
                      "warp's extension and the fusion's reference), reference = both references"],
        })


if __name__ == "__main__":
    sys.exit(main())
