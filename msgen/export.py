"""Generator weights as a safetensors file: what a trained model ships as, without the optimiser.

    python -m msgen.export export --checkpoint runs/x/checkpoints/step-00003000.pt --out model.safetensors

A training checkpoint holds G, D, both optimisers and the RNG state (a few times G's size); the
exported file holds G's tensors only, with the run's TrainConfig (``config_to_dict``, as JSON) and
the step in the safetensors metadata, so ``load_generator_weights`` rebuilds the same generator.
safetensors stores raw tensors and a JSON header: loading it runs no pickle code.
``load_generator`` (and so ``MultiSourceGenerator.from_checkpoint``) takes either kind of file: a
training checkpoint (``msgen.checkpoint``, which knows nothing of generators) or an exported one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from msgen.checkpoint import CheckpointError, load_checkpoint, load_module_state
# The file format is read where training reads it too (--init-from), below msgen.export's floor.
from msgen.checkpoint import GENERATOR_FORMAT as FORMAT, read_generator_metadata as read_metadata
from msgen.errors import CommandLineParser, UsageError
from msgen.models import Generator
from msgen.training.config import TrainConfig, config_from_dict

SUFFIX = ".safetensors"


def build_generator(config: TrainConfig, state: Mapping[str, torch.Tensor], path: str | Path,
                    map_location: str | torch.device = "cpu") -> nn.Module:
    """The generator of ``config`` (a TrainConfig) holding the weights ``state``, in eval mode; a
    state of another model size raises CheckpointError naming ``path``."""
    generator = Generator(config.model.generator)
    load_module_state(generator, state, "generator", path)
    return generator.to(map_location).eval()


def load_generator(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig]:
    """The generator of a training checkpoint, or of a file exported by ``python -m msgen.export
    export`` (.safetensors), in eval mode, and its TrainConfig.

    The generator is built from the file's own configuration (``config.model.generator``), so
    any model size loads; its ops run on the implementations that configuration names.
    """
    if Path(path).suffix == SUFFIX:
        return load_generator_weights(path, map_location)
    state = load_checkpoint(path, map_location=map_location)
    config = config_from_dict(state["config"])
    return build_generator(config, state["generator"], path, map_location), config


def export_generator(checkpoint: str | Path, out: str | Path, extra: Mapping[str, str] | None = None) -> Path:
    """Write the generator of a training checkpoint to ``out`` (.safetensors); returns the path.

    extra: further metadata strings (e.g. "held_out_persons", what the model never saw), stored
    beside "format", "config" and "step", which they may not replace."""
    state = load_checkpoint(checkpoint, map_location="cpu")
    tensors = {name: t.detach().contiguous() for name, t in state["generator"].items()}
    metadata = {"format": FORMAT, "config": json.dumps(state["config"]), "step": str(state["step"])}
    clash = sorted(set(extra or {}) & set(metadata))
    if clash:
        raise UsageError(f"--metadata may not set {', '.join(clash)}: export writes them")
    metadata.update({str(k): str(v) for k, v in (extra or {}).items()})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(out)
    return out


def read_config(path: str | Path) -> TrainConfig:
    """The TrainConfig an exported generator file was trained with."""
    return config_from_dict(json.loads(read_metadata(path)["config"]))


def load_generator_weights(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig]:
    """The generator of an exported file, in eval mode, and its TrainConfig (as ``load_generator``)."""
    config = read_config(path)
    return build_generator(config, load_file(str(path)), path, map_location), config


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandLineParser(prog="python -m msgen.export", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write a training checkpoint's generator as safetensors")
    export.add_argument("--checkpoint", type=Path, required=True, help="a training checkpoint (.pt)")
    export.add_argument("--out", type=Path, required=True, help=f"the file to write ({SUFFIX})")
    export.add_argument("--metadata", nargs="+", default=[], metavar="KEY=VALUE",
                        help="further metadata to store in the file, e.g. held_out_persons=0001,0002 or "
                             "note=@FILE (the text of FILE) (default: none)")
    args = parser.parse_args(argv)
    try:
        extra = {}
        for item in args.metadata:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UsageError(f"--metadata: expected KEY=VALUE, got {item!r}")
            extra[key] = Path(value[1:]).read_text().strip() if value.startswith("@") else value
        if args.out.suffix != SUFFIX:
            raise UsageError(f"--out must end in {SUFFIX}, got {args.out}")
        if not args.checkpoint.is_file():
            raise UsageError(f"--checkpoint {args.checkpoint}: no such file")
        out = export_generator(args.checkpoint, args.out, extra)
    except (UsageError, CheckpointError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"written: {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
