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
xi, so at most L2's worth of the second read can be a hit. ``fusion_bound`` computes that limit
for any exact design given the bytes it can keep on chip: with all of an H100's (L2, registers and
shared memory, held across a grid-wide barrier by a persistent kernel) the 256x256 fp32 forward
still moves at least 1.21x its floor.

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
    floor = fusion_floor(shape, dtype)
    dram, l2 = {}, {}
    for direction, (kernel, info) in zip(("F", "B"), fusion_traffic(shape, dtype).items()):
        per_sample_second = (M + int(direction == "B")) * Ce * HW * s
        misses = sum(max(0, n * per_sample_second - L2_CHUNK_BYTES) for _, n in info["chunks"])
        memset = info["distinct"]["sync"]
        dram[direction] = sum(info["distinct"].values()) + memset + misses
        l2[direction] = sum(sum(kinds.values()) for kinds in info["traffic"].values()) + memset - dram[direction]
    return {
        "floor F": floor["F"],
        "floor F+B": floor["F+B"],
        "design F": dram["F"],
        "design F+B": dram["F"] + dram["B"],
        "l2 F": l2["F"],
        "l2 F+B": l2["F"] + l2["B"],
    }


# An H100 SXM's on-chip storage, all of which a kernel could in principle keep data in across a
# grid-wide barrier: 50 MB of L2 and, on each of its 132 SMs, 256 KB of registers and 228 KB of
# shared memory.
H100_ON_CHIP_BYTES = 50 * 2**20 + 132 * (256 + 228) * 2**10


def fusion_bound(shape: tuple[int, ...], dtype: str, on_chip: int) -> dict[str, int]:
    """The fewest DRAM bytes ANY exact kernel of fused_attention's contract can move at shape
    (B, M, Ce, Cd, H, W), given on_chip bytes that keep data between its two passes: {"F", "F+B"}.

    The channel gate pools every pixel of a sample, so no output of a sample can be computed
    before all of its xi has been read: forward, out[:, Cd:] needs the pooled vector; backward,
    grad_xi carries the pooled vector's gradient, a sum over every pixel of grad_out and xi. What
    the second pass reads again (forward xi, backward xi and grad_out[:, Cd:]) beyond on_chip bytes
    per sample was evicted and comes from DRAM twice. So bound = floor + sum over samples of
    max(0, footprint - on_chip), whatever the tiling; the gate's own state (g, partial sums) is left
    out, which only lowers the bound. With on_chip = L2_CHUNK_BYTES it is the best an L2-only
    design with this code's budget can do; with H100_ON_CHIP_BYTES the best any design can.
    """
    B, M, Ce, Cd, H, W = shape
    s = DTYPE_BYTES[dtype]
    floor = fusion_floor(shape, dtype)
    second_f = B * max(0, M * Ce * H * W * s - on_chip)
    second_b = B * max(0, (M + 1) * Ce * H * W * s - on_chip)
    return {"F": floor["F"] + second_f, "F+B": floor["F+B"] + second_f + second_b}


def fusion_floor(shape: tuple[int, ...], dtype: str) -> dict[str, int]:
    """PERFORMANCE.md's floor of fused_attention: {"F", "F+B"} bytes (each input read once, each
    output written once; the backward reads grad_out and xi and psi, writes grad_psi and grad_xi)."""
    B, M, Ce, Cd, H, W = shape
    s, HW = DTYPE_BYTES[dtype], H * W
    psi, xi = B * Cd * HW * s, B * M * Ce * HW * s
    out_psi, out_xi = psi, B * Ce * HW * s
    floor_f = psi + xi + out_psi + out_xi
    floor_b = (out_psi + out_xi) + xi + psi + xi  # grad_out, xi read; grad_psi, grad_xi written
    return {"F": floor_f, "F+B": floor_f + floor_b}


def fusion_bound_report() -> str:
    """Per fusion shape and dtype: the design's DRAM bytes over the floor and the bound's, with the
    design's L2 budget and with all of an H100's on-chip storage (fusion_bound)."""
    from msgen.kernels.fused_attention import L2_CHUNK_BYTES

    lines = [f"fusion (B,M,Ce,Cd,H,W) dtype: design / floor F, F+B | bound with {L2_CHUNK_BYTES >> 20} MB (the "
             f"design's L2 budget) | bound with an H100's {H100_ON_CHIP_BYTES / 2**20:.0f} MB on chip"]
    for shape in FUSION_SHAPES:
        for dtype in DTYPE_BYTES:
            b, floor = fusion_bytes(shape, dtype), fusion_floor(shape, dtype)
            budget, chip = fusion_bound(shape, dtype, L2_CHUNK_BYTES), fusion_bound(shape, dtype, H100_ON_CHIP_BYTES)
            lines.append(
                f"({','.join(map(str, shape))}) {dtype}: {b['design F'] / floor['F']:.2f}x, "
                f"{b['design F+B'] / floor['F+B']:.2f}x | {budget['F'] / floor['F']:.2f}x, "
                f"{budget['F+B'] / floor['F+B']:.2f}x | {chip['F'] / floor['F']:.2f}x, {chip['F+B'] / floor['F+B']:.2f}x"
            )
    return "\n".join(lines)


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
    return "\n".join(str(r) for r in ratios()) + "\n\n" + fusion_bound_report()


if __name__ == "__main__":
    print(report())
