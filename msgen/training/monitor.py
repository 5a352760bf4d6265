"""What a user watches during training: a progress bar, TensorBoard, a JSONL log, sample PNGs.

Only rank 0 monitors; on the other ranks ``RunMonitor(enabled=False)`` does nothing, so the loop
calls it unconditionally. Files under ``out``: ``log.jsonl`` (one JSON object per line: "train"
lines every log_every steps, "eval" lines every eval_every steps), ``tensorboard/`` and
``samples/step-<N>.png``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm


class RunMonitor:
    """Progress bar, TensorBoard writer and JSONL log of one run (no-ops when not ``enabled``)."""

    def __init__(self, out: Path, total_steps: int, start_step: int, enabled: bool,
                 adversarial: bool = True) -> None:
        """adversarial: whether the run has an adversarial term; without one the progress bar leaves
        out D's loss and G's adversarial loss (always 0 there; log.jsonl keeps every loss)."""
        self.enabled = enabled
        self._hidden = set() if adversarial else {"loss_d", "loss_g_adv"}
        self.out = out
        self._window_images = 0
        self._window_start = time.perf_counter()
        self.images_per_s = math.nan
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter  # imported here: slow, and rank 0 only

        (out / "samples").mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_step + 1)
        self.jsonl = open(out / "log.jsonl", "a", buffering=1)
        self._bar_range = (total_steps, start_step)
        self.bar: tqdm | None = None

    def start(self) -> None:
        """Show the progress bar (after the set-up messages) and start the images/s clock."""
        self._window_start = time.perf_counter()
        if self.enabled:
            total, initial = self._bar_range
            self.bar = tqdm(total=total, initial=initial, desc="train", unit="step",
                            dynamic_ncols=True, smoothing=0.1)

    def print(self, message: str) -> None:
        """A line above the progress bar (rank 0 only)."""
        if self.enabled:
            tqdm.write(message)

    def step(self, images: int, losses: dict[str, float]) -> None:
        """One optimiser step done on ``images`` targets (all ranks together)."""
        self._window_images += images
        if not self.enabled:
            return
        rate = self._window_images / max(time.perf_counter() - self._window_start, 1e-9)
        self.bar.set_postfix({k.removeprefix("loss_"): f"{v:.3f}" for k, v in losses.items() if k not in self._hidden}
                             | {"img/s": f"{rate:.1f}"}, refresh=False)
        self.bar.update(1)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Write the "train" record of ``step``: the scalars and the images/s since the last one."""
        now = time.perf_counter()
        self.images_per_s = self._window_images / max(now - self._window_start, 1e-9)
        self._window_images, self._window_start = 0, now
        if not self.enabled:
            return
        record = {"kind": "train", "step": step, "time": time.time(), **scalars,
                  "images_per_s": self.images_per_s}
        self.jsonl.write(json.dumps(record) + "\n")
        for name, value in scalars.items():
            self.writer.add_scalar(f"train/{name}", value, step)
        self.writer.add_scalar("train/images_per_s", self.images_per_s, step)

    def evaluation(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"kind": "eval", "step": step, "time": time.time(), **metrics}) + "\n")
        for name, value in metrics.items():
            self.writer.add_scalar(f"eval/{name}", value, step)
        self.print(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

    def sample(self, step: int, grid: np.ndarray) -> Path | None:
        """Save a sample grid (H, W, 3) uint8 as samples/step-<N>.png and to TensorBoard."""
        if not self.enabled:
            return None
        path = self.out / "samples" / f"step-{step:08d}.png"
        Image.fromarray(grid).save(path)
        self.writer.add_image("samples", grid, step, dataformats="HWC")
        return path

    def pause(self) -> None:
        """Exclude what follows (evaluation, checkpoints) from the images/s of training."""
        self._paused_at = time.perf_counter()

    def resume(self) -> None:
        self._window_start += time.perf_counter() - self._paused_at

    def close(self, summary: dict[str, Any] | None = None) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        if summary is not None:
            self.jsonl.write(json.dumps({"kind": "end", "time": time.time(), **summary}) + "\n")
        self.writer.close()
        self.jsonl.close()
