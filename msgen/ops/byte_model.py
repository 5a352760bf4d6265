"""Byte model of the two fast ops: the DRAM bytes each kernel moves by its design, over the floor.

Counted from the code (kernels/fused_attention.py, csrc/part_warp_cuda.cu). The floor is
PERFORMANCE.md's: each input read once and each output written once (warp F+B: twice the forward's
bytes, the convention of its table). ``ratio = design / floor`` is a ceiling on the speed-up that no
GPU can beat; the benchmarks print it next to the timings and tests/test_kernel_static.py keeps it
from growing.

fusion: ``fusion_traffic`` gives, per kernel and tensor argument, the bytes the code loads, stores
and updates atomically (masked-in elements only; all sources valid) and the bytes of the distinct
addresses it touches; tests/test_fused_attention.py counts the same under the Triton interpreter
and requires equality. The DRAM bytes (``design``) are the distinct bytes (every first touch from
DRAM, every later touch in the same launch from L2: the partial sums the sample's last program
reads back, g read by the second pass, the weights every program reads, the atomics'
read-modify-writes), plus the memset of the int32 sync buffer, plus, for a chunk whose second-pass
footprint (xi; backward: xi and grad_out[:, Cd:]) exceeds L2_CHUNK_BYTES, the part of its second
read that L2 cannot hold. ``l2`` is every other byte moved. Why this is near the floor: each
launch holds both passes of a chunk of samples whose xi fits in L2, so xi is read from DRAM once
per direction; what stays is g (B, M, HW) float32 (written, and d_logit written in the backward)
and the per-block partial sums. Where one sample's xi alone exceeds L2 (the 256x256 shape) no
exact design can do better by much: the pool makes every output of a sample wait for all of its
xi, so at most L2's worth of the second read can be a hit.

warp, forward: feat once (the gathers of a smooth affine reuse lines in L1/L2), mask once (its
  re-reads for the C / 8 channel tiles of a pixel hit L2), out once: exactly the floor.
warp, backward (grad_feat only, as in the model where theta and the masks carry no gradient):
  grad_out, feat (the winners are recomputed) and mask are read once; the atomic adds go to an
  accumulation buffer of at most 24 MB that stays in L2 (assumed: the streaming reads of the same
  chunk may evict part of it; the GPU measurement says how much), and each chunk is written once
  into grad_feat. Without the buffer, the zero fill and the atomics' read-modify-writes of a
  tensor larger than L2 would add 2-3 grad_feat-sizes (1.7x the floor in fp32, 3.1x in bf16).
  A saved uint8 winner would replace the feat read of the backward (1 B per output element
  instead of the element size) at the price of a forward write of the same 1 B: in fp32 it saves
  0.5 of the 5.3 element-sizes the backward moves, and nothing in bf16 (1 B written + 1 B read
  against 2 B of feat), and it costs every forward, inference included; so it is not stored.
"""

from __future__ import annotations

from dataclasses import dataclass

# PERFORMANCE.md shapes. Fusion tuples read (B, M, Ce, Cd, H, W), warp tuples (N, C, H, W, P).
FUSION_SHAPES = [
    (32, 5, 128, 64, 128, 64),
    (32, 10, 128, 64, 128, 64),
    (8, 5, 128, 64, 256, 256),
    (32, 2, 256, 128, 64, 32),
]
WARP_SHAPES = [
    (160, 64, 128, 64, 10),
    (160, 128, 64, 32, 10),
    (40, 64, 256, 256, 10),
]
DTYPE_BYTES = {"fp32": 4, "bf16": 2}
ACC_BYTES = 4  # g, d_logit, the partial sums and the grad_feat buffer of bf16/fp16 are float32


@dataclass(frozen=True)
class Ratio:
    """Bytes by design and the floor for one (op, shape, dtype, direction)."""

    op: str
    shape: tuple[int, ...]
    dtype: str
    direction: str  # "F" or "F+B"
    design: int
    floor: int

    @property
    def ratio(self) -> float:
        return self.design / self.floor

    def __str__(self) -> str:
        shape = ",".join(map(str, self.shape))
        return f"{self.op} ({shape}) {self.dtype} {self.direction}: {self.ratio:.2f}x the floor"


def _fusion_direction(shape: tuple[int, ...], dtype: str, backward: bool, hidden: int, saliency: bool):
    """(traffic, distinct, plan) of one direction's kernel; see fusion_traffic."""
    from msgen.kernels import fused_attention as kernels  # block sizes and chunks: the launcher's own

    B, M, Ce, Cd, H, W = shape
    s, a, HW, Hd = DTYPE_BYTES[dtype], ACC_BYTES, H * W, hidden
    plan = kernels.plan(B, M, Cd, Ce, HW, Hd, s)
    nb, Z = plan.blocks.n_blocks, Cd + Ce
    programs = B * nb  # per pass
    big_xi, big_psi = B * M * Ce * HW * s, B * Cd * HW * s
    per_pixel = B * M * HW * a  # g, d_logit
    sync = {"atomic": (4 * nb + 1) * B * 4}  # tickets (2 per block), arrivals, waits, raises
    mlp_fc1 = B * (Hd * Cd + M * Hd * Ce) * a
    if not backward:
        traffic = {
            "valid": {"load": 2 * programs * M},
            "psi": {"load": big_psi},
            "out": {"store": big_psi + B * Ce * HW * s},
            "gw": {"load": programs * Z * a},
            "gb": {"load": programs * a},
            "psi_part": {"store": programs * Cd * a, "load": programs * Cd * a},
            "xi": {"load": 2 * big_xi},
            "xi_part": {"store": programs * M * Ce * a, "load": programs * M * Ce * a},
            "gate": {"store": per_pixel, "load": per_pixel},
            "sync": sync,
            "fc1b": {"load": B * Hd * a},
            "fc1w": {"load": mlp_fc1},
            "pooled": {"store": B * M * Z * a},
            "hidden": {"store": B * M * Hd * a},
            "fc2w": {"load": B * M * Ce * Hd * a},
            "fc2b": {"load": B * M * Ce * a},
            "f": {"store": B * M * Ce * a, "load": programs * M * Ce * a},
        }
        if saliency:
            traffic["sal"] = {"store": B * M * HW * s}
        distinct = {name: max(kinds.values()) for name, kinds in traffic.items()}
        distinct.update(valid=B * M, xi=big_xi, gw=Z * a, gb=a, psi_part=programs * Cd * a,
                        xi_part=programs * M * Ce * a, gate=per_pixel, f=B * M * Ce * a,
                        fc1b=Hd * a, fc1w=Hd * Z * a, fc2w=Ce * Hd * a, fc2b=Ce * a)
    else:
        traffic = {
            "valid": {"load": 2 * programs * M},
            "gate": {"load": 2 * per_pixel},
            "f": {"load": 2 * programs * M * Ce * a + B * M * Ce * a},
            "xi": {"load": 2 * big_xi},
            "gout": {"load": B * Ce * HW * s + B * Z * HW * s},
            "df_part": {"store": programs * M * Ce * a, "load": programs * M * Ce * a},
            "dlogit": {"store": per_pixel, "load": per_pixel},
            "wgrad_part": {"store": programs * (Z + 1) * a},
            "sync": sync,
            "fc2w": {"load": B * M * Ce * Hd * a},
            "hidden": {"load": B * M * Hd * a},
            "dz": {"store": B * M * (Hd + Ce) * a},
            "fc1w": {"load": mlp_fc1},
            "dpool_xi": {"store": B * M * Ce * a, "load": programs * M * Ce * a},
            "dpool_psi": {"store": B * Cd * a, "load": programs * Cd * a},
            "gw": {"load": programs * Z * a},
            "gxi": {"store": big_xi},
            "psi": {"load": big_psi},
            "gpsi": {"store": big_psi},
        }
        if saliency:
            traffic["gsal"] = {"load": B * M * HW * s}
        distinct = {name: max(kinds.values()) for name, kinds in traffic.items()}
        distinct.update(valid=B * M, gate=per_pixel, f=B * M * Ce * a, xi=big_xi, gout=B * Z * HW * s,
                        df_part=programs * M * Ce * a, dlogit=per_pixel, fc2w=Ce * Hd * a,
                        fc1w=Hd * Z * a, dpool_xi=B * M * Ce * a, dpool_psi=B * Cd * a, gw=Z * a)
    distinct["sync"] = (len(plan.chunks) + 2 * B) * 4
    traffic = {name: {kind: kinds.get(kind, 0) for kind in ("load", "store", "atomic")} for name, kinds in traffic.items()}
    return traffic, distinct, plan


def fusion_traffic(
    shape: tuple[int, ...], dtype: str, *, hidden: int | None = None, saliency: bool = False
) -> dict[str, dict]:
    """What the fusion's two kernels move at shape (B, M, Ce, Cd, H, W), all sources valid.

    {"_forward_kernel" / "_backward_kernel": {"traffic": {argument: {"load", "store", "atomic"}},
    "distinct": {argument: bytes}, "chunks": [(first sample, samples)]}}; argument names are the
    kernels' without ``_ptr``; hidden defaults to (Cd + Ce) // 4 (the benchmarks' MLP); saliency:
    the forward writes the saliency and the backward reads its gradient.
    """
    B, M, Ce, Cd, H, W = shape
    hidden = hidden if hidden is not None else max((Cd + Ce) // 4, 1)
    result = {}
    for kernel, backward in (("_forward_kernel", False), ("_backward_kernel", True)):
        traffic, distinct, plan = _fusion_direction(shape, dtype, backward, hidden, saliency)
        result[kernel] = {"traffic": traffic, "distinct": distinct, "chunks": plan.chunks}
    return result


def fusion_bytes(shape: tuple[int, ...], dtype: str) -> dict[str, int]:
    """{"floor F", "floor F+B", "design F", "design F+B", "l2 F", "l2 F+B"} of fused_attention:
    design is the DRAM bytes of the model (see the module docstring), l2 the bytes it assumes L2
    serves."""
    from msgen.kernels.fused_attention import L2_CHUNK_BYTES

    B, M, Ce, Cd, H, W = shape
    s, HW = DTYPE_BYTES[dtype], H * W
    psi, xi = B * Cd * HW * s, B * M * Ce * HW * s
    out_psi, out_xi = psi, B * Ce * HW * s
    floor_f = psi + xi + out_psi + out_xi
    floor_b = (out_psi + out_xi) + xi + psi + xi  # grad_out, xi read; grad_psi, grad_xi written
    dram, l2 = {}, {}
    for direction, (kernel, info) in zip(("F", "B"), fusion_traffic(shape, dtype).items()):
        per_sample_second = (M + int(direction == "B")) * Ce * HW * s
        misses = sum(max(0, n * per_sample_second - L2_CHUNK_BYTES) for _, n in info["chunks"])
        memset = info["distinct"]["sync"]
        dram[direction] = sum(info["distinct"].values()) + memset + misses
        l2[direction] = sum(sum(kinds.values()) for kinds in info["traffic"].values()) + memset - dram[direction]
    return {
        "floor F": floor_f,
        "floor F+B": floor_f + floor_b,
        "design F": dram["F"],
        "design F+B": dram["F"] + dram["B"],
        "l2 F": l2["F"],
        "l2 F+B": l2["F"] + l2["B"],
    }


def warp_bytes(shape: tuple[int, ...], dtype: str) -> dict[str, int]:
    """{"floor F", "floor F+B", "design F", "design F+B"} of part_warp (grad_feat only)."""
    N, C, H, W, P = shape
    s = DTYPE_BYTES[dtype]
    feat = out = N * C * H * W * s  # feat has the output's size in the model
    mask, theta = N * P * H * W * s, N * P * 6 * 4
    floor_f = feat + theta + mask + out
    forward = floor_f
    grad_feat = feat  # written once from the L2-resident buffer
    backward = out + feat + mask + theta + grad_feat  # grad_out, feat, mask read
    return {
        "floor F": floor_f,
        "floor F+B": 2 * floor_f,
        "design F": forward,
        "design F+B": forward + backward,
    }


def ratios() -> list[Ratio]:
    """Every PERFORMANCE.md shape, fp32 and bf16, F and F+B, for both ops."""
    result = []
    for op, shapes, model in (("fusion", FUSION_SHAPES, fusion_bytes), ("warp", WARP_SHAPES, warp_bytes)):
        for shape in shapes:
            for dtype in DTYPE_BYTES:
                b = model(shape, dtype)
                for direction in ("F", "F+B"):
                    design, floor = b[f"design {direction}"], b[f"floor {direction}"]
                    result.append(Ratio(op, shape, dtype, direction, design, floor))
    return result


def report() -> str:
    return "\n".join(str(r) for r in ratios())


if __name__ == "__main__":
    print(report())
