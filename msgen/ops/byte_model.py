"""Byte model of the two fast ops: the DRAM bytes each kernel moves by its design, over the floor.

Counted from the code (kernels/fused_attention.py, csrc/part_warp_cuda.cu), per pass over each
tensor, with every read of a big tensor counted as a DRAM read (no L2 reuse assumed: the tensors
are hundreds of MB, L2 is 50 MB) except where stated. The floor is PERFORMANCE.md's: each input
read once and each output written once (warp F+B: twice the forward's bytes, the convention of
its table). ``ratio = design / floor`` is a ceiling on the speed-up that no GPU can beat; the
benchmarks print it next to the timings and tests/test_byte_model.py keeps it from growing.

Why the ratios are what they are (and what would change them):

fusion, forward: pass 1 reads psi and xi, writes out[:, :Cd] and the gate g (B, M, P) in float32;
  pass 2 reads xi again and g, and writes out[:, Cd:]. The global pool makes f depend on every
  pixel of a sample, so xi is read twice; the second read could come from L2 only if a sample's xi
  (5 x 128 x 8192 x 4 B = 21 MB at the first shape) were processed by both passes back to back,
  which two grid-wide launches do not do. forward = floor + xi + 2 g.
fusion, backward: pass 3 reads xi, grad_out[:, Cd:] and g, writes d_logit (B, M, P) float32;
  pass 4 reads xi, psi, grad_out, g and d_logit, writes grad_xi and grad_psi. The floor counts one
  read of xi in the backward; the design reads it twice and psi once (the gate-weight gradient
  needs psi). backward = floor_B + xi + psi + grad_out[:, Cd:] + 4 g-sized.
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
ACC_BYTES = 4  # g, d_logit and the grad_feat buffer of bf16/fp16 are float32


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


def fusion_bytes(shape: tuple[int, ...], dtype: str) -> dict[str, int]:
    """{"floor F", "floor F+B", "design F", "design F+B"} of fused_attention."""
    B, M, Ce, Cd, H, W = shape
    s, P = DTYPE_BYTES[dtype], H * W
    psi, xi = B * Cd * P * s, B * M * Ce * P * s
    out_psi, out_xi = psi, B * Ce * P * s
    gate = B * M * P * ACC_BYTES  # g, or d_logit: (B, M, P) float32
    floor_f = psi + xi + out_psi + out_xi
    floor_b = (out_psi + out_xi) + xi + psi + xi  # grad_out, xi read; grad_psi, grad_xi written
    pass1 = psi + xi + out_psi + gate
    pass2 = xi + gate + out_xi
    pass3 = xi + out_xi + gate + gate  # grad_out[:, Cd:] read, g read, d_logit written
    pass4 = xi + psi + (out_psi + out_xi) + 2 * gate + xi + psi  # ... grad_xi, grad_psi written
    return {
        "floor F": floor_f,
        "floor F+B": floor_f + floor_b,
        "design F": pass1 + pass2,
        "design F+B": pass1 + pass2 + pass3 + pass4,
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
