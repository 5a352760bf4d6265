"""The training loop: one D step and one G step per batch (METHOD.md, "Discriminator and losses").

Per step, on a batch of tuples truncated to the step's M:
1. G generates the target from the M sources (through DDP when there are several processes);
2. D step: D scores the real target and the detached generated image against every source,
   ``discriminator_loss``, Adam;
3. G step: D (frozen, called outside DDP so its gradients are neither computed nor reduced) scores
   the generated image again, ``generator_loss`` = L_M-GAN + lambda * L_NN, Adam.
The four losses are averaged over the processes and checked: a non-finite one stops the run
(``NonFiniteLossError``) before anything of that state is written.

Rank 0 logs, draws samples, evaluates and writes checkpoints; the other ranks wait at a barrier.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from msgen.checkpoint import (
    CheckpointManager,
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    load_module_state,
    restore_rng,
)
from msgen.data import collate_tuples
from msgen.models import (
    Discriminator,
    Generator,
    NearestNeighbourLoss,
    VGGWeightsNotFound,
    discriminator_loss,
    generator_loss,
)
from msgen.training import distributed
from msgen.training.config import TrainConfig, config_to_dict
from msgen.training.data import build_run_data, to_device
from msgen.training.evaluation import evaluate
from msgen.training.monitor import RunMonitor
from msgen.training.sampler import StepBatchSampler
from msgen.training.visuals import sample_grid

LOSS_NAMES = ("loss_d", "loss_g_adv", "loss_nn", "loss_g")


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; the message names the step, the loss and the last good checkpoint."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C: the message says how to continue from the last checkpoint."""


class SetupError(ValueError):
    """The configuration cannot run here (e.g. bf16 without a GPU, no VGG-19 weights)."""


@dataclass
class TrainResult:
    """Where a finished run stands."""

    out: Path
    step: int
    last_checkpoint: Path | None
    metrics: dict[str, float] = field(default_factory=dict)


def train(config: TrainConfig, resume: str | Path | None = None, init_from: str | Path | None = None) -> TrainResult:
    """Train as ``config`` says. ``resume`` continues a checkpoint's run exactly (step, optimisers,
    RNG states, data order); ``init_from`` starts a new run from a checkpoint's weights."""
    try:
        state = distributed.setup(config.device)
    except ValueError as error:
        raise SetupError(str(error)) from error
    try:
        return Trainer(config, state, resume=resume, init_from=init_from).run()
    finally:
        distributed.teardown(state)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_out(config: TrainConfig) -> str:
    return f"runs/{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def _count(module: nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}M parameters"


class Trainer:
    """Holds the models, optimisers, data and outputs of one run; ``run()`` trains."""

    def __init__(self, config: TrainConfig, state: distributed.Distributed,
                 resume: str | Path | None = None, init_from: str | Path | None = None) -> None:
        self.config = config
        self.dist = state
        self.device = state.device
        if config.precision == "bf16" and self.device.type != "cuda":
            raise SetupError(
                f"--precision bf16 autocasts on a CUDA GPU only, and this run is on {self.device}; "
                "use --precision fp32 (the default) on a CPU"
            )
        self.out = Path(distributed.broadcast_object(state, config.out or default_out(config)))
        checkpoint = load_checkpoint(resume) if resume is not None else None
        self.start_step = int(checkpoint["step"]) if checkpoint else 0
        if self.start_step > config.steps:
            raise SetupError(f"{resume} is at step {self.start_step}, beyond steps={config.steps}; "
                             "pass a larger --steps to continue it")

        seed_everything(config.seed)
        self.G = Generator(config.model.generator).to(self.device)
        self.D = Discriminator(config.model.discriminator).to(self.device)
        try:
            self.nn_loss = NearestNeighbourLoss.from_config(config.model.loss).to(self.device)
        except VGGWeightsNotFound as error:
            raise SetupError(f"{error} (on the command line: --model.loss.features pixel)") from error
        # Created once the configuration is known to run, so a refused run leaves no folder behind.
        self.monitor = RunMonitor(self.out, config.steps, self.start_step, enabled=state.is_main)
        adam = dict(lr=config.lr, betas=tuple(config.betas))
        self.optim_g = torch.optim.Adam(self.G.parameters(), **adam)
        self.optim_d = torch.optim.Adam(self.D.parameters(), **adam)
        self.checkpoints = CheckpointManager(self.out / "checkpoints", config.keep_last)
        self.metrics: dict[str, float] = {}
        if checkpoint is not None:
            self._load(checkpoint, resume, full=True)
        elif init_from is not None:
            self._load(load_checkpoint(init_from), init_from, full=False)

        self.data = build_run_data(config.data, tuple(config.model.generator.image_size),
                                   config.max_sources, state, log=self.monitor.print)
        sampler = StepBatchSampler(len(self.data.train), config.batch_size, config.steps, config.num_sources,
                                   config.seed, self.start_step, state.rank, state.world_size)
        self.loader = torch.utils.data.DataLoader(
            self.data.train, batch_sampler=sampler, collate_fn=collate_tuples,
            num_workers=config.data.workers, pin_memory=self.device.type == "cuda",
            # Its own generator: creating the iterator then leaves the global torch RNG untouched,
            # so a resumed run's RNG continues exactly where the checkpoint left it.
            generator=torch.Generator().manual_seed(config.seed),
        )
        count = min(config.data.sample_tuples, len(self.data.held_out))
        self.sample_batch = collate_tuples([self.data.held_out[(i, config.max_sources)] for i in range(count)])

        if config.compile:
            # In place, so state_dict keys stay those of the plain modules.
            self.G.compile()
            self.D.compile()
        self.g_train: nn.Module = self.G
        self.d_train: nn.Module = self.D
        if state.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_train = DistributedDataParallel(self.G, device_ids=ids)
            self.d_train = DistributedDataParallel(self.D, device_ids=ids)

    def _load(self, checkpoint: dict[str, Any], path: str | Path, full: bool) -> None:
        load_module_state(self.G, checkpoint["generator"], "generator", path)
        load_module_state(self.D, checkpoint["discriminator"], "discriminator", path)
        if not full:
            return
        self.optim_g.load_state_dict(checkpoint["optim_g"])
        self.optim_d.load_state_dict(checkpoint["optim_d"])
        self.checkpoints.best_metric = checkpoint["best_metric"]
        self.metrics = dict(checkpoint["metrics"])
        self._resume_rng = checkpoint["rng"]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.config.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- one step -------------------------------------------------------------------------------

    def train_step(self, batch: dict[str, Tensor]) -> Tensor:
        """One D step and one G step; returns the (4,) losses of LOSS_NAMES, detached."""
        b = batch
        source_args = (b["sources"], b["source_heatmaps"])
        with self.autocast():
            fake = self.g_train(b["sources"], b["source_heatmaps"], b["target_heatmap"], b["theta"],
                                b["part_masks"], b["valid"]).image
            # Real and generated in one D call: one forward per backward, as DDP expects.
            both = self.d_train(torch.cat([b["target"], fake.detach()]), b["target_heatmap"].repeat(2, 1, 1, 1),
                                *(x.repeat(2, 1, 1, 1, 1) for x in source_args))
        real_logits, fake_logits = both.float().chunk(2)
        loss_d = discriminator_loss(real_logits, fake_logits, b["valid"])
        self.optim_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.optim_d.step()

        self.D.requires_grad_(False)
        with self.autocast():
            logits = self.D(fake, b["target_heatmap"], *source_args)
        losses = generator_loss(logits.float(), fake.float(), b["target"], self.nn_loss, b["valid"],
                                self.config.model.loss.lambda_nn)
        self.optim_g.zero_grad(set_to_none=True)
        losses.total.backward()
        self.optim_g.step()
        self.D.requires_grad_(True)
        return torch.stack([loss_d, losses.adversarial, losses.reconstruction, losses.total]).detach()

    def _checked(self, losses: Tensor, step: int) -> dict[str, float]:
        values = dict(zip(LOSS_NAMES, distributed.mean_over_ranks(self.dist, losses).tolist()))
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            last = latest_checkpoint(self.out / "checkpoints")
            kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been written yet"
            raise NonFiniteLossError(
                f"non-finite loss at step {step}: " + ", ".join(f"{n} = {values[n]}" for n in bad)
                + f". Nothing of this state was saved; {kept}. Lower --lr, or resume from the "
                "checkpoint with --precision fp32."
            )
        return values

    # -- periodic work --------------------------------------------------------------------------

    @torch.no_grad()
    def _sample(self, step: int) -> None:
        self.G.eval()
        batch = to_device(self.sample_batch, self.device)
        with self.autocast():
            out = self.G.forward_batch(batch)
        self.G.train()
        self.monitor.sample(step, sample_grid(self.sample_batch, out.image.float(), out.saliency.float()))

    def _evaluate(self, step: int) -> None:
        self.G.eval()
        self.metrics = evaluate(self.G, self.data.held_out, self.config.data.eval_tuples,
                                self.config.num_sources, self.config.batch_size, self.device, self.autocast)
        self.G.train()
        self.monitor.evaluation(step, self.metrics)

    def _checkpoint(self, step: int, evaluated: bool) -> None:
        distributed.barrier(self.dist)
        if self.dist.is_main:
            state = {
                "config": config_to_dict(self.config),
                "generator": self.G.state_dict(),
                "discriminator": self.D.state_dict(),
                "optim_g": self.optim_g.state_dict(),
                "optim_d": self.optim_d.state_dict(),
                "rng": capture_rng(),
                "metrics": dict(self.metrics),
            }
            metric = self.metrics.get("mask_ssim") if evaluated else None
            self.checkpoints.save(step, state, metric)
        distributed.barrier(self.dist)

    def _periodic(self, done: int) -> None:
        """Samples, evaluation and checkpoints due after step ``done`` (not counted in images/s)."""
        c = self.config
        sample = done % c.sample_every == 0 or done == c.steps
        evaluate = done % c.eval_every == 0
        save = done % (c.checkpoint_every or c.eval_every) == 0 or done == c.steps
        if not (sample or evaluate or save):
            return
        self.monitor.pause()
        if self.dist.is_main and sample:
            self._sample(done)
        if self.dist.is_main and evaluate:
            self._evaluate(done)
        if save:
            self._checkpoint(done, evaluate)
        self.monitor.resume()

    # -- the run --------------------------------------------------------------------------------

    def _banner(self) -> None:
        c, g = self.config, self.config.model.generator
        world = self.dist.world_size
        for line in (
            f"msgen.train: preset {c.preset}; {world} process(es) on {self.device}; precision {c.precision}; "
            f"ops {g.ops}; compile {c.compile}",
            f"  generator {g.image_size[0]}x{g.image_size[1]}, {g.levels} levels, width {g.width}, "
            f"variant {g.variant} ({_count(self.G)}); discriminator ({_count(self.D)})",
            f"  NOTE: the reconstruction loss compares {self.nn_loss.feature_space}",
            f"  data: {self.data.description}",
            f"  M per batch: {', '.join(map(str, c.num_sources))}; batch {c.batch_size} per process; "
            f"Adam lr {c.lr} betas {tuple(c.betas)}; lambda {c.model.loss.lambda_nn}",
            f"  steps {self.start_step} -> {c.steps}; outputs in {self.out}",
        ):
            self.monitor.print(line)

    def run(self) -> TrainResult:
        c = self.config
        self._banner()
        if self.start_step:
            restore_rng(self._resume_rng)
        window = torch.zeros(len(LOSS_NAMES), dtype=torch.float64)
        window_steps = 0
        self.monitor.start()
        try:
            for step, batch in enumerate(self.loader, start=self.start_step):
                num_sources = batch["sources"].shape[1]
                batch = to_device(batch, self.device)
                done = step + 1
                losses = self._checked(self.train_step(batch), done)
                window += torch.tensor(list(losses.values()), dtype=torch.float64)
                window_steps += 1
                self.monitor.step(c.batch_size * self.dist.world_size, losses)
                if done % c.log_every == 0:
                    means = dict(zip(LOSS_NAMES, (window / window_steps).tolist()))
                    self.monitor.log(done, {**means, "num_sources": num_sources})
                    window.zero_()
                    window_steps = 0
                self._periodic(done)
        except KeyboardInterrupt:
            last = latest_checkpoint(self.out / "checkpoints")
            raise TrainingInterrupted(
                f"interrupted; continue from {last} with: python -m msgen.train --resume auto --out {self.out}"
                if last else "interrupted before the first checkpoint"
            ) from None
        else:
            if self.dist.enabled:
                distributed.check_same_parameters(self.dist, {"generator": self.G, "discriminator": self.D})
                self.monitor.print(f"parameters identical on all {self.dist.world_size} processes")
        finally:
            self.monitor.close()
        last = latest_checkpoint(self.out / "checkpoints") if self.dist.is_main else None
        return TrainResult(self.out, c.steps, last, dict(self.metrics))
