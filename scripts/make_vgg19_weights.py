"""Make msgen/assets/vgg19_caffe_relu1_2.safetensors, the VGG-19 layers the NN loss uses.

Reads the npz of the original ImageNet VGG-19 (Simonyan & Zisserman, as Keras ships it, converted
from the authors' Caffe model; see ../shared/weights/README.md for its provenance), checks its
sha256, and writes conv1_1 and conv1_2 (the layers up to relu1_2) under the keys of
msgen.models.losses.VGG19Features (``features.0.*``, ``features.2.*``), with the input-channel
axis left in BGR order as the source has it. The licence credit goes into the file's metadata.
Print the new file's sha256, which msgen.models.losses.SHIPPED_VGG19_SHA256 must equal.

    python scripts/make_vgg19_weights.py ../shared/weights/vgg19_caffe_conv1_1_to_conv2_2.npz
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import json
import struct

import numpy as np

SOURCE_SHA256 = "732ebcd5cb3dcf0c0938d74041683f7c24b88908e0956fcb99e614dffbcf38c4"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "msgen" / "assets" / "vgg19_caffe_relu1_2.safetensors"
METADATA = {
    "network": "VGG-19 (Simonyan & Zisserman, 'Very Deep Convolutional Networks for Large-Scale "
               "Image Recognition', ICLR 2015), ImageNet weights, layers conv1_1 and conv1_2",
    "licence": "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); weights by Karen Simonyan "
               "and Andrew Zisserman, Visual Geometry Group, University of Oxford; derived file: "
               "two layers selected and renamed, values unchanged",
    "source": "the authors' Caffe model as Keras' VGG19 ships it (npz sha256 " + SOURCE_SHA256 + ")",
    "input": "BGR, 0-255, minus the ImageNet mean B 103.939 G 116.779 R 123.68, no std division",
    "channel_order": "BGR",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_sorted(state: dict[str, np.ndarray], path: Path, metadata: dict[str, str]) -> None:
    """Write a safetensors file whose header has its keys sorted, so the same input always gives
    the same bytes (safetensors' own writer orders the metadata by a hash map, which changes from
    run to run and would change the file's sha256)."""
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    offset, blobs = 0, []
    for key in sorted(state):
        blob = np.ascontiguousarray(state[key], dtype="<f4").tobytes()
        header[key] = {"dtype": "F32", "shape": list(state[key].shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format aligns the data to 8 bytes with spaces
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("npz", type=Path, help="vgg19_caffe_conv1_1_to_conv2_2.npz")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the safetensors file goes")
    args = parser.parse_args()
    found = sha256(args.npz)
    if found != SOURCE_SHA256:
        raise SystemExit(f"{args.npz}: sha256 {found}, expected {SOURCE_SHA256}")
    with np.load(args.npz, allow_pickle=False) as data:
        state = {
            "features.0.weight": data["conv1_1_weight_OIHW_BGR"],
            "features.0.bias": data["conv1_1_bias"],
            "features.2.weight": data["conv1_2_weight_OIHW_BGR"],
            "features.2.bias": data["conv1_2_bias"],
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_sorted(state, args.out, METADATA)
    print(f"{args.out}: sha256 {sha256(args.out)}")


if __name__ == "__main__":
    main()
