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
warp (csrc/part_warp.h, part_warp_cuda.cu): counted per tensor at two levels. ``warp_requests``:
  the bytes the CUDA per-thread code loads, stores and adds atomically, thread by thread; tests
  count them in the CPU emulation of that code and compare exactly. ``warp_bytes``: the DRAM bytes,
  assuming L2 serves every re-read (the mask is re-read by the C / 8 channel tiles of a pixel, a
  tap of feat by its 2x2 neighbours and by the tiles; both are a few MB per sample) and the
  backward's grad_feat accumulation buffer (at most 24 MB, its zero fill, the atomics'
  read-modify-writes and the read-back; assumed: the streaming reads of the same chunk may evict
  part of it, the GPU measurement says how much). So DRAM sees each input read once and each output
  written once: forward = floor; backward (grad_feat only, as when theta and the masks carry no
  gradient) = grad_out, feat (the winners are recomputed), mask and theta read, grad_feat written.
  Without the buffer, the zero fill and the atomics of a grad_feat larger than L2 would add 2-3
  grad_feat-sizes (1.7x the floor in fp32, 3.1x in bf16). bf16/fp16 accumulate in a float buffer,
  so a sample costs 4 bytes per element in it and the chunks are as many as in fp32.
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


# The warp's constants, as in csrc/part_warp.h: channels per CUDA thread, the grad_feat buffer.
WARP_TILE_CHANNELS = 8
WARP_FEAT_BUFFER_BYTES = 24 << 20
WARP_DTYPE_BYTES = {"fp64": 8, "fp32": 4, "bf16": 2, "fp16": 2}
# Parts with a nonzero mask per output pixel, on average, for Market poses at 128x64 (the torso's
# mask covers the image, a limb or the head adds one more at most pixels).
MARKET_PARTS_PER_PIXEL = 1.4


def _warp_sizes(shape: tuple[int, ...], dtype: str, feat_hw: tuple[int, int] | None) -> dict[str, int]:
    """Bytes of each tensor; feat has the output's size unless feat_hw = (Hin, Win) says otherwise."""
    N, C, H, W, P = shape
    Hin, Win = feat_hw or (H, W)
    s = WARP_DTYPE_BYTES[dtype]
    acc = 8 if dtype == "fp64" else 4  # theta and the accumulation type: float, double for fp64
    return {
        "feat": N * C * Hin * Win * s, "out": N * C * H * W * s, "mask": N * P * H * W * s,
        "theta": N * P * 6 * acc, "acc": acc, "sample_acc": C * Hin * Win * acc,
    }


def warp_chunks(shape: tuple[int, ...], dtype: str, feat_hw: tuple[int, int] | None = None,
                budget: int = WARP_FEAT_BUFFER_BYTES) -> dict[str, int]:
    """The CUDA backward's grad_feat chunks (part_warp_host.cpp's plan) and its launches.

    {"samples": per chunk, "chunks", "in_place": 1 when the buffer is grad_feat itself,
    "launches B": kernels launched by a grad_feat backward (zero fill, kernel and, unless in place,
    the copy into grad_feat, per chunk), "launches F+B" (with the forward's one)}.
    """
    N = shape[0]
    t = _warp_sizes(shape, dtype, feat_hw)
    samples = min(max(min(budget, t["out"]) // max(t["sample_acc"], 1), 1), max(N, 1))
    in_place = int(samples >= N and t["acc"] == WARP_DTYPE_BYTES[dtype])
    chunks = -(-N // samples)
    launches = 2 if in_place else 3 * chunks
    return {"samples": samples, "chunks": chunks, "in_place": in_place, "launches B": launches,
            "launches F+B": 1 + launches}


def warp_requests(shape: tuple[int, ...], dtype: str, *, feat_hw: tuple[int, int] | None = None,
                  parts_per_pixel: float | None = None, taps: int = 4,
                  winners_per_thread: float = 1) -> dict[str, dict[str, float]]:
    """Bytes the CUDA per-thread code (part_warp.h: forward_tile, backward_tile) moves, per tensor.

    One thread per (sample, tile of 8 channels, output pixel). It loads the P mask values of its
    pixel; for each part with a nonzero mask there (parts_per_pixel of them; all P when None) the
    6 theta values and, per channel, the part's taps that lie inside feat (taps of them). The
    backward also loads its grad_out values and, for each part that wins a channel of its tile
    (winners_per_thread), the mask value and theta again, and adds each tap of each channel into
    the grad_feat buffer: one atomic, a read-modify-write of the accumulation type ("atomics"
    counts them, "atomic bytes" their reads plus writes). Exact for inputs where every listed part
    has all its taps inside feat and every grad_out value is nonzero.
    Returns {"F": {tensor: bytes}, "B": {tensor: bytes, "atomics": n, "atomic bytes": bytes}}.
    """
    N, C, H, W, P = shape
    k = P if parts_per_pixel is None else parts_per_pixel
    t = _warp_sizes(shape, dtype, feat_hw)
    s, acc = WARP_DTYPE_BYTES[dtype], t["acc"]
    threads = N * -(-C // WARP_TILE_CHANNELS) * H * W
    elements = N * C * H * W
    forward = {"mask": threads * P * s, "theta": threads * k * 6 * acc, "feat": elements * k * taps * s,
               "out": elements * s}
    atomics = elements * taps
    backward = {
        "mask": forward["mask"] + threads * winners_per_thread * s,
        "theta": forward["theta"] + threads * winners_per_thread * 6 * acc,
        "feat": forward["feat"], "grad_out": elements * s, "atomics": atomics,
        "atomic bytes": 2 * atomics * acc,
    }
    return {"F": forward, "B": backward}


def warp_bytes(shape: tuple[int, ...], dtype: str, feat_hw: tuple[int, int] | None = None) -> dict[str, int]:
    """DRAM bytes of part_warp (backward: grad_feat only) and the bytes assumed served by L2.

    {"floor F", "floor F+B", "design F", "design F+B": DRAM bytes; "L2 F", "L2 F+B": the
    re-reads (at MARKET_PARTS_PER_PIXEL parts per pixel), atomics and buffer traffic that the
    design assumes L2 serves; "chunks", "launches F+B" of the backward's buffer (warp_chunks)}.
    """
    t = _warp_sizes(shape, dtype, feat_hw)
    floor_f = t["feat"] + t["theta"] + t["mask"] + t["out"]
    forward = floor_f  # each input read once, out written once
    backward = t["out"] + t["feat"] + t["mask"] + t["theta"] + t["feat"]  # ... grad_feat written once
    req = warp_requests(shape, dtype, feat_hw=feat_hw, parts_per_pixel=MARKET_PARTS_PER_PIXEL)
    rereads_f = sum(req["F"].values()) - forward
    reads_b = sum(v for key, v in req["B"].items() if key not in ("atomics", "atomic bytes"))
    chunks = warp_chunks(shape, dtype, feat_hw)
    buffer = t["sample_acc"] * shape[0] * (1 if chunks["in_place"] else 2)  # zero fill (+ read-back)
    l2_b = reads_b - (backward - t["feat"]) + req["B"]["atomic bytes"] + buffer
    return {
        "floor F": floor_f,
        "floor F+B": 2 * floor_f,
        "design F": forward,
        "design F+B": forward + backward,
        "L2 F": round(rereads_f),
        "L2 F+B": round(rereads_f + l2_b),
        "chunks": chunks["chunks"],
        "launches F+B": chunks["launches F+B"],
    }


def warp_report() -> str:
    """The warp's table at PERFORMANCE.md's shapes: DRAM over the floor, L2 bytes, chunks, launches."""
    lines = ["warp (N,C,H,W,P) dtype: design/floor F, F+B | L2-served GB F, F+B | chunks, launches F+B"]
    for shape in WARP_SHAPES:
        for dtype in ("fp32", "bf16"):
            b = warp_bytes(shape, dtype)
            lines.append(
                f"({','.join(map(str, shape))}) {dtype}: {b['design F'] / b['floor F']:.2f}x, "
                f"{b['design F+B'] / b['floor F+B']:.2f}x | {b['L2 F'] / 1e9:.2f}, {b['L2 F+B'] / 1e9:.2f} | "
                f"{b['chunks']}, {b['launches F+B']}"
            )
    return "\n".join(lines)


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
