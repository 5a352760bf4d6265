"""Generator weights as a safetensors file: what a trained model ships as, without the optimiser.

    python -m msgen.weights export --checkpoint runs/x/checkpoints/step-00003000.pt --out model.safetensors

A training checkpoint holds G, D, both optimisers and the RNG state (a few times G's size); the
exported file holds G's tensors only, with the run's TrainConfig (``config_to_dict``, as JSON) and
the step in the safetensors metadata, so ``load_generator_weights`` rebuilds the same generator.
safetensors stores raw tensors and a JSON header: loading it runs no pickle code.
``msgen.checkpoint.load_generator`` (and so ``MultiSourceGenerator.from_checkpoint``) takes either
kind of file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from msgen.checkpoint import CheckpointError, build_generator, load_checkpoint
from msgen.errors import UsageError

FORMAT = "msgen-generator-1"
SUFFIX = ".safetensors"


def export_generator(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the generator of a training checkpoint to ``out`` (.safetensors); returns the path."""
    state = load_checkpoint(checkpoint, map_location="cpu")
    tensors = {name: t.detach().contiguous() for name, t in state["generator"].items()}
    metadata = {"format": FORMAT, "config": json.dumps(state["config"]), "step": str(state["step"])}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(out)
    return out


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an exported generator file; UsageError naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise UsageError(f"{path} is not a safetensors file ({error})") from None
    if metadata.get("format") != FORMAT:
        raise UsageError(f"{path} is not an msgen generator file (format {metadata.get('format')!r}, "
                         f"expected {FORMAT!r}; export one with python -m msgen.weights export)")
    return metadata


def read_config(path: str | Path) -> Any:
    """The TrainConfig an exported generator file was trained with."""
    from msgen.training.config import config_from_dict

    return config_from_dict(json.loads(read_metadata(path)["config"]))


def load_generator_weights(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, Any]:
    """The generator of an exported file, in eval mode, and its TrainConfig (as ``load_generator``)."""
    config = read_config(path)
    return build_generator(config, load_file(str(path)), path, map_location), config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m msgen.weights", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write a training checkpoint's generator as safetensors")
    export.add_argument("--checkpoint", type=Path, required=True, help="a training checkpoint (.pt)")
    export.add_argument("--out", type=Path, required=True, help=f"the file to write ({SUFFIX})")
    args = parser.parse_args(argv)
    try:
        if args.out.suffix != SUFFIX:
            raise UsageError(f"--out must end in {SUFFIX}, got {args.out}")
        if not args.checkpoint.is_file():
            raise UsageError(f"--checkpoint {args.checkpoint}: no such file")
        out = export_generator(args.checkpoint, args.out)
    except (UsageError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"written: {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
