"""The one split of a dataset folder: written once, read by training and evaluation.

A dataset folder DIR holds ``images/``, ``annotation.csv`` and ``split.json``. ``split.json`` is
written by ``python -m msgen.data.prepare`` and lists the training persons, the validation
persons, the test persons and the test tuples (``[source_0, ..., source_{k-1}, target]``, k >= 1
sources: every test person serves each M its images allow, k = min(n - 1, M_max) for n images).
``msgen.train`` draws its training tuples from the training persons only, scores its periodic
evaluation (and chooses best.pt) on the validation persons, and ``msgen.evaluate`` scores the test
tuples: all get the split from ``run_split``, which reads the file or, when the folder has none
(the synthetic set, a custom folder), derives it by ``split_by_identity`` with the run's
test_fraction, validation_fraction and seed, so the sides always agree. The three sets of persons
are disjoint; the validation persons are drawn from the non-test persons after the test persons,
so adding them never changes which persons are tested. A split.json written before validation
persons existed gets them derived the same way from its training persons.

Official splits (``official_split``): the public pose-transfer releases ship the train and test
annotations as two CSVs (Market-1501: market-annotation-train.csv / -test.csv; DeepFashion:
fasion-annotation-train.csv / -test.csv) and the standard test pairs (market-pairs-test.csv,
12,000 ``from,to`` rows; fasion-pairs-test.csv). The training persons are the persons of the
train CSV, the test persons those of the test CSV, and each test tuple starts with its pair's
source and ends with its pair's target: at M = 1 the tuples ARE the standard pairs, in order.
For M > 1 the other sources are further test images of the same person (seeded random order,
never the pair's source or target); a person with fewer images gives a tuple of fewer sources.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from msgen.data.tuples import Tuple, sample_tuples, split_by_identity
from msgen.errors import UsageError

SPLIT_FILE = "split.json"
FORMAT = 1


class SplitLeakError(UsageError):
    """A person is on two sides of the split (or a test tuple mixes persons)."""


@dataclass
class Split:
    """Training, validation and test persons and the test tuples of one dataset.

    test_tuples: (sources, target) with >= 1 source each; the sources differ in number between
    tuples (persons with few images serve the small M only). ``origin`` says how it was made.
    validation_persons: held out from training for its periodic evaluation and best.pt, never
    tested.
    """

    train_persons: list[str]
    test_persons: list[str]
    test_tuples: list[Tuple]
    origin: str
    extra: dict = field(default_factory=dict)
    validation_persons: list[str] = field(default_factory=list)

    def tuples_with(self, num_sources: int) -> list[Tuple]:
        """The test tuples that have >= ``num_sources`` sources, truncated to exactly that many."""
        return [(list(s[:num_sources]), t) for s, t in self.test_tuples if len(s) >= num_sources]

    def to_json(self) -> dict:
        return {"format": FORMAT, "origin": self.origin, "train_persons": sorted(self.train_persons),
                "validation_persons": sorted(self.validation_persons), "test_persons": sorted(self.test_persons),
                "test_tuples": [[*sources, target] for sources, target in self.test_tuples], **self.extra}


def check_disjoint(split: Split, identity_fn: Callable[[str], str] | None = None) -> None:
    """Raise SplitLeakError if a person is on two sides (training, validation, test), or (with
    identity_fn) a test tuple holds an image of a non-test person or of two persons."""
    sides = {"training": set(split.train_persons), "validation": set(split.validation_persons),
             "test": set(split.test_persons)}
    for a, b in (("test", "training"), ("test", "validation"), ("validation", "training")):
        both = sorted(sides[a] & sides[b])
        if both:
            raise SplitLeakError(f"{len(both)} {a} person(s) are also {b} persons: {', '.join(both[:5])}")
    if identity_fn is None:
        return
    test = sides["test"]
    for index, (sources, target) in enumerate(split.test_tuples):
        persons = {identity_fn(name) for name in (*sources, target)}
        if len(persons) != 1 or not persons <= test:
            raise SplitLeakError(f"test tuple {index} ({', '.join([*sources, target])}) has persons "
                                 f"{sorted(persons)}; a test tuple shows one test person")


def write_split(path: str | Path, split: Split) -> Path:
    """Write ``split`` as JSON (atomically: a temporary file renamed into place)."""
    path = Path(path)
    check_disjoint(split)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(split.to_json(), indent=1) + "\n")
    tmp.replace(path)
    return path


def read_split(path: str | Path) -> Split:
    """Read a split.json; raises UsageError naming the file when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        extra = {k: v for k, v in data.items()
                 if k not in ("format", "origin", "train_persons", "validation_persons", "test_persons", "test_tuples")}
        split = Split(list(data["train_persons"]), list(data["test_persons"]),
                      [(list(row[:-1]), row[-1]) for row in data["test_tuples"]], str(data["origin"]), extra,
                      list(data.get("validation_persons", [])))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise UsageError(f"{path}: not a msgen split file ({error}); rewrite it with python -m msgen.data.prepare") from None
    if data.get("format") != FORMAT:
        raise UsageError(f"{path}: split format {data.get('format')!r}, this msgen reads {FORMAT}")
    if any(not sources for sources, _ in split.test_tuples):
        raise UsageError(f"{path}: a test tuple without a source")
    check_disjoint(split)
    return split


def validation_persons(identities: Mapping[str, Sequence[str]], validation_fraction: float, seed: int) -> list[str]:
    """The persons of ``identities`` (the non-test persons) held out for validation:
    ``split_by_identity`` with seed + 2, stratified by image count like the test persons; at least
    one person when there are two or more (a share that rounds to none still validates on one)."""
    if validation_fraction == 0 or len(identities) < 2:
        return []
    return sorted(split_by_identity(identities, max(validation_fraction, 1 / len(identities)), seed + 2)[1])


def fold_by_identity(identities: Mapping[str, Sequence[str]], folds: int, fold: int,
                     seed: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(rest, test) for fold ``fold`` of ``folds``-fold cross-validation over persons.

    Stratified by image count like ``split_by_identity``: persons ranked by their number of images
    (ties in seeded random order), and each run of ``folds`` consecutive ranks deals one person to
    each fold in a seeded random order. Every person is in exactly one fold's test side; the folds
    differ by at most one person in size.
    """
    if folds < 2:
        raise UsageError(f"--folds must be >= 2, got {folds}")
    if not 0 <= fold < folds:
        raise UsageError(f"--fold must be in 0..{folds - 1}, got {fold}")
    if len(identities) < folds:
        raise UsageError(f"--folds {folds}: only {len(identities)} persons, fewer than the folds")
    keys = sorted(identities)
    rng = np.random.default_rng(seed)
    tie_break = rng.permutation(len(keys))
    ranked = sorted(range(len(keys)), key=lambda i: (-len(identities[keys[i]]), tie_break[i]))
    rest, test = {}, {}
    for start in range(0, len(ranked), folds):
        deal = rng.permutation(folds)  # which fold each of this run of ranks goes to
        for offset, i in enumerate(ranked[start:start + folds]):
            (test if deal[offset] == fold else rest)[keys[i]] = list(identities[keys[i]])
    return rest, test


def derive_split(identities: Mapping[str, Sequence[str]], test_fraction: float, seed: int, num_sources: int,
                 max_test_tuples: int | None, validation_fraction: float = 0.0,
                 folds: tuple[int, int] | None = None) -> Split:
    """Hold out test persons (``split_by_identity``, or with ``folds`` = (K, k) fold k of K by
    ``fold_by_identity``), then validation persons from the rest (``validation_persons``: the test
    persons do not depend on it), and sample test tuples of up to ``num_sources`` sources, every
    test person with 2 or more images serving the M its images allow (seed + 1, the sampling seed
    training has always used for its held-out tuples)."""
    if folds is None:
        rest, test = split_by_identity(identities, test_fraction, seed)
        held = f"split_by_identity(test_fraction={test_fraction}, seed={seed})"
    else:
        rest, test = fold_by_identity(identities, folds[0], folds[1], seed)
        held = f"fold_by_identity(folds={folds[0]}, fold={folds[1]}, seed={seed})"
    validation = validation_persons(rest, validation_fraction, seed)
    train = sorted(set(rest) - set(validation))
    tuples = sample_tuples(test, num_sources, seed + 1, max_tuples=max_test_tuples, min_sources=1)
    origin = (f"persons held out by {held}, validation persons {validation_fraction} of the rest (seed {seed + 2}); "
              f"tuples of up to {num_sources} sources sampled with seed {seed + 1}")
    return Split(train, sorted(test), list(tuples), origin, validation_persons=validation)


def limit_train_persons(split: Split, max_persons: int, seed: int) -> Split:
    """``split`` keeping ``max_persons`` of its training persons (a learning curve's smaller
    training sets): the first of a seeded permutation (seed + 3), so a smaller set is part of every
    larger one with the same seed. Dropped persons join no side; validation and test are kept."""
    if max_persons < 1:
        raise UsageError(f"--max-train-persons must be >= 1, got {max_persons}")
    persons = sorted(split.train_persons)
    order = np.random.default_rng(seed + 3).permutation(len(persons))
    kept = sorted(persons[i] for i in order[:max_persons])
    origin = split.origin + f"; training persons limited to {len(kept)} of {len(persons)} (seed {seed + 3})"
    return Split(kept, split.test_persons, split.test_tuples, origin, split.extra, split.validation_persons)


def run_split(dataset_dir: str | Path, identities: Mapping[str, Sequence[str]], test_fraction: float, seed: int,
              num_sources: int, max_test_tuples: int | None = 12000, validation_fraction: float = 0.0) -> Split:
    """THE split of a run: ``dataset_dir/split.json`` when it exists, else ``derive_split``.

    identities: {person: image names} of the folder (``PoseImageFolder.identities``), used only to
    derive a split. Training and msgen.evaluate both call this, so they cannot disagree. A
    split.json without validation persons (written before they existed) gets them from its
    training persons (``validation_persons``), and says so in ``origin``.
    """
    path = Path(dataset_dir) / SPLIT_FILE
    if not path.is_file():
        return derive_split(identities, test_fraction, seed, num_sources, max_test_tuples, validation_fraction)
    split = read_split(path)
    if not split.validation_persons and validation_fraction > 0:
        train = restrict(identities, split.train_persons)
        split.validation_persons = validation_persons(train, validation_fraction, seed)
        split.train_persons = sorted(set(split.train_persons) - set(split.validation_persons))
        split.origin += (f"; {path} names no validation persons: {len(split.validation_persons)} of its training "
                         f"persons held out for validation ({validation_fraction}, seed {seed + 2})")
    return split


def _names(annotation_csv: Path) -> list[str]:
    """The image names of a ``name:keypoints_y:keypoints_x`` CSV (first field of each row)."""
    with open(annotation_csv) as file:
        header = file.readline()
        if not header.startswith("name:"):
            raise UsageError(f"{annotation_csv}:1: expected the header name:keypoints_y:keypoints_x")
        return [line.split(":", 1)[0].strip() for line in file if line.strip()]


def read_pairs_csv(path: str | Path) -> list[tuple[str, str]]:
    """The ``from,to`` rows of a public pairs file (market-pairs-test.csv, fasion-pairs-test.csv)."""
    path = Path(path)
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    if not rows or [f.strip() for f in rows[0]][:2] != ["from", "to"]:
        raise UsageError(f"{path}:1: expected the header from,to")
    pairs = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise UsageError(f"{path}:{line}: expected two image names, got {row}")
        pairs.append((row[0].strip(), row[1].strip()))
    return pairs


def official_split(train_csv: str | Path, test_csv: str | Path, pairs_csv: str | Path,
                   identity_fn: Callable[[str], str], num_sources: int, seed: int = 0,
                   usable: Callable[[str], bool] | None = None,
                   is_junk: Callable[[str], bool] = lambda name: False) -> Split:
    """The public release's split (see the module docstring) with tuples of up to ``num_sources``.

    usable: name -> whether an image may be an extra source (e.g. its pose has the torso points);
    None accepts every test image. is_junk: names that belong to no person (Market's -1/0000).
    """
    train_names = [n for n in _names(Path(train_csv)) if not is_junk(n)]
    test_names = [n for n in _names(Path(test_csv)) if not is_junk(n)]
    pairs = read_pairs_csv(pairs_csv)
    by_person: dict[str, list[str]] = {}
    for name in sorted(set(test_names)):
        by_person.setdefault(identity_fn(name), []).append(name)
    known = set(test_names)
    rng = np.random.default_rng(seed)
    tuples: list[Tuple] = []
    for index, (source, target) in enumerate(pairs):
        if source not in known or target not in known:
            raise UsageError(f"{pairs_csv}: pair {index + 1} ({source}, {target}) names an image not in {test_csv}")
        person = identity_fn(source)
        if identity_fn(target) != person:
            raise UsageError(f"{pairs_csv}: pair {index + 1} joins two persons ({source}, {target})")
        others = [n for n in by_person[person] if n not in (source, target) and (usable is None or usable(n))]
        extra = [others[i] for i in rng.permutation(len(others))[: num_sources - 1]]
        tuples.append(([source, *extra], target))
    split = Split(sorted({identity_fn(n) for n in train_names}), sorted(by_person), tuples,
                  f"official split of {Path(train_csv).name} / {Path(test_csv).name}, test tuples from "
                  f"{Path(pairs_csv).name} (first source = the pair's source; up to {num_sources - 1} more "
                  f"sources of the same person, seed {seed})")
    check_disjoint(split, identity_fn)
    return split


def restrict(identities: Mapping[str, Sequence[str]], persons: Iterable[str]) -> dict[str, list[str]]:
    """The entries of ``identities`` whose person is in ``persons``."""
    keep = set(persons)
    return {person: list(names) for person, names in identities.items() if person in keep}
