"""One full training step, reference ops vs fast ops: time and peak memory.

A step is what msgen's training loop does per batch: G forward; D forward on the real and the
detached generated image, D loss, D backward, D Adam step; D forward on the generated image,
G loss (L_M-GAN + 0.01 L_NN on VGG-19 relu1_2), G backward, G Adam step.

Cases (one benchmark.group each, with extra_info "impl" = the ops switch and "peak_bytes"):
- GPU: the "market" model (128x64, 6 levels, width 1), batch 16, M = 5 (PERFORMANCE.md's target).
- CPU, timed: the "synthetic-small" model (width 0.125, 128x64), batch 4, M = 2 (what a CPU
  trains; the GPU case takes about 40 s a step on a 2-core CPU).
- --benchmark-disable (CI's smoke run): a tiny model (32x16, 4 levels, width 1/16), batch 2, M = 2.
The VGG-19 of the NN loss gets random weights written to a temporary file: weights do not change
the time, and no pretrained ones are available offline. peak_bytes is the CUDA allocator's peak on
a GPU and the process's peak resident set on Linux CPUs (VmHWM, reset before the step).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
from conftest import device_name, smoke_run, synchronized

from msgen.models import (
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
    NearestNeighbourLoss,
    discriminator_loss,
    generator_loss,
    preset,
)


@dataclass(frozen=True)
class StepCase:
    name: str
    generator: GeneratorConfig
    discriminator: DiscriminatorConfig
    batch: int
    sources: int


def step_case(device: torch.device, smoke: bool) -> StepCase:
    if smoke:
        tiny = GeneratorConfig(image_size=(32, 16), levels=4, width=1 / 16)
        return StepCase("tiny 32x16 B2 M2", tiny, DiscriminatorConfig(width=1 / 16), 2, 2)
    if device.type == "cuda":
        config = preset("market")
        return StepCase("market 128x64 B16 M5", config.generator, config.discriminator, 16, 5)
    config = preset("synthetic-small")
    return StepCase("synthetic-small 128x64 B4 M2", config.generator, config.discriminator, 4, 2)


def random_batch(case: StepCase, device: torch.device) -> dict[str, torch.Tensor]:
    """A batch in msgen.data's format: near-identity part affines and soft part masks."""
    B, M, (H, W) = case.batch, case.sources, case.generator.image_size
    g = torch.Generator().manual_seed(0)
    theta = torch.eye(2, 3).expand(B, M, 10, 2, 3).clone()
    theta[..., 2] += torch.randn(B, M, 10, 2, generator=g) * 4
    batch = {
        "sources": torch.rand(B, M, 3, H, W, generator=g) * 2 - 1,
        "source_heatmaps": torch.rand(B, M, 18, H, W, generator=g),
        "target": torch.rand(B, 3, H, W, generator=g) * 2 - 1,
        "target_heatmap": torch.rand(B, 18, H, W, generator=g),
        "theta": theta,
        "part_masks": torch.rand(B, M, 10, H, W, generator=g),
        "valid": torch.ones(B, M, dtype=torch.bool),
    }
    return {key: value.to(device) for key, value in batch.items()}


def random_vgg19(path: Path) -> Path:
    """A state dict with torchvision's names for relu1_2's layers, random values (timing only)."""
    torch.save(
        {
            "features.0.weight": torch.randn(64, 3, 3, 3) * 0.1,
            "features.0.bias": torch.zeros(64),
            "features.2.weight": torch.randn(64, 64, 3, 3) * 0.03,
            "features.2.bias": torch.zeros(64),
        },
        path,
    )
    return path


def peak_resident_bytes_reset() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set


def peak_resident_bytes() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) * 1024


def measure_peak(step, device: torch.device) -> int | None:
    """Peak memory of one call of step: CUDA allocator peak, or Linux peak RSS; None elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    if not Path("/proc/self/clear_refs").exists():
        step()
        return None
    peak_resident_bytes_reset()
    step()
    return peak_resident_bytes()


def make_step(case: StepCase, ops: str, device: torch.device, vgg_weights: Path):
    torch.manual_seed(0)
    G = Generator(replace(case.generator, ops=ops)).to(device)
    D = Discriminator(case.discriminator).to(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns which features it uses: random ones, on purpose
        reconstruction = NearestNeighbourLoss("vgg19", neighbourhood=3, weights=vgg_weights).to(
            device
        )
    g_opt = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    batch = random_batch(case, device)
    condition = (batch["target_heatmap"], batch["sources"], batch["source_heatmaps"])

    def step() -> None:
        generated = G.forward_batch(batch).image
        d_opt.zero_grad(set_to_none=True)
        d_loss = discriminator_loss(
            D(batch["target"], *condition), D(generated.detach(), *condition), batch["valid"]
        )
        d_loss.backward()
        d_opt.step()
        g_opt.zero_grad(set_to_none=True)
        losses = generator_loss(
            D(generated, *condition), generated, batch["target"], reconstruction, batch["valid"]
        )
        losses.total.backward()
        g_opt.step()

    return synchronized(step, device)


@pytest.mark.parametrize("ops", ["reference", "fast"])
def test_train_step(benchmark, bench_device, request, tmp_path, ops: str) -> None:
    case = step_case(bench_device, smoke_run(request.config))
    step = make_step(case, ops, bench_device, random_vgg19(tmp_path / "vgg19.pth"))
    step()  # warm-up: allocator, Adam state, kernel autotuning
    peak = measure_peak(step, bench_device)
    benchmark.group = f"train step {case.name}"
    benchmark(step)
    benchmark.extra_info.update(
        impl=ops, peak_bytes=peak, device=device_name(bench_device), torch=torch.__version__
    )
