"""Training checkpoints: atomic writes, retention of the last K and the best, safe loading.

A checkpoint is a dict of tensors and plain Python values only (no pickled classes), so it loads
with ``torch.load(weights_only=True)``:

    format_version  int, FORMAT_VERSION
    step            int, optimiser steps taken
    config          dict, the TrainConfig (``msgen.training.config.config_to_dict``)
    generator, discriminator, optim_g, optim_d   state dicts
    rng             dict of tensors and numbers (``capture_rng`` / ``restore_rng``)
    metrics         dict str -> float, the latest evaluation (may be empty)
    best_metric     float or None, the best mask-SSIM so far

A file is written to a temporary name in the same directory, flushed to disk, then renamed over the
destination, so a crash mid-write leaves the previous file intact and never a half-written one; the
temporary files a killed save leaves are removed by ``remove_stale_temporaries``. A checkpoint that
cannot be used raises ``CheckpointError`` saying why (empty, not a torch file, Python objects that
safe loading refuses, truncated, another format version); ``newest_valid_checkpoint`` skips such
files and takes the newest one that loads.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from msgen.errors import UsageError

FORMAT_VERSION = 1
GENERATOR_FORMAT = "msgen-generator-1"  # the metadata "format" of an exported generator (msgen.export)
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")
_TEMPORARY = re.compile(r"^\..+\.(tmp|link)$")  # atomic_save's and _mark_best's temporary names
BEST_NAME = "best.pt"


class CheckpointError(UsageError):
    """A checkpoint that cannot be used: wrong format version, another model size, not msgen's.

    A UsageError (bad input): the command-line tools print it as one line and exit with status 2."""


def atomic_save(obj: Mapping[str, Any], path: str | Path) -> Path:
    """torch.save ``obj`` to ``path`` so that ``path`` is either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(obj), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk (POSIX; a no-op elsewhere).
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unreadable_reason(path: Path, error: Exception) -> str:
    """Why torch.load failed on ``path``, in words (the file's first bytes tell most cases apart)."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes), e.g. a save that was killed"
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch.save's zip format / a legacy pickle
        text = str(error)
        if "weights_only" in text or "Unsupported global" in text or "Unpickler" in text:
            first = next((line.strip() for line in text.splitlines() if "Unsupported" in line), "")
            return ("it holds pickled Python objects that safe loading (weights_only=True) refuses, so "
                    f"it was not written by msgen's training{': ' + first if first else ''}")
        return f"the torch file is truncated or corrupt ({size} bytes): {text.splitlines()[0] if text else type(error).__name__}"
    try:
        head.decode("utf-8")
        return f"it is a text file, not a torch checkpoint (it starts with {head[:40].decode('utf-8')!r})"
    except UnicodeDecodeError:
        return f"it is not a torch checkpoint (it starts with the bytes {head[:8].hex(' ')})"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and check its format version.

    Raises FileNotFoundError for a missing file and CheckpointError (a UsageError) naming the file
    and the reason it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}" if not path.exists()
                                else f"checkpoint {path} is not a file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # unpickling refusals and truncated files alike
        raise CheckpointError(f"{path} is not a loadable msgen checkpoint: {_unreadable_reason(path, error)}") from error
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path} is not an msgen training checkpoint: it loads, but holds "
                              f"{'a dict without format_version' if isinstance(state, dict) else type(state).__name__}")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format_version {state['format_version']}, but this msgen reads "
            f"format_version {FORMAT_VERSION}; use the msgen release that wrote it"
        )
    return state


def load_module_state(module: nn.Module, state: Mapping[str, torch.Tensor], what: str, path: str | Path) -> None:
    """``module.load_state_dict`` with an error that names the checkpoint and the first mismatch."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        detail = (
            f"missing {missing[:3]}" if missing
            else f"unexpected {unexpected[:3]}" if unexpected
            else f"{mismatched[0]} is {tuple(state[mismatched[0]].shape)} in the checkpoint but "
            f"{tuple(own[mismatched[0]].shape)} in the model"
        )
        raise CheckpointError(
            f"the {what} in {path} has another size than the model built from the configuration "
            f"({detail}); build the model from the checkpoint's own config"
        )
    module.load_state_dict(state)


def capture_rng() -> dict[str, Any]:
    """The RNG states of torch (CPU and every CUDA device), NumPy's global RNG and Python's random."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, words, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss),
        "numpy_gauss": float(gauss),
        "python_words": torch.tensor(words, dtype=torch.int64),
        "python_version": int(version),
        "python_gauss": gauss_next,
    }


def restore_rng(state: Mapping[str, Any]) -> None:
    """Undo ``capture_rng``: every RNG continues exactly where it was captured."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(
        ("MT19937", keys, state["numpy_pos"], state["numpy_has_gauss"], state["numpy_gauss"])
    )
    words = tuple(int(w) for w in state["python_words"].tolist())
    random.setstate((state["python_version"], words, state["python_gauss"]))


def step_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """The ``step-<N>.pt`` files of a directory as (N, path), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _STEP_FILE.match(p.name))]
    return sorted(found)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest ``step-<N>.pt`` in ``directory``, or None."""
    found = step_checkpoints(directory)
    return found[-1][1] if found else None


def newest_valid_checkpoint(directory: str | Path) -> tuple[Path | None, dict[str, Any] | None, list[str]]:
    """The newest ``step-<N>.pt`` of ``directory`` that loads, its state, and one line per newer
    file that was skipped and why. (None, None, skipped) when no file loads."""
    skipped = []
    for _, path in reversed(step_checkpoints(directory)):
        try:
            return path, load_checkpoint(path), skipped
        except CheckpointError as error:
            skipped.append(str(error))
    return None, None, skipped


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files (``.<name>.*.tmp``, ``.best.pt.link``) that a killed save left in
    ``directory``; returns them. Call it only where no other process is saving into ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if _TEMPORARY.match(p.name) and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


class CheckpointManager:
    """Writes ``step-<N>.pt`` files into ``directory``, keeps the last ``keep_last`` and ``best.pt``.

    The best is the checkpoint with the highest ``metric`` passed to ``save`` (mask-SSIM); until a
    save comes with a metric, it is the newest checkpoint, so ``best.pt`` exists from the first save.
    It is a hard link to (or, where links are impossible, a copy of) the step file, so it survives
    pruning.
    """

    def __init__(self, directory: str | Path, keep_last: int, best_metric: float | None = None) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.best_metric = best_metric

    def is_better(self, metric: float | None) -> bool:
        return metric is not None and (self.best_metric is None or metric > self.best_metric)

    def save(self, step: int, state: dict[str, Any], metric: float | None = None) -> Path:
        """Write the checkpoint of ``step``; ``metric`` (higher is better) decides ``best.pt``."""
        # Before any evaluation nothing is known to be better than the newest checkpoint.
        better = self.is_better(metric) or self.best_metric is None
        if better and metric is not None:
            self.best_metric = metric
        state = {**state, "format_version": FORMAT_VERSION, "step": step, "best_metric": self.best_metric}
        path = atomic_save(state, self.directory / f"step-{step:08d}.pt")
        if better:
            self._mark_best(path, state)
        self._prune()
        return path

    def _mark_best(self, path: Path, state: dict[str, Any]) -> None:
        best = self.directory / BEST_NAME
        tmp = self.directory / f".{BEST_NAME}.link"
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)
        except OSError:
            atomic_save(state, best)
            return
        os.replace(tmp, best)
        _fsync_dir(self.directory)

    def _prune(self) -> None:
        for _, old in step_checkpoints(self.directory)[: -self.keep_last]:
            old.unlink(missing_ok=True)


def read_generator_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors metadata of an exported generator file (``msgen.export``: "format",
    "config" as JSON, "step"); UsageError naming the file if it is not one."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise UsageError(f"{path} is not a safetensors file ({error})") from None
    if metadata.get("format") != GENERATOR_FORMAT:
        raise UsageError(f"{path} is not an msgen generator file (format {metadata.get('format')!r}, "
                         f"expected {GENERATOR_FORMAT!r}; export one with python -m msgen.export export)")
    return metadata
