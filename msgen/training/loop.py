"""The training loop: one D step and one G step per batch (METHOD.md, "Discriminator and losses").

Per step, on a batch of tuples truncated to the step's M:
1. G generates the target from the M sources (through DDP when there are several processes);
2. D step: D scores the real target and the detached generated image against every source,
   ``discriminator_loss``, Adam;
3. G step: D (frozen, called outside DDP so its gradients are neither computed nor reduced) scores
   the generated image again, ``generator_loss`` = L_M-GAN + lambda * L_NN, Adam.
The step body is ``msgen.training.step.TrainingStep`` (pose tensors built on the device, no host
sync). The four losses are summed on the device and read every log_every steps and before any
sample, evaluation or checkpoint, averaged over the processes and checked: a non-finite one stops
the run (``NonFiniteLossError``, naming the first bad step) before anything of that state is written.

Rank 0 logs, draws samples, evaluates and writes checkpoints; the other ranks wait at a barrier.

So a short run shows something at once, the first sample and the first checkpoint (``best.pt``
too) come after step 1; after that a checkpoint is written every ``checkpoint_every`` steps (or
evaluation) and whenever ``checkpoint_seconds`` of training passed without one. SIGINT (Ctrl-C) and
SIGTERM stop the run after the current step with a checkpoint (``TrainingInterrupted``, exit status
130 / 143; under torchrun SIGTERM, which torchrun passes on); a second signal stops at once.

Set-up errors (bad data, a checkpoint of another model, a configuration that cannot run here) raise
``SetupError`` before any output is written; an output folder the run created is removed again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import shutil
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from msgen.checkpoint import (
    BEST_NAME,
    CheckpointError,
    CheckpointManager,
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    load_module_state,
    remove_stale_temporaries,
    restore_rng,
)
from msgen.errors import UsageError
from msgen.data import collate_tuples, to_device
from msgen.models import Discriminator, FeatureSpaceWarning, Generator, NearestNeighbourLoss, VGGWeightsNotFound
from msgen.pose import with_pose_inputs
from msgen.training import distributed
from msgen.training.config import TrainConfig, config_to_dict
from msgen.training.data import build_run_data, ensure_synthetic, resolve_rules
from msgen.evaluation import evaluate
from msgen.training.monitor import RunMonitor
from msgen.training.sampler import StepBatchSampler, step_weights
from msgen.training.step import LOSS_NAMES, LossWindow, TrainingStep
from msgen.training.visuals import sample_grid


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; the message names the step, the loss and the last good checkpoint."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: the message says what was saved and how to continue.

    exit_code: 130 for SIGINT, 143 for SIGTERM (128 + the signal number, as a shell reports it)."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class SetupError(UsageError):
    """The run cannot start: bad data, an unusable checkpoint, a configuration that cannot run here
    (e.g. bf16 without a GPU, no VGG-19 weights). Raised before any output is written."""


# What a run's set-up raises for bad input: data files (missing, unreadable, malformed), checkpoints
# and configuration values. Anything else is a bug and keeps its traceback.
_SETUP_ERRORS = (ValueError, OSError, CheckpointError, KeyError)


def _ignore_sigint(worker_id: int) -> None:
    # Ctrl-C reaches the whole process group; a worker dying of it would fail the batch the
    # training process is waiting for, before the training process could save.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class DataError(UsageError):
    """An image or annotation that cannot be loaded, found while training (after the set-up)."""


def _batches(loader: torch.utils.data.DataLoader):
    """The loader's batches; a data file that fails to load becomes a DataError naming it (a
    worker's exception arrives as the same type with its traceback: its last line is the message)."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except (OSError, ValueError, KeyError) as error:
            lines = [line for line in str(error).splitlines() if line.strip()]
            raise DataError(lines[-1].split(": ", 1)[-1] if len(lines) > 1 else (lines or [repr(error)])[0]) from error
        yield batch


class _StopSignals:
    """While active, SIGINT and SIGTERM set ``received`` instead of raising mid-step, so the loop
    can finish the step and save; a second signal raises KeyboardInterrupt at once.

    Under torchrun only SIGTERM is caught (torchrun passes a stop to its processes as SIGTERM): with
    a Python SIGINT handler in the processes, one of two gloo processes aborted at exit ("terminate
    called without an active exception") in 2 to 3 of 8 runs, and in none of 8 without it."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.received: int | None = None
        self._signals = signals
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> "_StopSignals":
        import threading

        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for sig in self._signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class TrainResult:
    """Where a finished run stands: its folder, last step and checkpoint, the last evaluation's
    metrics, and best.pt with its step and mask-SSIM (None where no evaluation ran, or the best
    was saved before a resume)."""

    out: Path
    step: int
    last_checkpoint: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    best_checkpoint: Path | None = None
    best_metric: float | None = None
    best_step: int | None = None
    start_step: int = 0
    seconds: float = 0.0


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


class PresetSubstituteWarning(UserWarning):
    """A paper preset runs with a substitute for one of the paper's settings."""


def preset_substitutes(config: TrainConfig) -> list[str]:
    """What a "market" or "deepfashion" run uses instead of the paper's settings, in words."""
    if config.preset not in ("market", "deepfashion"):
        return []
    loss, found = config.model.loss, []
    if loss.features != "vgg19":
        found.append(
            f"the reconstruction loss compares {loss.features!r} instead of VGG-19 relu1_2 features, with "
            f"lambda {loss.lambda_nn}: the paper's 0.01 weighs relu1_2 distances, about 100x larger than "
            "pixel ones, so at 0.01 the reconstruction term is ~1% of G's loss (the synthetic preset "
            "uses 100 with the pixel loss; set --model.loss.lambda-nn)")
    elif loss.vgg_input != "caffe":
        found.append(
            f"the VGG-19 takes {loss.vgg_input!r}-scaled input: relu1_2 distances are ~58x smaller than "
            f"with the published code's Caffe-scaled input, for which lambda {loss.lambda_nn} was chosen")
    if loss.adversarial_weight != 1:
        found.append(f"the adversarial term is weighted {loss.adversarial_weight} instead of the paper's 1")
    if loss.person_weight != 0:
        found.append(f"the reconstruction term weighs the target's body 1 + {loss.person_weight} (the paper: unweighted)")
    return found


def learning_rate(config: TrainConfig, step: int) -> float:
    """Adam's lr at 0-based step: config.lr until the last ``lr_decay * steps`` steps, then
    falling linearly, lr * (steps - step) / n over those n steps (never 0: the last step uses lr / n)."""
    n = round(config.lr_decay * config.steps)
    remaining = config.steps - step
    if n == 0 or remaining > n:
        return config.lr
    return config.lr * remaining / n


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
        self.out = Path(distributed.broadcast_object(state, config.out or default_out(config)))
        created = self._created_out = not self.out.exists()
        try:
            self._setup(config, state, resume, init_from)
        except SetupError:
            self._remove_output(created)
            raise
        except _SETUP_ERRORS as error:
            self._remove_output(created)
            text = str(error) if not isinstance(error, KeyError) else f"missing entry {error}"
            raise SetupError(text or type(error).__name__) from error
        except BaseException:
            self._remove_output(created)
            raise

    def _remove_output(self, created: bool) -> None:
        """Undo a failed set-up: the output folder goes if this run created it."""
        if getattr(self, "monitor", None) is not None:
            self.monitor.close()
        if created and self.dist.is_main:
            shutil.rmtree(self.out, ignore_errors=True)

    def _setup(self, config: TrainConfig, state: distributed.Distributed,
               resume: str | Path | None, init_from: str | Path | None) -> None:
        self.config = config
        self.dist = state
        self.device = state.device
        self.monitor = None
        if config.precision == "bf16" and self.device.type != "cuda":
            raise SetupError(
                f"--precision bf16 autocasts on a CUDA GPU only, and this run is on {self.device}; "
                "use --precision fp32 (the default) on a CPU"
            )
        checkpoint = load_checkpoint(resume) if resume is not None else None
        self.start_step = int(checkpoint["step"]) if checkpoint else 0
        if self.start_step > config.steps:
            raise SetupError(f"{resume} is at step {self.start_step}, beyond steps={config.steps}; "
                             "pass a larger --steps to continue it")

        seed_everything(config.seed)
        self.G = Generator(config.model.generator).to(self.device)
        self.D = Discriminator(config.model.discriminator).to(self.device)
        try:
            with warnings.catch_warnings():  # the banner's NOTE line says which space the loss compares
                warnings.simplefilter("ignore", FeatureSpaceWarning)
                self.nn_loss = NearestNeighbourLoss.from_config(config.model.loss).to(self.device)
        except VGGWeightsNotFound as error:
            raise SetupError(f"{error} (on the command line: --model.loss.features pixel)") from error
        for substitute in preset_substitutes(config):
            warnings.warn(f"preset {config.preset}: {substitute}", PresetSubstituteWarning, stacklevel=2)
        adam = dict(lr=config.lr, betas=tuple(config.betas))
        self.optim_g = torch.optim.Adam(self.G.parameters(), **adam)
        self.optim_d = torch.optim.Adam(self.D.parameters(), **adam)
        self.checkpoints = CheckpointManager(self.out / "checkpoints", config.keep_last)
        self.metrics: dict[str, float] = {}
        if checkpoint is not None:
            self._load(checkpoint, resume, full=True)
        elif init_from is not None:
            self._load_init(Path(init_from))

        log = (lambda line: print(line, file=sys.stderr)) if state.is_main else (lambda line: None)
        if config.data.root is None:  # the synthetic set: generated before its rules are read
            if state.is_main:
                ensure_synthetic(config.data, tuple(config.model.generator.image_size), log)
            distributed.barrier(state)
        # The folder's identity and framing rules, resolved now so checkpoints store what was used.
        resolved, self.rule_notices = resolve_rules(config.data, tuple(config.model.generator.image_size))
        config = self.config = dataclasses.replace(config, data=resolved)
        self.data = build_run_data(config.data, tuple(config.model.generator.image_size),
                                   config.num_sources, state, log=log)
        # Every image's header, now (about 0.1 ms each): a missing or unreadable file is a set-up
        # error naming it, before anything is written, not a crash at some later step.
        for folder in {id(d.folder): d.folder for d in (self.data.train, self.data.held_out)}.values():
            folder.verify_images()
        sampler = self.sampler = StepBatchSampler(
            len(self.data.train), config.batch_size, config.steps, config.num_sources, config.seed,
            self.start_step, state.rank, state.world_size, capacities=self.data.capacities)
        self.loader = torch.utils.data.DataLoader(
            self.data.train, batch_sampler=sampler, collate_fn=collate_tuples,
            num_workers=config.data.workers, pin_memory=self.device.type == "cuda",
            # Its own generator: creating the iterator then leaves the global torch RNG untouched,
            # so a resumed run's RNG continues exactly where the checkpoint left it.
            generator=torch.Generator().manual_seed(config.seed),
            worker_init_fn=_ignore_sigint if config.data.workers else None,
        )
        count = min(config.data.sample_tuples, len(self.data.held_out))
        # With its pose tensors (the sample grid draws the target's heatmap), built once here.
        self.sample_batch = with_pose_inputs(
            collate_tuples([self.data.held_out[(i, min(config.max_sources, len(self.data.held_out.tuples[i][0])))]
                            for i in range(count)]),
            tuple(config.model.generator.image_size))

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
        self.step_fn = TrainingStep(
            self.G, self.D, self.nn_loss, self.optim_g, self.optim_d,
            image_size=tuple(config.model.generator.image_size), lambda_nn=config.model.loss.lambda_nn,
            device=self.device, autocast=self.autocast, g_train=self.g_train, d_train=self.d_train,
            adversarial_weight=config.model.loss.adversarial_weight, person_weight=config.model.loss.person_weight,
            flip=config.data.flip, color_jitter=config.data.color_jitter)
        self.losses = LossWindow(self.device)
        self.last_losses: dict[str, float] = {}
        self.last_saved_step: int | None = None
        self.best_step: int | None = None
        self.last_save_time = time.monotonic()
        # Created last, once everything above is known to work, so a refused run writes nothing.
        if state.is_main:
            for stale in remove_stale_temporaries(self.out / "checkpoints"):
                print(f"msgen.train: removed {stale}, left by a save that did not finish", file=sys.stderr)
        self.monitor = RunMonitor(self.out, config.steps, self.start_step, enabled=state.is_main,
                                  adversarial=config.model.loss.adversarial_weight != 0)

    def _load_init(self, path: Path) -> None:
        """--init-from: the weights of a training checkpoint (G and D), or of an exported generator
        (.safetensors, ``msgen.export``): G only, D starts from its initialisation."""
        self.init_note = None
        if path.suffix != ".safetensors":
            self._load(load_checkpoint(path), path, full=False)
            return
        from safetensors.torch import load_file

        from msgen.checkpoint import read_generator_metadata as read_metadata

        read_metadata(path)  # a UsageError naming the file when it is not an exported generator
        try:
            load_module_state(self.G, load_file(str(path)), "generator", path)
        except CheckpointError as error:
            raise SetupError(f"{error}. A --model.* option that changes the model's size cannot be "
                             "applied to an exported generator: drop it") from error
        self.init_note = (f"NOTE: --init-from {path} is an exported generator: G starts from its weights, "
                          "D from its initialisation (the file holds no discriminator)")

    def _load(self, checkpoint: dict[str, Any], path: str | Path, full: bool) -> None:
        try:
            load_module_state(self.G, checkpoint["generator"], "generator", path)
            load_module_state(self.D, checkpoint["discriminator"], "discriminator", path)
        except CheckpointError as error:
            # The model is built from the checkpoint's configuration, so only an override differs.
            raise SetupError(f"{error}. A --model.* option that changes the model's size cannot be "
                             "applied to a checkpoint: drop it") from error
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

    def train_step(self, batch: dict) -> Tensor:
        """One D step and one G step on a collated batch (msgen.training.step.TrainingStep);
        returns the (4,) losses of LOSS_NAMES, detached, on the device, without a host sync."""
        return self.step_fn(batch)

    def _set_lr(self, step: int) -> None:
        """Give both optimisers ``learning_rate(config, step)`` for step (0-based)."""
        lr = learning_rate(self.config, step)
        for optimiser in (self.optim_g, self.optim_d):
            for group in optimiser.param_groups:
                group["lr"] = lr

    def _read_losses(self, step: int) -> dict[str, float]:
        """The window's mean losses (averaged over the processes): the step's one host sync, on
        log steps and before periodic work. Raises NonFiniteLossError for a non-finite loss."""
        reading = self.losses.read(lambda total: distributed.mean_over_ranks(self.dist, total))
        bad = [name for name, value in reading.means.items() if not math.isfinite(value)]
        if bad or reading.bad_step is not None:
            values = reading.bad_losses if reading.bad_step is not None else reading.means
            bad = [name for name, value in values.items() if not math.isfinite(value)] or bad
            where = (f"step {reading.bad_step}" if reading.bad_step is not None
                     else f"a step before step {step} (on another process)")
            last = latest_checkpoint(self.out / "checkpoints")
            kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been written yet"
            raise NonFiniteLossError(
                f"non-finite loss at {where}: " + ", ".join(f"{n} = {values[n]}" for n in bad)
                + f". Nothing of this state was saved; {kept}. Lower --lr, or resume from the "
                "checkpoint with --precision fp32."
            )
        return reading.means

    def _log_losses(self, done: int, num_sources: int) -> None:
        """On log steps: read and log the window's means, and start a new window."""
        self.last_losses = self._read_losses(done)
        self.monitor.log(done, {**self.last_losses, "num_sources": num_sources})
        self.losses.reset()

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
        """Score the held-out tuples at each M, each M on the tuples that serve it; "mask_ssim"
        (best.pt's choice) and "ssim" are the means over M."""
        self.G.eval()
        metrics: dict[str, float] = {}
        for m, dataset in sorted(self.data.held_out_by_m.items()):
            metrics.update({k: v for k, v in evaluate(self.G, dataset, self.config.data.eval_tuples, [m],
                                                      self.config.batch_size, self.device, self.autocast).items()
                            if k.endswith(f"_m{m}")})
        ms = sorted(self.data.held_out_by_m)
        for name in ("ssim", "mask_ssim"):
            metrics[name] = float(np.mean([metrics[f"{name}_m{m}"] for m in ms]))
        self.metrics = metrics
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
            if self.checkpoints.is_better(metric) or self.checkpoints.best_metric is None:
                self.best_step = step  # CheckpointManager's rule for best.pt
            self.checkpoints.save(step, state, metric)
        distributed.barrier(self.dist)
        self.last_saved_step = step
        self.last_save_time = time.monotonic()

    def _time_to_save(self, done: int) -> bool:
        """Whether checkpoint_seconds have passed since the last save (rank 0's clock decides, on
        log steps only, so all processes agree without a sync on other steps)."""
        c = self.config
        if not c.checkpoint_seconds:
            return False
        if self.dist.enabled:
            if done % c.log_every:
                return False
            return bool(distributed.broadcast_object(
                self.dist, time.monotonic() - self.last_save_time >= c.checkpoint_seconds))
        return time.monotonic() - self.last_save_time >= c.checkpoint_seconds

    def _periodic(self, done: int) -> None:
        """Samples, evaluation and checkpoints due after step ``done`` (not counted in images/s)."""
        c = self.config
        first = done == 1  # something to see at once
        sample = done % c.sample_every == 0 or done == c.steps or first
        evaluate = done % c.eval_every == 0
        save = (done % (c.checkpoint_every or c.eval_every) == 0 or done == c.steps or first
                or self._time_to_save(done))
        if not (sample or evaluate or save):
            return
        self._read_losses(done)  # nothing is sampled or saved from a state with a non-finite loss
        self.monitor.pause()
        if self.dist.is_main and sample:
            self._sample(done)
        if self.dist.is_main and evaluate:
            self._evaluate(done)
        if save:
            self._checkpoint(done, evaluate)
        self.monitor.resume()

    def _stop_signal(self, done: int, received: int | None) -> int | None:
        """The stop signal to act on after step ``done``, or None. Alone: the one received. Under
        torchrun every process must stop at the same step, so they agree on log steps only (one
        all-reduce there; torchrun sends the signal to every process)."""
        if not self.dist.enabled:
            return received
        if done % self.config.log_every:
            return None
        flag = torch.tensor([float(received or 0)], device=self.device)
        agreed = distributed.mean_over_ranks(self.dist, flag) * self.dist.world_size  # a sum
        if agreed.item() == 0:
            return None
        return received if received is not None else int(signal.SIGTERM)  # another process got one

    def _stop(self, done: int, signum: int) -> None:
        """A stop signal arrived during step ``done``: save it (unless just saved) and stop."""
        name = signal.Signals(signum).name
        if self.last_saved_step != done:
            self._read_losses(done)  # never save a non-finite state
            self.monitor.pause()
            self._checkpoint(done, evaluated=False)
        path = self.out / "checkpoints" / f"step-{done:08d}.pt"
        raise TrainingInterrupted(
            f"stopped by {name} after step {done}; saved {path}; continue with: "
            f"python -m msgen.train --resume auto --out {self.out}",
            exit_code=128 + int(signum))

    # -- the run --------------------------------------------------------------------------------

    def _banner(self) -> None:
        c, g = self.config, self.config.model.generator
        decay = f" (linear decay over the last {c.lr_decay:g})" if c.lr_decay else ""
        world = self.dist.world_size
        for line in (
            f"msgen.train: preset {c.preset}; {world} process(es) on {self.device}; precision {c.precision}; "
            f"ops {g.ops}; compile {c.compile}",
            f"  generator {g.image_size[0]}x{g.image_size[1]}, {g.levels} levels, width {g.width}, "
            f"variant {g.variant} ({_count(self.G)}); discriminator ({_count(self.D)})",
            f"  NOTE: the reconstruction loss compares {self.nn_loss.feature_space}",
            *(f"  WARNING: preset {c.preset}: {text}" for text in preset_substitutes(c)),
            *self._data_lines(),
            *([f"  {self.init_note}"] if getattr(self, "init_note", None) else []),
            f"  M per batch: {', '.join(map(str, c.num_sources))}; batch {c.batch_size} per process; "
            f"Adam lr {c.lr}{decay} betas {tuple(c.betas)}; lambda {c.model.loss.lambda_nn}",
            *([f"  NOTE: no adversarial term (--model.loss.adversarial-weight 0): D is neither run nor trained"]
              if c.model.loss.adversarial_weight == 0 else []),
            *([f"  augmentation: tuples mirrored with probability {c.data.flip:g}, colour jitter {c.data.color_jitter:g}"]
              if c.data.flip or c.data.color_jitter else []),
            f"  steps {self.start_step} -> {c.steps}; outputs in {self.out}",
        ):
            self.monitor.print(line)

    def _data_lines(self) -> list[str]:
        """The banner's data lines: persons, tuples and images per M, what was dropped and why, and
        how the M of a step is drawn when some tuples cannot serve the largest M."""
        first, *rest = self.data.description.split("\n")
        lines = [f"  data: {first}", *(f"  {line}" for line in rest),
                 f"  data rules: identity {self.config.data.identity}, framing {self.config.data.framing}",
                 *(f"  {notice}" for notice in self.rule_notices)]
        if self.sampler.weights is not None:
            ms = sorted(set(self.config.num_sources))
            _, shares = step_weights(ms, self.sampler.capacities)
            lines.append("  M per step drawn with weights " + ", ".join(
                f"M={m}: {w:.2f}" for m, w in zip(ms, self.sampler.weights)) + " (tuples that hold fewer sources "
                "train at the largest M they hold): tuples per M " + ", ".join(
                f"M={m}: {share:.0%}" for m, share in zip(ms, shares)))
        return lines

    def run(self) -> TrainResult:
        c = self.config
        started = time.monotonic()
        if self.start_step == c.steps:  # resumed at its end: nothing to train (the CLI says how to go on)
            self.monitor.close()
            return self._result(0.0)
        self._banner()
        if self.start_step:
            restore_rng(self._resume_rng)
        self.monitor.start()
        done = self.start_step
        try:
            caught = (signal.SIGTERM,) if self.dist.enabled else (signal.SIGINT, signal.SIGTERM)
            with _StopSignals(caught) as signals:
                for step, batch in enumerate(_batches(self.loader), start=self.start_step):
                    num_sources = batch["sources"].shape[1]
                    done = step + 1
                    self._set_lr(step)
                    self.losses.add(self.train_step(batch), done)
                    # Counted before a log line closes its window, so each window's images/s counts
                    # its own steps (after, the bar's rate read one step over no time: 10^4 img/s).
                    # The bar shows the last logged means: reading every step's would sync.
                    self.monitor.step(c.batch_size * self.dist.world_size, self.last_losses)
                    if done % c.log_every == 0:
                        self._log_losses(done, num_sources)
                    self._periodic(done)
                    received = self._stop_signal(done, signals.received)
                    if received is not None:
                        self._stop(done, received)
        except DataError:
            if done == 0 and self._created_out:  # nothing trained: no half-made output either
                self._remove_output(True)
            raise
        except KeyboardInterrupt as error:
            if isinstance(error, TrainingInterrupted):
                raise
            last = latest_checkpoint(self.out / "checkpoints")
            raise TrainingInterrupted(
                f"interrupted at once (a second signal) after step {done}; continue from {last} with: "
                f"python -m msgen.train --resume auto --out {self.out}"
                if last else "interrupted at once (a second signal) before the first checkpoint"
            ) from None
        else:
            if self.dist.enabled:
                distributed.check_same_parameters(self.dist, {"generator": self.G, "discriminator": self.D})
                self.monitor.print(f"parameters identical on all {self.dist.world_size} processes")
        finally:
            self.monitor.close()
        return self._result(time.monotonic() - started)

    def _result(self, seconds: float) -> TrainResult:
        last = latest_checkpoint(self.out / "checkpoints") if self.dist.is_main else None
        best = self.checkpoints.directory / BEST_NAME
        return TrainResult(self.out, self.config.steps, last, dict(self.metrics), best if best.is_file() else None,
                           self.checkpoints.best_metric, self.best_step, self.start_step, seconds)
