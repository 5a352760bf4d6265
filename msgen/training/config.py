"""Training configuration: ``TrainConfig`` (holding the model and data configurations) and presets.

Presets (``train_preset(name)``):
- "synthetic" (the default of ``python -m msgen.train``): the built-in synthetic dataset, generated
  on first use into a cache folder, and a small model sized so a laptop CPU shows progress within
  minutes.
- "market": Market-1501 (128x64) with the paper's settings: Adam 2e-4, betas (0.5, 0.999),
  lambda 0.01, M = 2. Fine-tune at another M with ``--init-from CKPT --num-sources M``.
- "deepfashion": DeepFashion In-shop (256x256), the same settings, 7 levels, 5x5 NN window.

``num_sources`` is a tuple: one value trains at that M; several values draw one M per batch
(deterministically from the step), so one model serves every M.

Configurations are frozen dataclasses; ``config_to_dict`` / ``config_from_dict`` turn them into
plain containers for checkpoints (``torch.load(weights_only=True)`` accepts only such values).
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from msgen.errors import UsageError
from msgen.models.config import ModelConfig, preset as model_preset

DATASETS = ("synthetic", "folder")
PRECISIONS = ("fp32", "bf16")
IDENTITIES = ("market", "deepfashion")
FRAMINGS = ("market", "full-body")


def default_workers() -> int:
    """DataLoader workers for this machine: min(4, CPUs - 1), 0 with 2 CPUs or fewer."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cpus <= 2 else min(4, cpus - 1)


# The models' "synthetic-small" (width 0.125, L1 on the pixels) at 64x32 with 5 levels: a
# quarter of the pixels of 128x64, so a laptop CPU shows learning within minutes. Every preset
# trains on the "fast" ops: "auto" per op, which takes the fused kernels where they run (Triton and
# CUDA on a GPU, the C++ warp on a CPU) and the references elsewhere.
SYNTHETIC_MODEL = model_preset("synthetic-small", image_size=(64, 32), levels=5, ops="fast")


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how tuples are drawn (each field's help is its metadata).

    A dataset folder (``root``) holds ``images/``, ``annotation.csv`` (the pose-transfer format)
    and, when ``python -m msgen.data.prepare`` made it, ``split.json`` (``msgen.data.split``) and
    ``summary.json`` (the folder's rules: identity, image size, framing): training draws its
    tuples from the split's training persons only, evaluates on its validation persons and never
    sees its test persons. Without ``root`` the synthetic set is generated on first use under
    ``synthetic_cache``, and its split is derived by ``split_by_identity`` (test_fraction,
    validation_fraction, seed).

    identity and framing None mean "the folder's rule" (summary.json; Market's without one):
    training resolves them (``msgen.training.data.resolve_rules``) and stores the resolved
    values in its checkpoints, so a checkpoint's ``data.framing`` is always one of FRAMINGS.
    """

    dataset: str = field(default="synthetic", metadata={"help": (
        "'synthetic' (generated under --data.synthetic-cache) or 'folder' (the dataset folder --data.root); "
        "giving --data.root makes it 'folder' (default: synthetic)")})
    root: str | None = field(default=None, metadata={"help": (
        "a dataset folder: DIR/images, DIR/annotation.csv (name:keypoints_y:keypoints_x) and DIR/split.json "
        "(python -m msgen.data.prepare writes it; without it persons are held out by --data.test-fraction); "
        "none: the synthetic set (default: none)")})
    synthetic_cache: str | None = field(default=None, metadata={"help": (
        "folder under which the synthetic set is generated and reused when no --data.root is given, as "
        "<DIR>/synthetic-<hash of its parameters> (default: $MSGEN_CACHE, else ~/.cache/msgen)")})
    identity: str | None = field(default=None, metadata={"help": (
        "file name -> person: 'market' (the name before the first _, junk -1*/0000* dropped) or "
        "'deepfashion' (id + item, the name before the last _); overrides the dataset folder's rule "
        "(default: the folder's summary.json, else market)")})
    framing: str | None = field(default=None, metadata={"help": (
        "how photos are framed for the model: 'market' (Market-1501 person crops) or 'full-body' (full-body "
        "fashion shots); stored with the model for generation; overrides the dataset folder's "
        "(default: the folder's summary.json, else market)")})
    # 500 identities (seconds to generate): with 64, the default run's held-out
    # mask-SSIM fell from 0.56 to 0.50 over 5000 steps as it memorised 57 people; with 500 it rose
    # to 0.60 and held (CPU, 2026-11-24). 24 images per person (12000 images) instead of 6: with 6,
    # training's loss kept falling after 4000 steps while held-out scores stalled and the plain
    # SSIM fell (the model memorised backgrounds); with 24, the same persons held out, 3000 steps:
    # +0.0055 [+0.0041, +0.0070] mask-SSIM at M = 5 with a constant lr; with the preset's lr decay
    # -0.0002 [-0.0014, +0.0010] at M = 5 but +0.013 to +0.017 SSIM_256 at every M (paired,
    # docs/RESULTS.md, 2026-12-03).
    identities: int = field(default=500, metadata={"help": "persons of the synthetic set, >= 1 (default: 500)"})
    images_per_identity: int = field(default=24, metadata={"help": (
        "images per synthetic person, >= 1 (default: 24)")})
    seed: int = field(default=0, metadata={"help": (
        "seed of the synthetic set, of the derived person split and of the tuple sampling (default: 0)")})
    test_fraction: float = field(default=0.1, metadata={"help": (
        "share of persons held out for test when the folder has no split.json, in (0, 1) (default: 0.1)")})
    validation_fraction: float = field(default=0.1, metadata={"help": (
        "share of the non-test persons held out for validation (the periodic evaluation and best.pt) when "
        "the split names none (no split.json, or one written before validation persons), in (0, 1) "
        "(default: 0.1)")})
    eval_tuples: int = field(default=32, metadata={"help": (
        "validation tuples scored at each M at every evaluation during training, >= 1 (default: 32)")})
    sample_tuples: int = field(default=4, metadata={"help": (
        "validation tuples drawn in each sample grid (its columns), >= 1 (default: 4)")})
    flip: float = field(default=0.0, metadata={"help": (
        "probability that a training tuple is mirrored left-right, its sources and target together, the "
        "keypoints' right and left swapped (msgen.training.augment), in [0, 1] (default: 0: never)")})
    color_jitter: float = field(default=0.0, metadata={"help": (
        "strength s of the training tuples' colour jitter: brightness, contrast and saturation each scaled by "
        "a factor drawn from [1 - s, 1 + s] per tuple, the same for its sources and target "
        "(msgen.training.augment), in [0, 1) (default: 0: none)")})
    workers: int = field(default_factory=default_workers, metadata={"help": (
        "DataLoader worker processes decoding images while the model trains (0: in the training "
        "process), >= 0; by default min(4, CPUs - 1), and 0 on a machine with 2 CPUs or fewer, where "
        "workers compete with the training threads. Batches are pinned only when training on CUDA")})

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise UsageError(f"--data.dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.root is not None and self.dataset == "synthetic":
            # --data.root names a dataset folder, whatever made it (msgen's synthetic folders
            # have the same layout), so giving it selects the folder.
            object.__setattr__(self, "dataset", "folder")
        if self.identity is not None and self.identity not in IDENTITIES:
            raise UsageError(f"--data.identity must be one of {IDENTITIES}, got {self.identity!r}")
        if self.framing is not None and self.framing not in FRAMINGS:
            raise UsageError(f"--data.framing must be one of {FRAMINGS}, got {self.framing!r}")
        if self.dataset == "folder" and self.root is None:
            raise UsageError("--data.root must name the dataset folder when --data.dataset is 'folder'")
        for name in ("identities", "images_per_identity", "eval_tuples", "sample_tuples"):
            if getattr(self, name) < 1:
                raise UsageError(f"--data.{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.test_fraction < 1:
            raise UsageError(f"--data.test-fraction must be in (0, 1), got {self.test_fraction}")
        if not 0 < self.validation_fraction < 1:
            raise UsageError(f"--data.validation-fraction must be in (0, 1), got {self.validation_fraction}")
        if not 0 <= self.flip <= 1:
            raise UsageError(f"--data.flip must be a probability in [0, 1], got {self.flip}")
        if not 0 <= self.color_jitter < 1:
            raise UsageError(f"--data.color-jitter must be in [0, 1), got {self.color_jitter}")
        if self.workers < 0:
            raise UsageError(f"--data.workers must be >= 0, got {self.workers}")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Every field is a command-line option (``msgen.training.cli``).

    num_sources: the M of every batch, or several to draw one per batch.
    batch_size: tuples per optimiser step on EACH process (torchrun multiplies it by the world size).
    lr, betas: Adam for both G and D (paper: 2e-4, (0.5, 0.999)); lambda is model.loss.lambda_nn.
    device: "auto" (CUDA when there is one), "cpu", "cuda" or "cuda:N".
    precision: "fp32" or "bf16" (autocast; CUDA only).
    compile: torch.compile G and D.
    log_every, sample_every, eval_every, checkpoint_every: periods in steps (checkpoint_every None:
        at every evaluation); a checkpoint is also written at the end.
    keep_last: step checkpoints kept besides ``best.pt`` (highest mask-SSIM).
    out: output folder; None gives runs/<preset>-<timestamp>.
    """

    preset: str = field(default="synthetic", metadata={"help": "the preset this configuration started from"})
    model: ModelConfig = field(default_factory=lambda: SYNTHETIC_MODEL)
    data: DataConfig = field(default_factory=DataConfig)
    num_sources: tuple[int, ...] = field(default=(2,), metadata={"help": (
        "M, the source images per tuple (>= 1); several comma-separated values (1,2,3,5) draw one M per "
        "batch, so one model serves every M")})
    batch_size: int = field(default=8, metadata={"help": (
        "tuples per optimiser step on each process (torchrun multiplies it by the process count)")})
    # 2500: the default run must end within 10 minutes on a 2-core CPU with torch's default threads.
    # A fresh clone measured 5000 steps in 16 min 23 s there (0.197 s a step, all included), so
    # 2500 take about 8 min (about 5 at the 9.0 steps/s of a quiet machine); 3000, the study's
    # budget, would take 9.8 min, too close. The lr decay follows --steps, so the shorter run still
    # anneals; from the 9000-step run's gain (+0.009 mask-SSIM over 3000), 2500 instead of 3000
    # costs about 0.002 (docs/RESULTS.md).
    steps: int = field(default=2500, metadata={"help": "optimiser steps to train in all (a resumed run stops there too)"})
    # 1e-3 for the small synthetic model: after 1000 steps it scored +0.005 / +0.009 mask-SSIM at
    # M = 1 / 5 over 2e-4 (500 held-out tuples, paired; docs/RESULTS.md). The paper presets keep 2e-4.
    lr: float = field(default=1e-3, metadata={"help": (
        "Adam learning rate of G and D, > 0 (the market and deepfashion presets use the paper's 2e-4)")})
    lr_decay: float = field(default=0.0, metadata={"help": (
        "fraction of the run, at its end, over which the learning rate falls linearly towards 0 (to lr / n "
        "at the last of its n steps; 0: constant lr, the paper's; 0.5: constant for the first half, as "
        "pix2pix). It follows --steps, so a run resumed with more steps rises back to the lr the new "
        "schedule gives")})
    betas: tuple[float, float] = field(default=(0.5, 0.999), metadata={"help": (
        "Adam betas of G and D, two comma-separated numbers in [0, 1) (the paper's 0.5,0.999)")})
    seed: int = field(default=0, metadata={"help": "seed of the weights' initialisation, the data order and the tuples"})
    device: str = field(default="auto", metadata={"help": (
        "where to train: 'auto' (the GPU when there is one, else the CPU), 'cpu', 'cuda' or 'cuda:N'")})
    precision: str = field(default="fp32", metadata={"help": (
        "'fp32', or 'bf16' (autocast to bfloat16; CUDA GPUs only)")})
    compile: bool = field(default=False, metadata={"help": "torch.compile G and D (slower start, faster steps on a GPU)"})
    log_every: int = field(default=10, metadata={"help": (
        "steps between loss readings (log.jsonl, TensorBoard, the progress bar)")})
    sample_every: int = field(default=50, metadata={"help": (
        "steps between sample grids (samples/step-N.png); one is also drawn after step 1 and at the end")})
    eval_every: int = field(default=250, metadata={"help": (
        "steps between evaluations on the held-out tuples (mask-SSIM decides best.pt)")})
    checkpoint_every: int | None = field(default=None, metadata={"help": (
        "steps between checkpoints; none: at every evaluation. Checkpoints are also written after "
        "step 1, every --checkpoint-seconds, on Ctrl-C/SIGTERM and at the end")})
    checkpoint_seconds: float = field(default=60.0, metadata={"help": (
        "seconds of training after which a checkpoint is written even when no --checkpoint-every "
        "step came (0 turns this off), so a short run always leaves one")})
    keep_last: int = field(default=3, metadata={"help": "step checkpoints kept besides best.pt (>= 1)"})
    out: str | None = field(default=None, metadata={"help": (
        "output folder (checkpoints/, samples/, tensorboard/, log.jsonl); none: runs/<preset>-<date>-<time>")})

    def __post_init__(self) -> None:
        if not self.num_sources or any(m < 1 for m in self.num_sources):
            raise ValueError(f"--num-sources must be one or more M >= 1, got {','.join(map(str, self.num_sources))}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"--device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("batch_size", "steps", "log_every", "sample_every", "eval_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError(f"--checkpoint-every must be >= 1 or none, got {self.checkpoint_every}")
        if not self.checkpoint_seconds >= 0:
            raise ValueError(f"--checkpoint-seconds must be >= 0 (0: off), got {self.checkpoint_seconds}")
        if not 0 <= self.lr_decay <= 1:
            raise ValueError(f"--lr-decay must be in [0, 1], got {self.lr_decay}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"--betas must be two numbers in [0, 1), got {self.betas}")

    @property
    def max_sources(self) -> int:
        return max(self.num_sources)


def _synthetic() -> TrainConfig:
    # The lr falls linearly over the second half: at 3000 steps on the synthetic default, +0.005 /
    # +0.007 mask-SSIM at M = 1 / 5 over a constant lr (500 held-out tuples, paired; docs/RESULTS.md).
    return TrainConfig(lr_decay=0.5)


def _market() -> TrainConfig:
    return TrainConfig(
        preset="market",
        lr=2e-4,
        model=model_preset("market").with_ops("fast"),
        data=DataConfig(dataset="folder", root="data/market", test_fraction=0.1,
                        eval_tuples=512),
        batch_size=16,
        steps=100_000,
        log_every=50,
        sample_every=1000,
        eval_every=5000,
    )


def _deepfashion() -> TrainConfig:
    return TrainConfig(
        preset="deepfashion",
        lr=2e-4,
        model=model_preset("deepfashion").with_ops("fast"),
        data=DataConfig(dataset="folder", root="data/deepfashion", identity="deepfashion", test_fraction=0.1,
                        eval_tuples=512),
        batch_size=8,
        steps=100_000,
        log_every=50,
        sample_every=1000,
        eval_every=5000,
    )


PRESETS = {"synthetic": _synthetic, "market": _market, "deepfashion": _deepfashion}


def train_preset(name: str) -> TrainConfig:
    """The named TrainConfig ("synthetic", "market" or "deepfashion")."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {name!r}")
    return PRESETS[name]()


def config_to_dict(config: Any) -> Any:
    """A (nested) dataclass as plain dicts, lists, strings and numbers (tuples become lists)."""
    if dataclasses.is_dataclass(config):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (tuple, list)):
        return [config_to_dict(v) for v in config]
    return config


def _retire_annotations(data: dict[str, Any]) -> dict[str, Any]:
    """Checkpoints written before the dataset-folder layout (2026-12-02) hold data.annotations and
    a data.root that named the image folder. root=DIR/images with annotations=DIR/annotation.csv
    (or None) becomes root=DIR; any other annotation file cannot be expressed and is refused."""
    data = dict(data)
    annotations = data.pop("annotations", None)
    root = data.get("root")
    if root is not None:
        folder = Path(root)
        expected = folder.parent / "annotation.csv" if folder.name == "images" else folder / "annotation.csv"
        if annotations is not None and Path(annotations) != expected:
            raise ValueError(f"this checkpoint trained on images {root} with annotations {annotations}; a data root is "
                             f"now one folder holding images/ and annotation.csv")
        if folder.name == "images":
            data["root"] = str(folder.parent)
    return data


# Fields that older msgen versions saved and how to read them now.
_RETIRED_FIELDS = {"DataConfig": ("annotations", _retire_annotations)}


def config_from_dict(data: dict[str, Any], cls: type = TrainConfig) -> Any:
    """Undo ``config_to_dict``: rebuild ``cls`` from plain containers, checking the field names
    (fields of older versions are translated, see ``_RETIRED_FIELDS``; a DataConfig saved before
    ``framing`` existed trained on Market-framed crops, so it reads as framing "market")."""
    retired = _RETIRED_FIELDS.get(cls.__name__)
    if retired is not None and retired[0] in data:
        data = retired[1](data)
    if cls is DataConfig and "framing" not in data:
        data = {**data, "framing": "market"}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}")
    return cls(**{name: _from_plain(value, hints[name]) for name, value in data.items()})


def _from_plain(value: Any, hint: Any) -> Any:
    if value is None:
        return None
    for option in _union_options(hint):
        if dataclasses.is_dataclass(option) and isinstance(value, dict):
            return config_from_dict(value, option)
        if typing.get_origin(option) is tuple and isinstance(value, (list, tuple)):
            return tuple(value)
    return value


def _union_options(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def with_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """``config`` with dotted-path fields replaced: {"data.workers": 2, "model.loss.lambda_nn": 0.1}."""
    grouped: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    for path, value in overrides.items():
        head, _, rest = path.partition(".")
        if rest:
            grouped.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, sub in grouped.items():
        direct[head] = with_overrides(getattr(config, head), sub)
    return replace(config, **direct)
