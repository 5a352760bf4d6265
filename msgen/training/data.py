"""The training and held-out tuples of a run, from its DataConfig.

The synthetic dataset is generated on first use into a cache folder named by a hash of its
generation parameters (``--data.synthetic-cache``, else ``$MSGEN_CACHE``, default ~/.cache/msgen,
``/synthetic-<hash>``), through a
temporary folder renamed into place, so an interrupted generation never leaves a half-written
dataset and concurrent runs do not collide. Under torchrun, rank 0 generates while the others wait.

Persons are split into training and held-out persons by ``msgen.data.split.run_split``: the
folder's split.json, else ``split_by_identity``, the same call msgen.evaluate makes; tuples are drawn
at the largest M of the run and truncated to each batch's M, the way
evaluation at several M truncates the same test tuples: the dataset's items ``(index, m)`` load
only the first m sources. Every person with at least min(M) + 1 images trains: a person of n images
gives tuples of min(n - 1, M_max) sources, which serve every M up to that (``StepBatchSampler``);
``RunData.description`` says how many persons and images each M uses and who was dropped and why.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from msgen.data import PoseImageFolder, TupleDataset, deepfashion_identity, market_identity, sample_tuples
from msgen.data.folder import DROP_REASONS
from msgen.data.split import Split, restrict, run_split
from msgen.data.tuples import persons_serving
from msgen.data.synthetic import generate_synthetic
from msgen.data.prepare import DEFAULT_FRAMING, SUMMARY
from msgen.training.config import FRAMINGS, IDENTITIES, DataConfig
from msgen.training.distributed import Distributed, barrier
from msgen.errors import UsageError
from msgen.pose.framing import check_sizes


def cache_root(data: DataConfig | None = None) -> Path:
    """Where synthetic sets are generated: data.synthetic_cache, $MSGEN_CACHE or ~/.cache/msgen."""
    if data is not None and data.synthetic_cache is not None:
        return Path(data.synthetic_cache)
    return Path(os.environ.get("MSGEN_CACHE", Path.home() / ".cache" / "msgen"))


def synthetic_parameters(data: DataConfig, image_size: tuple[int, int]) -> dict:
    return {"identities": data.identities, "images_per_identity": data.images_per_identity,
            "size": list(image_size), "seed": data.seed}


def synthetic_dir(data: DataConfig, image_size: tuple[int, int]) -> Path:
    """The folder of the synthetic set of these parameters, under ``cache_root(data)``."""
    key = json.dumps(synthetic_parameters(data, image_size), sort_keys=True)
    return cache_root(data) / f"synthetic-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def ensure_synthetic(data: DataConfig, image_size: tuple[int, int], log: Callable[[str], None] = print) -> Path:
    """Generate the synthetic set unless it is there; returns its folder."""
    folder = synthetic_dir(data, image_size)
    if (folder / "synthetic.json").is_file():
        return folder
    count = data.identities * data.images_per_identity
    log(f"generating the synthetic dataset ({count} images, {image_size[0]}x{image_size[1]}) into {folder}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        workers = max(1, min(os.cpu_count() or 1, 8))
        generate_synthetic(tmp, data.identities, data.images_per_identity, image_size, data.seed, workers)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished first: keep its copy
            if not (folder / "synthetic.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


@dataclass
class RunData:
    """The datasets of a run: training tuples and held-out tuples (persons disjoint), and the split.

    Tuples hold min(n - 1, M_max) sources for a person of n images; ``capacities`` lists the
    training tuples' source counts (for ``StepBatchSampler``). ``held_out_by_m``: {M: the held-out
    tuples that serve M}, what the periodic evaluation scores at each M.
    """

    train: TupleDataset
    held_out: TupleDataset
    description: str
    split: Split | None = None
    capacities: list[int] | None = None
    held_out_by_m: dict[int, TupleDataset] | None = None


def _usage(identities: dict[str, list[str]], num_sources: Sequence[int], side: str) -> str:
    """'M=1: 108 persons (300 images), M=2: 40 persons (212 images); dropped: 3 persons with one image
    (a tuple needs a source and a target)' for the persons of one side of the split."""
    ms = sorted(set(num_sources))
    serving = persons_serving(identities, ms)
    text = ", ".join(f"M={m}: {p} persons ({i} images)" for m, (p, i) in serving.items())
    dropped = len(identities) - serving[ms[0]][0]
    if dropped:
        text += (f"; dropped {dropped} {side} persons with fewer than {ms[0] + 1} images "
                 f"(a tuple at M={ms[0]} needs {ms[0]} sources and a target)")
    return text


def dataset_dir(data: DataConfig, image_size: tuple[int, int]) -> Path:
    """The dataset folder ``data`` names: data.root, or the synthetic set's cache folder.

    Raises UsageError naming --data.root when the folder or its images/annotation.csv is missing.
    """
    if data.root is None:
        return synthetic_dir(data, image_size)
    root = Path(data.root)
    expected = "a dataset folder holding images/, annotation.csv and (from python -m msgen.data.prepare) split.json"
    if not root.is_dir():
        raise UsageError(f"--data.root {root}: no such folder; expected {expected}")
    for part in ("images", "annotation.csv"):
        if not (root / part).exists():
            raise UsageError(f"--data.root {root}: {part} is missing; expected {expected}")
    return root


def identity_function(name: str | None) -> Callable[[str], str]:
    """The file name -> person rule named ``name`` (None: Market's)."""
    return deepfashion_identity if name == "deepfashion" else market_identity


def folder_rules(root: Path) -> dict | None:
    """The rules ``python -m msgen.data.prepare`` recorded in root/summary.json: {"identity",
    "framing", "image_size" (H, W) or None}; None when the folder has no summary.json. A summary
    written before identity and framing were recorded names its --dataset, which implies both."""
    path = Path(root) / SUMMARY
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
        dataset = summary.get("dataset")
        identity = summary.get("identity", dataset)
        framing = summary.get("framing", DEFAULT_FRAMING.get(dataset))
        size = summary.get("image_size")
    except (OSError, ValueError, AttributeError) as error:
        raise UsageError(f"{path}: not a summary written by python -m msgen.data.prepare ({error})") from None
    if identity not in IDENTITIES or framing not in FRAMINGS:
        raise UsageError(f"{path}: identity {identity!r} / framing {framing!r}, expected one of {IDENTITIES} / "
                         f"{FRAMINGS}; rewrite it with python -m msgen.data.prepare")
    return {"identity": identity, "framing": framing, "image_size": tuple(size) if size else None}


def resolve_rules(data: DataConfig, image_size: tuple[int, int] | None) -> tuple[DataConfig, list[str]]:
    """``data`` with identity and framing made concrete, and the notices to show.

    The dataset folder's summary.json gives them; an option that differs from it overrides it
    with a notice; a folder without one gets the Market rule with a notice naming it. The
    synthetic set (no data.root) is Market-like: Market's rules, no notice. A folder whose images
    have another size than the model's (``image_size``; None: no model yet) gets a notice that they
    are resized.
    """
    if data.root is None:
        return replace(data, identity=data.identity or "market", framing=data.framing or "market"), []
    root = dataset_dir(data, image_size or (0, 0))
    rules, notices, resolved = folder_rules(root), [], {}
    for key in ("identity", "framing"):
        given, folder = getattr(data, key), (rules or {}).get(key)
        if given is not None:
            resolved[key] = given
            if folder is not None and folder != given:
                notices.append(f"NOTE: --data.{key} {given} overrides the {key} {folder} of {root / SUMMARY}")
        elif folder is not None:
            resolved[key] = folder
        else:
            resolved[key] = "market"
    missing = [key for key in ("identity", "framing") if getattr(data, key) is None and rules is None]
    if missing:
        notices.append(f"NOTE: {root} has no {SUMMARY} (python -m msgen.data.prepare writes one): the Market "
                       f"rule for its {' and '.join(missing)} (person = the name before the first _; Market-1501 "
                       f"crops); set --data.{missing[0]} otherwise")
    size = (rules or {}).get("image_size")
    if size is not None and image_size is not None and tuple(size) != tuple(image_size):
        notices.append(f"NOTE: the images of {root} are {size[0]}x{size[1]} (HxW), the model's {image_size[0]}x"
                       f"{image_size[1]}: they are resized when loaded")
    return replace(data, **resolved), notices


def open_folder(data: DataConfig, image_size: tuple[int, int], resize: bool = True) -> PoseImageFolder:
    """The PoseImageFolder of the run's dataset folder (which must exist), by ``data.identity``
    (None: Market's rule; ``resolve_rules`` gives the folder's)."""
    root = dataset_dir(data, image_size)
    folder = PoseImageFolder(root / "images", root / "annotation.csv", image_size=image_size,
                             identity_fn=identity_function(data.identity),
                             drop_junk=data.identity in (None, "market"), resize=resize)
    if resize:  # resizing to another aspect ratio squeezes people: say so, once, with the ratio
        check_sizes(folder.image_sizes(), image_size, f"--data.root {root}", True, "")
    return folder


def build_run_data(data: DataConfig, image_size: tuple[int, int], num_sources: int | Sequence[int],
                   state: Distributed, log: Callable[[str], None] = print) -> RunData:
    """The run's split (``run_split``: split.json or derived), tuples of up to M_max sources for both
    sides, every person with at least min(num_sources) + 1 images taking part.

    Training tuples come from the split's training persons only; the held-out tuples, scored
    during training (best.pt's choice) and drawn in the sample grids, from its validation persons:
    never from its test persons, which only msgen.evaluate scores.
    """
    ms = sorted({num_sources} if isinstance(num_sources, int) else set(num_sources))
    max_sources = ms[-1]
    if data.root is None:
        if state.is_main:
            ensure_synthetic(data, image_size, log)
        barrier(state)
    folder = open_folder(data, image_size)
    split = run_split(dataset_dir(data, image_size), folder.identities, data.test_fraction, data.seed, max_sources,
                      validation_fraction=data.validation_fraction)
    train_ids = restrict(folder.identities, split.train_persons)
    held_ids = restrict(folder.identities, split.validation_persons)
    if not held_ids:
        raise UsageError(f"the split of {folder.root.parent} has no validation person in the folder "
                         f"({len(folder.identities)} persons); raise --data.validation-fraction or rewrite "
                         f"split.json with python -m msgen.data.prepare")
    train_tuples = sample_tuples(train_ids, max_sources, seed=data.seed, max_tuples=None, min_sources=ms[0])
    held_tuples = sample_tuples(held_ids, max_sources, seed=data.seed + 1, max_tuples=None, min_sources=ms[0])
    if not train_tuples or not held_tuples:
        raise UsageError(
            f"no tuples of M={ms[0]} sources on the {'training' if not train_tuples else 'held-out'} side: its "
            f"persons have too few images (each needs >= {ms[0] + 1}); lower --num-sources or add images"
        )
    held_by_m = {m: TupleDataset(folder, [(s[:m], t) for s, t in held_tuples if len(s) >= m][: data.eval_tuples])
                 for m in ms}
    missing = [m for m, dataset in held_by_m.items() if not len(dataset)]
    if missing:
        raise UsageError(f"no validation person has {missing[0] + 1} images, so M={missing[0]} cannot be evaluated; "
                         f"drop it from --num-sources or raise --data.validation-fraction")
    held_count = max(data.eval_tuples, data.sample_tuples)
    dropped = "; ".join(f"{n} {DROP_REASONS[reason]}" for reason, n in folder.dropped.items() if n)
    description = (f"{folder.root}: {len(train_ids)} training persons ({len(train_tuples)} tuples), "
                   f"{len(held_ids)} validation persons (evaluated during training, best.pt; "
                   f"{len(restrict(folder.identities, split.test_persons))} test persons never seen), "
                   f"M <= {max_sources}; split: {split.origin}\n"
                   f"  training persons by M: {_usage(train_ids, ms, 'training')}\n"
                   f"  validation persons by M: {_usage(held_ids, ms, 'validation')}\n"
                   f"  images dropped by the folder: {dropped or 'none'}")
    return RunData(TupleDataset(folder, train_tuples), TupleDataset(folder, held_tuples[:held_count]), description,
                   split, [len(s) for s, _ in train_tuples], held_by_m)
