"""``python -m msgen.train``: the command line, generated from the TrainConfig dataclass.

Every field of TrainConfig is an option named by its path, underscores as hyphens: ``--steps``,
``--num-sources 1,2,3,5``, ``--data.workers 2``, ``--model.generator.width 0.25``,
``--model.loss.lambda-nn 0.01``, ``--compile / --no-compile``. Tuples take comma-separated values
(``--model.generator.image-size 64,32``); an optional field takes ``none``. Options given on the
command line replace the fields of the base configuration, which is ``--preset`` (default
"synthetic") or, with ``--resume`` / ``--init-from``, the configuration saved in the checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from msgen.checkpoint import CheckpointError, load_checkpoint, newest_valid_checkpoint
from msgen.errors import CommandLineParser, UsageError
from msgen.training.config import PRESETS, TrainConfig, config_from_dict, train_preset, with_overrides

# Fields that are not options: the preset is chosen by --preset, before any override applies.
_NOT_OPTIONS = {"preset"}


def _leaf_fields(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted path, type hint, help text) of every non-dataclass field of ``cls``, depth first.

    The help text is the field's ``metadata["help"]``: the dataclass is its one source."""
    hints = typing.get_type_hints(cls)
    leaves = []
    for f in dataclasses.fields(cls):
        if not prefix and f.name in _NOT_OPTIONS:
            continue
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            leaves += _leaf_fields(hint, f"{prefix}{f.name}.")
        else:
            leaves.append((prefix + f.name, hint, f.metadata.get("help", "")))
    return leaves


def _parser_for(hint: Any, path: str) -> Callable[[str], Any]:
    """A function turning the option's text into a value of type ``hint``."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    optional = type(None) in options
    options = tuple(o for o in options if o is not type(None))
    # A union of a plain type and a config object (GeneratorConfig.ops: str | OpsConfig) is given
    # as its plain form on the command line.
    base = next((o for o in options if not dataclasses.is_dataclass(o)), options[0])

    def parse(text: str) -> Any:
        if optional and text.lower() == "none":
            return None
        if typing.get_origin(base) is tuple:
            args = typing.get_args(base)
            item = args[0]
            parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
            if args[-1] is not Ellipsis and len(parts) != len(args):
                raise argparse.ArgumentTypeError(f"--{_flag(path)} takes {len(args)} comma-separated values")
            return tuple(item(p) for p in parts)
        if base is bool:
            raise argparse.ArgumentTypeError("boolean options are flags")
        return base(text)

    parse.__name__ = getattr(base, "__name__", str(base))  # argparse names the type in its errors
    return parse


def _flag(path: str) -> str:
    return path.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="python -m msgen.train",
        description=(
            "Train the multi-source generator. With no arguments: the 'synthetic' preset, on the GPU "
            "when there is one. Outputs go to --out: checkpoints/, samples/, tensorboard/, log.jsonl."
        ),
    )
    parser.add_argument("--preset", choices=tuple(PRESETS), default=None,
                        help="base configuration: 'synthetic' (built-in data, CPU-sized model), 'market' "
                             "or 'deepfashion' (the paper's settings); not with --resume/--init-from "
                             "(default: synthetic)")
    parser.add_argument("--resume", metavar="PATH|auto", default=None,
                        help="continue a run exactly (step, optimisers, RNG, data order) from a checkpoint "
                             "file; 'auto' takes the newest valid one in <out>/checkpoints (skipping "
                             "corrupt files, saying which) and starts at step 0 when there is none "
                             "(default: none, a new run)")
    parser.add_argument("--init-from", metavar="PATH", default=None,
                        help="start a new run (step 0, fresh optimisers) from the weights and configuration "
                             "of a training checkpoint (.pt) or of an exported generator (.safetensors, e.g. "
                             "docs/models/synthetic-full.safetensors; its D starts afresh), e.g. to fine-tune at "
                             "another --num-sources or on another --data.root (default: none)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved configuration and exit without training (default: off)")
    presets = {name: make() for name, make in PRESETS.items()}
    group = parser.add_argument_group(
        "configuration (TrainConfig fields; each default is the synthetic preset's, and where another "
        "preset differs its value follows; with --resume/--init-from the checkpoint's)")
    # Run-level options first, then data.*, then model.* (a stable sort keeps the field order).
    for path, hint, text in sorted(_leaf_fields(TrainConfig), key=lambda leaf: leaf[0].count(".")):
        # argparse %-formats help strings; a literal % in a field's text must be doubled.
        help_text = _with_defaults(text, path, presets).replace("%", "%%").strip()
        if hint is bool:
            group.add_argument(f"--{_flag(path)}", dest=path, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(f"--{_flag(path)}", dest=path, type=_parser_for(hint, path),
                               default=argparse.SUPPRESS, metavar=path.rsplit(".", 1)[-1].upper(),
                               help=help_text)
    return parser


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def _with_defaults(text: str, path: str, presets: dict[str, TrainConfig]) -> str:
    """The field's help with the default in effect: the synthetic preset's (the CLI's default),
    then the other presets' where they differ, so --help never shows a value no run uses.

    A text that states its default itself (a field's own wording) keeps it."""
    values = {name: _shown(_lookup(config, path)) for name, config in presets.items()}
    default = values.pop("synthetic")
    differing: dict[str, list[str]] = {}
    for name, value in values.items():
        if value != default:
            differing.setdefault(value, []).append(name)
    others = "; ".join(f"--preset {' and '.join(names)}: {value}" for value, names in differing.items())
    if "(default:" in text:
        return f"{text} ({others})" if others else text
    return f"{text} (default: {default}{'; ' + others if others else ''})"


def _lookup(config: Any, path: str) -> Any:
    for name in path.split("."):
        config = getattr(config, name)
    return config


@dataclasses.dataclass(frozen=True)
class Invocation:
    """What the command line asks for: the configuration and where its weights start from."""

    config: TrainConfig
    resume: Path | None
    init_from: Path | None


def _say(message: str) -> None:
    print(f"msgen.train: {message}", file=sys.stderr)


def _resume_auto(out: str) -> tuple[Path | None, dict | None]:
    """The newest valid checkpoint of <out>/checkpoints and its state, saying what was found."""
    directory = Path(out) / "checkpoints"
    path, state, skipped = newest_valid_checkpoint(directory)
    for reason in skipped:
        _say(f"--resume auto: skipping {reason}")
    if path is None:
        _say(f"--resume auto: no {'valid ' if skipped else ''}checkpoint in {directory}, starting from step 0")
    else:
        _say(f"--resume auto: resuming from {path} (step {state['step']})")
    return path, state


def parse_args(argv: Sequence[str] | None = None) -> tuple[Invocation, argparse.Namespace]:
    """Resolve the command line into an Invocation (errors exit with one line, status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    special = {"preset", "resume", "init_from", "print_config"}
    overrides = {k: v for k, v in vars(args).items() if k not in special}
    if args.resume and args.init_from:
        parser.error("--resume and --init-from exclude each other")
    if (args.resume or args.init_from) and args.preset:
        parser.error("--preset cannot be combined with --resume/--init-from: the checkpoint's "
                     "configuration is the base; override single fields instead")
    try:
        resume = init_from = None
        base = train_preset(args.preset or "synthetic")
        state = None
        if args.resume == "auto":
            if "out" not in overrides:
                parser.error("--resume auto needs --out (the run folder to continue)")
            resume, state = _resume_auto(overrides["out"])
        elif args.resume:
            resume = Path(args.resume)
            state = _load(resume, "--resume")
        elif args.init_from:
            init_from = Path(args.init_from)
            state = _load_init(init_from)
        if state is not None:
            try:
                base = config_from_dict(state["config"])
            except (ValueError, TypeError) as error:
                raise UsageError(f"{resume or init_from} holds a configuration this msgen cannot read: {error}") from error
            if init_from is not None:
                base = dataclasses.replace(base, out=None)
                if "data.root" in overrides or "data.dataset" in overrides:
                    # Another dataset: its folder's rules apply, not those the checkpoint trained with.
                    base = dataclasses.replace(base, data=dataclasses.replace(base.data, identity=None, framing=None))
        config = with_overrides(base, overrides)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    return Invocation(config, resume, init_from), args


def _load_init(path: Path) -> dict:
    """What --init-from starts from: a training checkpoint, or an exported generator (.safetensors,
    ``python -m msgen.export export``), whose metadata holds the configuration it trained with."""
    if path.suffix != ".safetensors":
        return _load(path, "--init-from")
    import json

    from msgen.checkpoint import read_generator_metadata as read_metadata

    try:
        return {"config": json.loads(read_metadata(path)["config"])}
    except (UsageError, KeyError, ValueError) as error:
        raise UsageError(f"--init-from: {error}") from error


def _load(path: Path, option: str) -> dict:
    try:
        return load_checkpoint(path)
    except (FileNotFoundError, CheckpointError) as error:
        raise UsageError(f"{option}: {error}") from error


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI. Returns the exit status: 0 done, 1 stopped on a non-finite loss, 2 bad input or a
    configuration that cannot run (one line ``error: ...``, no output folder left behind), 130
    interrupted by Ctrl-C (SIGINT), 143 by SIGTERM (both after saving a checkpoint)."""
    invocation, args = parse_args(argv)
    if args.print_config:
        print(invocation.config)
        return 0
    config = invocation.config
    from msgen.training.loop import DataError, NonFiniteLossError, SetupError, TrainingInterrupted, train

    try:
        result = train(config, resume=invocation.resume, init_from=invocation.init_from)
    except NonFiniteLossError as error:
        print(f"msgen.train: stopped: {error}", file=sys.stderr)
        return 1
    except (SetupError, DataError, UsageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted as error:
        print(f"msgen.train: {error}", file=sys.stderr)
        return error.exit_code
    if result.start_step == result.step:
        print(finished(result, invocation.resume, config))
    elif result.best_checkpoint is not None:  # rank 0 (the others have no outputs to name)
        print(summary(result, config))
    return 0


def finished(result: Any, resume: Path | None, config: TrainConfig) -> str:
    """What --resume on a run already at its --steps says instead of training nothing."""
    lines = [f"msgen.train: the run in {result.out} is finished: {resume} is at step {result.step} of "
             f"--steps {config.steps}, so there is nothing to train."]
    if result.best_checkpoint is not None:
        lines.append(f"  its best model: {result.best_checkpoint}")
    lines.append(f"  to train further, give a larger --steps: python -m msgen.train --resume auto --out {result.out} "
                 f"--steps {2 * result.step}" + (" (the lr decay follows --steps, so the lr first rises to what "
                                                 "the longer schedule gives at this step)" if config.lr_decay else ""))
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def summary(result: Any, config: TrainConfig) -> str:
    """What a finished run (a msgen.training.loop.TrainResult) left and how to go on, in lines."""
    best = result.best_checkpoint
    if result.best_metric is None:
        score = "the newest checkpoint: no validation evaluation ran (--eval-every)"
    else:
        at = f" at step {result.best_step}" if result.best_step is not None else ""
        per_m = ", ".join(f"M = {m}: {result.metrics[f'mask_ssim_m{m}']:.3f}" for m in config.num_sources
                          if f"mask_ssim_m{m}" in result.metrics)
        score = (f"validation mask-SSIM {result.best_metric:.4f}{at} (mean over M of {config.data.eval_tuples} "
                 f"tuples of the validation persons, never trained on; the last evaluation: {per_m or 'none'}; "
                 f"the test persons are msgen.evaluate's)")
    lines = [
        f"msgen.train: finished steps {result.start_step} -> {result.step} in {_duration(result.seconds)}",
        f"  best model: {best} ({score})",
        f"  samples: {result.out / 'samples'}; curves: tensorboard --logdir {result.out / 'tensorboard'}",
        f"  generate: python -m msgen.generate --checkpoint {best} --sources IMAGE... --target-pose POSE",
        f"  evaluate: python -m msgen.evaluate --checkpoint {best}",
        f"  train further: python -m msgen.train --resume auto --out {result.out} --steps {2 * result.step}",
    ]
    return "\n".join(lines)
