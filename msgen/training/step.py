"""The body of one training step, and the loss window read only on log steps.

``TrainingStep`` is what ``msgen.training.loop`` runs per batch and what
``benchmarks/bench_train_step.py`` times: batch to the device, pose tensors built there
(``msgen.pose.with_pose_inputs``; before it the tuples' flips and colour jitter, when the run asks
for them), G forward, D step, G step. It makes no host synchronisation:
nothing reads a device value (``tests/test_training_step.py`` counts them). ``LossWindow`` sums
the losses on the device; ``read()``, on log steps, is the one place the host waits.

``phase_timer``: a callable ``(name) -> context manager`` that the benchmark sets to time the
phases "data", "pose", "forward", "backward" and "optimiser" (None: no timing, no syncs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from msgen.models import discriminator_loss, generator_loss
from msgen.models.losses import person_weight_map
from msgen.pose import with_pose_inputs
from msgen.data import to_device
from msgen.training.augment import augment_batch

LOSS_NAMES = ("loss_d", "loss_g_adv", "loss_nn", "loss_g")
PHASES = ("data", "pose", "forward", "backward", "optimiser")


class TrainingStep:
    """One D step and one G step on a collated batch (images and keypoints); returns the (4,)
    losses of LOSS_NAMES, detached, on the device.

    G, D: the modules (``g_train``/``d_train``: the same through DDP, when distributed);
    nn_loss: the reconstruction loss; lambda_nn its weight; adversarial_weight: the adversarial
    term's; person_weight: the target body's extra weight in the reconstruction term
    (``msgen.models.losses.person_weight_map``); flip, color_jitter: the batch's augmentation
    (``msgen.training.augment.augment_batch``); autocast: a context-manager factory.
    """

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        nn_loss: nn.Module,
        optim_g: torch.optim.Optimizer,
        optim_d: torch.optim.Optimizer,
        *,
        image_size: tuple[int, int],
        lambda_nn: float,
        device: torch.device,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        g_train: nn.Module | None = None,
        d_train: nn.Module | None = None,
        adversarial_weight: float = 1.0,
        person_weight: float = 0.0,
        flip: float = 0.0,
        color_jitter: float = 0.0,
    ) -> None:
        self.G, self.D, self.nn_loss = G, D, nn_loss
        self.optim_g, self.optim_d = optim_g, optim_d
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.lambda_nn = float(lambda_nn)
        self.adversarial_weight = float(adversarial_weight)
        self.person_weight = float(person_weight)
        self.flip, self.color_jitter = float(flip), float(color_jitter)
        self.device = device
        self.autocast = autocast
        self.g_train = g_train if g_train is not None else G
        self.d_train = d_train if d_train is not None else D
        self.phase_timer: Callable[[str], contextlib.AbstractContextManager] | None = None

    def _phase(self, name: str) -> contextlib.AbstractContextManager:
        return self.phase_timer(name) if self.phase_timer is not None else contextlib.nullcontext()

    def __call__(self, batch: dict) -> Tensor:
        with self._phase("data"):
            b = augment_batch(to_device(batch, self.device), self.flip, self.color_jitter)
        with self._phase("pose"):
            # The loader validated every item's keypoints; checking again would read them back.
            b = with_pose_inputs(b, self.image_size, check=False)
        valid = b["valid"]
        source_args = (b["sources"], b["source_heatmaps"])
        with self._phase("forward"), self.autocast():
            fake = self.g_train(b["sources"], b["source_heatmaps"], b["target_heatmap"], b["theta"],
                                b["part_masks"], valid).image
        if self.adversarial_weight > 0:
            loss_d, logits = self._discriminator_step(b, fake, valid, source_args)
        else:  # no adversarial term: D is neither trained nor run (a third of a step's work)
            loss_d, logits = fake.new_zeros((), dtype=torch.float32), None
        with self._phase("forward"), self.autocast():
            weight = person_weight_map(b["part_masks"], b["target_kp"], self.person_weight) if self.person_weight else None
            losses = generator_loss(logits, fake.float(), b["target"], self.nn_loss, valid, self.lambda_nn,
                                    self.adversarial_weight, weight)
        with self._phase("backward"):
            self.optim_g.zero_grad(set_to_none=True)
            losses.total.backward()
        with self._phase("optimiser"):
            self.optim_g.step()
        self.D.requires_grad_(True)
        return torch.stack([loss_d, losses.adversarial, losses.reconstruction, losses.total]).detach()

    def _discriminator_step(self, b: dict, fake: Tensor, valid: Tensor | None,
                            source_args: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """One D step on real and (detached) generated images; then D's logits of the generated
        ones for G's adversarial term, with D frozen. Returns (loss_d, fake logits)."""
        with self._phase("forward"), self.autocast():
            # Real and generated in one D call: one forward per backward, as DDP expects.
            both = self.d_train(torch.cat([b["target"], fake.detach()]), b["target_heatmap"].repeat(2, 1, 1, 1),
                                *(x.repeat(2, 1, 1, 1, 1) for x in source_args))
            real_logits, fake_logits = both.float().chunk(2)
            loss_d = discriminator_loss(real_logits, fake_logits, valid)
        with self._phase("backward"):
            self.optim_d.zero_grad(set_to_none=True)
            loss_d.backward()
        with self._phase("optimiser"):
            self.optim_d.step()
        self.D.requires_grad_(False)
        with self._phase("forward"), self.autocast():
            logits = self.D(fake, b["target_heatmap"], *source_args).float()
        return loss_d, logits


class WindowReading(NamedTuple):
    """means: the mean of each loss over the window; bad_step: the first step of the window whose
    losses were not all finite (None: all finite); bad_losses: that step's losses."""

    means: dict[str, float]
    bad_step: int | None
    bad_losses: dict[str, float]


class LossWindow:
    """Sums step losses on the device without reading them; ``read()`` is the host sync."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.total = torch.zeros(len(LOSS_NAMES), dtype=torch.float64, device=self.device)
        self.bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        self.bad_losses = torch.zeros(len(LOSS_NAMES), dtype=torch.float64, device=self.device)
        self.steps = 0

    def add(self, losses: Tensor, step: int) -> None:
        losses = losses.to(torch.float64)
        first_bad = (self.bad_step < 0) & ~torch.isfinite(losses).all()
        self.bad_step = torch.where(first_bad, step, self.bad_step)
        self.bad_losses = torch.where(first_bad, losses, self.bad_losses)
        self.total += losses
        self.steps += 1

    def read(self, reduce: Callable[[Tensor], Tensor] = lambda t: t) -> WindowReading:
        """Means (after ``reduce``, e.g. the mean over processes) and the first non-finite step."""
        total = reduce(self.total) / max(self.steps, 1)
        values = torch.cat([total, self.bad_losses, self.bad_step[None].to(torch.float64)]).tolist()
        n = len(LOSS_NAMES)
        means = dict(zip(LOSS_NAMES, values[:n]))
        bad_step = int(values[-1]) if values[-1] >= 0 else None
        return WindowReading(means, bad_step, dict(zip(LOSS_NAMES, values[n : 2 * n])))
