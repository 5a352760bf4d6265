"""Triton kernels of the multi-source attention fusion (the op is ``msgen.ops.fused_attention``).

Notation as in ``msgen.ops.fused_attention``: psi (B, Cd, H, W), xi (B, M, Ce, H, W), HW = H * W
pixels (P is kept for body parts, as everywhere in msgen), gate g (B, M, HW), channel gate f
(B, M, Ce) from the MLP fc1 (Hd, Cd + Ce) -> ReLU -> fc2 (Ce, Hd) -> sigmoid on the pooled means,
A = max(g f, eps) over valid sources, S = sum_m A, Att = A / S, F = sum_m Att xi.

How the work is divided
-----------------------
The global pool makes f depend on every pixel of a sample, so each direction needs two passes over
a sample's xi: the first (pool and gate; gate gradient) must see all of it before the second
(fuse; input gradients) can start. The second read of xi comes from L2, not DRAM, by running the
batch in chunks of samples whose xi fits in ``L2_CHUNK_BYTES``: one launch per chunk holds both passes of that chunk, so between the two reads
of an element only the chunk's own traffic goes through L2. A sample whose xi alone exceeds the
budget is a chunk by itself; its second pass visits the pixel blocks in reverse, so it starts with
what the first pass read last, still in L2 (``msgen.ops.byte_model`` models both cases).

Inside a launch, 2 * n_blocks * n_samples programs of one warp each (so no reduction crosses
warps) take tickets from an int32 counter in the order they start: the first n_blocks * n_samples
tickets are first-pass blocks, the rest second-pass blocks in sample order. A first-pass program
writes its per-block partial sums of the pixel reductions and counts itself in on its sample's
counter (an acquire-release atomic); the one that arrives last adds up the sample's partial sums in
block order (deterministic: no floating-point atomics), runs the channel gate's MLP forward or
backward and raises the sample's ready flag. A second-pass program waits for its sample's flag.
It cannot wait forever: tickets are taken when a program starts, so every first-pass program of
its sample (lower tickets) has started and waits for nothing. The MLP thus needs no torch kernels
between the passes, and each direction is one memset plus one launch per chunk.

A program holds a (BLOCK_M, BLOCK_C, BLOCK_HW) tile of xi, all M sources at once, and loops over
the channels in chunks of BLOCK_C, so the sums over sources (S, F) and over channels (the gate's
dot product) are register reductions; only per-pixel state (BLOCK_M, BLOCK_HW) lives across the
channel loop. BLOCK_HW shrinks at small chunks until a launch has about _TARGET_PROGRAMS programs.
BLOCK_C, BLOCK_D and the pipeline depth are picked by ``triton.autotune`` among ``_TUNING``, keyed
on M, the channels, the pixels, the blocks and the dtypes. Nothing of size (B, M, Ce, HW) is stored
besides the outputs.

forward (``_forward_kernel``)
  pass 1 (``_pool_gate``): reads psi and xi; writes the gate g (B, M, HW) in the accumulation
     dtype, the pool partial sums of psi and xi (already divided by HW), and copies psi into
     out[:, :Cd]. The sample's last program: pooled (B, M, Cd + Ce), the hidden units relu(pre)
     (B, M, Hd) and f (B, M, Ce), all saved for the backward.
  pass 2 (``_fuse``): reads xi (from L2), g and f; writes F into out[:, Cd:] and, when asked, the
     saliency (the channel mean of Att, (B, M, HW)).
backward (``_backward_kernel``)
  pass 1 (``_gate_grad``): reads xi, grad_out[:, Cd:], g, f (and grad_saliency); recomputes A, S
     and F; writes d loss / d(gate logit) (B, M, HW), the partial sums of d loss / d f and of the
     gate bias gradient. The sample's last program runs the MLP backward: d pooled divided by HW
     (psi's (B, Cd), xi's (B, M, Ce)), and dz = [d pre-ReLU, d fc2-logit] (B, M, Hd + Ce), from
     which torch forms the MLP's gradients over the batch (two matrix products, one sum).
  pass 2 (``_input_grad``): reads xi and grad_out[:, Cd:] (from L2), psi, grad_out[:, :Cd], g and
     d logit; writes grad_xi, grad_psi and the partial sums of the gate weight gradient.

Precision and indexing: every load is converted to ACC (float32, or float64 for float64 inputs) and
all sums accumulate in ACC; outputs are rounded once to the input dtype. Offsets are int64 (the
sample index is cast before any multiplication), so tensors beyond 2**31 elements are addressed
correctly. Each big tensor is addressed through its own strides; ``PIX_*`` constexprs pick flat
contiguous pixels (vectorisable), flat strided pixels (channels-last, expanded gradients) or a
general (h, w) walk. Loads of xi in a first pass ask L2 to keep the lines (evict_last); the
streams read or written once (psi, grad_out[:, :Cd], out, the gradients) and the second pass's
reads ask to go first (evict_first), so they do not push the chunk's xi out.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from msgen.ops._backends import triton_interpreted

# One warp per program: every reduction over sources and channels (S, F, the gate's dot product)
# then stays inside a thread or crosses lanes of the one warp with shuffles, never shared memory
# and barriers (with more warps Triton places some along the source axis).
# tests/test_kernel_static.py checks the TTGIR layouts and the registers for sm_90.
_NUM_WARPS = 1
# Pixels per block are at most _TILE / BLOCK_M (the per-pixel state of all sources, (BLOCK_M,
# BLOCK_HW) in float32, is then 8 registers per lane of the warp for each such tensor).
_TILE = 256
_MAX_BLOCK_HW = 128  # 512-byte float32 rows: full coalesced segments per channel and source
# Programs to aim for in a launch (both passes): about 8 per SM of a 132-SM H100/H200. Small chunks
# and deep levels have few pixels, so their pixel blocks are made smaller (down to 16 pixels, 64-byte
# float32 rows) until a launch has that many. Smaller blocks cost partial sums: one float32 per
# (block, source, channel) written and read back, 4 / (BLOCK_HW * element size) of xi's bytes.
_TARGET_PROGRAMS = 1024
# What the autotuner tries (``tuning_configs``): (elements of one xi tile, pipeline depth). The
# tile fixes BLOCK_C (channels per step) and BLOCK_D (psi channels per step) for the launch's BLOCK_M
# and BLOCK_HW: 256 elements are 8 per lane of the warp for each live tile (x, A, the gradients),
# 128 fewer registers and bytes in flight; 512 would spill in the float32 backward at M = 5 with
# three stages (ptxas, sm_90), so it is not a candidate. The depth is how many iterations of a
# channel loop are software-pipelined (cp.async into shared memory on Ampere and later), i.e. the
# bytes in flight a memory-bound loop keeps per warp. Every entry compiles for sm_90 without
# spills and with warp-local reductions at every PERFORMANCE.md shape
# (tests/test_kernel_static.py); the GPU picks among them by timing, once per key.
_TUNING = ((256, 3), (256, 4), (128, 4))
# Elements of one tile of the per-sample MLP (weights (BLOCK_H, BLOCK_K), partial sums
# (BLOCK_NB, BLOCK_K)): 16 per thread, so the MLP adds few registers to the first passes.
_MLP_TILE = 512
_BLOCK_NB = 16
# The bytes of xi one launch may hold for its second pass (see plan()): the
# L2 of an H100 is 50 MB, of which the chunk gets about two thirds; the rest is the traffic that
# streams past it during the launch (psi, out, g, the gradients), asked to be evicted first.
L2_CHUNK_BYTES = 32 * 2**20

_PIX_CONTIGUOUS, _PIX_FLAT, _PIX_GENERAL = 0, 1, 2
_TL_DTYPES = {torch.float32: tl.float32, torch.float64: tl.float64}


def _pixel_layout(t: torch.Tensor) -> tuple[int, int, int]:
    """(mode, stride_h, stride_w) addressing the last two dims of t as one flat pixel index.

    When the pixels of t are one arithmetic progression (contiguous, channels-last, or an expanded
    gradient with stride 0), the flat stride is passed as stride_w.
    """
    H, W = t.shape[-2:]
    sh, sw = t.stride(-2), t.stride(-1)
    if W == 1:
        flat = sh
    elif H == 1 or sh == W * sw:
        flat = sw
    else:
        return _PIX_GENERAL, sh, sw
    return (_PIX_CONTIGUOUS if flat == 1 else _PIX_FLAT), 0, flat


def chunk_samples(B: int, bytes_per_sample: int, budget: int | None = None) -> list[tuple[int, int]]:
    """(first sample, samples) of each launch: as many samples as fit in budget (default
    L2_CHUNK_BYTES), at least one."""
    budget = L2_CHUNK_BYTES if budget is None else budget
    per_chunk = max(1, min(B, budget // max(bytes_per_sample, 1)))
    return [(b0, min(per_chunk, B - b0)) for b0 in range(0, B, per_chunk)]


class Blocks:
    """Block sizes of every launch of one call (chunks of at most ``samples`` samples): all M
    sources in a tile, channels filling it up to _TILE; the MLP tiles of the last program per
    sample. ``msgen.ops.byte_model`` counts bytes with them."""

    def __init__(self, M: int, Cd: int, Ce: int, HW: int, samples: int, hidden: int) -> None:
        self.M = triton.next_power_of_2(M)
        self.HW = min(_MAX_BLOCK_HW, triton.next_power_of_2(HW), max(16, _TILE // self.M))
        while self.HW > 16 and 2 * triton.cdiv(HW, self.HW) * samples < _TARGET_PROGRAMS:
            self.HW //= 2
        self.n_blocks = triton.cdiv(HW, self.HW)
        self.H = triton.next_power_of_2(hidden)
        self.K = max(1, min(triton.next_power_of_2(max(Cd, Ce)), _MLP_TILE // self.H))
        self.NB = _BLOCK_NB

    def meta(self) -> dict[str, int]:
        """The launch's block-size constexprs (the autotuner adds BLOCK_C, BLOCK_D and STAGES)."""
        return {
            "BLOCK_M": self.M, "BLOCK_HW": self.HW, "BLOCK_H": self.H, "BLOCK_K": self.K, "BLOCK_NB": self.NB,
        }


def tuning_configs(M: int, Cd: int, Ce: int, block_m: int, block_hw: int) -> list[triton.Config]:
    """The autotuner's candidates for a launch (see _TUNING), one warp each; only the first under
    the interpreter, where timing means nothing."""
    configs, seen = [], set()
    for tile, stages in _TUNING:
        block_c = max(1, min(triton.next_power_of_2(Ce), tile // (block_m * block_hw)))
        block_d = max(1, min(triton.next_power_of_2(max(Cd, 1)), tile // block_hw))
        if (block_c, block_d, stages) not in seen:
            seen.add((block_c, block_d, stages))
            configs.append(triton.Config({"BLOCK_C": block_c, "BLOCK_D": block_d, "STAGES": stages}, num_warps=_NUM_WARPS))
    return configs[:1] if triton_interpreted() else configs


def _prune(configs: list, named_args: dict, **kwargs) -> list[triton.Config]:
    return tuning_configs(named_args["M"], named_args["Cd"], named_args["Ce"], kwargs["BLOCK_M"], kwargs["BLOCK_HW"])


# Keyed on the sources, the channels, the pixels and the blocks (which fix BLOCK_HW) of a launch;
# the autotuner adds the tensors' dtypes to the key. A rerun while timing must start from zeroed
# tickets, counters and flags.
_autotune = triton.autotune(
    configs=[triton.Config({"TILE": tile, "DEPTH": stages}) for tile, stages in _TUNING],  # replaced by _prune
    key=["M", "Cd", "Ce", "HW", "n_blocks"],
    prune_configs_by={"early_config_prune": _prune},
    reset_to_zero=["sync_ptr"],
)


# ---------------------------------------------------------------------------------------------
# Helpers shared by the kernels
# ---------------------------------------------------------------------------------------------


@triton.jit
def _pixel_offsets(hw, W, stride_h, stride_w, MODE: tl.constexpr):
    """int64 element offsets of the flat pixel indices hw (see _pixel_layout)."""
    hw64 = hw.to(tl.int64)
    if MODE == 0:
        offsets = hw64
    elif MODE == 1:
        offsets = hw64 * stride_w
    else:
        h = hw64 // W
        offsets = h * stride_h + (hw64 - h * W) * stride_w
    return offsets


@triton.jit
def _schedule(sync_ptr, chunk, n_samples, n_blocks):
    """This program's ticket, taken in the order programs start: (first pass?, sample in the chunk,
    pixel block). Second-pass blocks come after all first-pass ones, samples in order, each
    sample's blocks in reverse (what its first pass read last is still in L2)."""
    ticket = tl.atomic_add(sync_ptr + chunk, 1, sem="relaxed").to(tl.int64)
    first = ticket < n_samples * n_blocks
    u = tl.where(first, ticket, ticket - n_samples * n_blocks)
    hb = u % n_blocks
    hb = tl.where(first, hb, n_blocks - 1 - hb)
    return first, u // n_blocks, hb.to(tl.int32)


@triton.jit
def _block(valid_ptr, b, hb, M, HW, BLOCK_M: tl.constexpr, BLOCK_HW: tl.constexpr):
    """What every pass starts with: the pixels hw of block hb and their mask, the source indices m
    and their mask, and the sources of sample b that exist and are valid."""
    hw = hb * BLOCK_HW + tl.arange(0, BLOCK_HW)
    m = tl.arange(0, BLOCK_M)
    m_in = m < M
    valid = tl.load(valid_ptr + b * M + m, mask=m_in, other=0) != 0
    return hw, hw < HW, m, m_in, valid


@triton.jit
def _wait_until_ready(flag_ptr):
    """Spin until the flag is raised (acquire: what was written before the raise is visible)."""
    while tl.atomic_add(flag_ptr, 0, sem="acquire") == 0:
        pass
    tl.debug_barrier()


@triton.jit
def _raise_ready(flag_ptr):
    tl.debug_barrier()
    tl.atomic_xchg(flag_ptr, 1, sem="release")


@triton.jit
def _per_pixel_offsets(b, M, HW, m, hw):
    """Offsets of (BLOCK_M, BLOCK_HW) elements of a contiguous (B, M, HW) tensor (g, d_logit)."""
    return (b * M + m[:, None]) * HW + hw[None, :]


@triton.jit
def _attention(g, f, valid, eps):
    """A (BLOCK_M, BLOCK_C, BLOCK_HW) = max(g f, eps) on valid sources, 0 elsewhere; also g f."""
    gf = g[:, None, :] * f[:, :, None]
    # NaN propagates as in torch's clamp_min (the hardware max would drop it).
    A = tl.maximum(gf, eps, propagate_nan=tl.PropagateNan.ALL)
    return tl.where(valid[:, None, None], A, 0.0), gf


@triton.jit
def _last_of_sample(count_ptr, b, n_blocks):
    """True in the program that is the last of sample b to arrive here; all the stores the other
    programs of b made before arriving are then visible to it (acquire-release atomic, with a
    barrier on each side so it orders every lane of the warp, not only the one that issues it)."""
    tl.debug_barrier()
    arrived = tl.atomic_add(count_ptr + b, 1, sem="acq_rel")
    tl.debug_barrier()
    return arrived == n_blocks - 1


@triton.jit
def _sum_partials(part_ptr, stride_block, k, k_in, n_blocks, ACC: tl.constexpr, BLOCK_NB: tl.constexpr):
    """(BLOCK_K,) sum over the n_blocks partial sums part[block * stride_block + k], in block order
    (deterministic). One warp reads them all from L2, so the loads are pipelined."""
    total = tl.zeros(k.shape, ACC)
    for nb0 in tl.range(0, n_blocks, BLOCK_NB, num_stages=2):
        nb = nb0 + tl.arange(0, BLOCK_NB)
        offsets = nb.to(tl.int64)[:, None] * stride_block + k[None, :]
        part = tl.load(part_ptr + offsets, mask=(nb < n_blocks)[:, None] & k_in[None, :], other=0.0)
        total += tl.sum(part, axis=0)
    return total


@triton.jit
def _channel_gate(
    b, psi_part_ptr, xi_part_ptr, fc1w_ptr, fc1b_ptr, fc2w_ptr, fc2b_ptr,
    pooled_ptr, hidden_ptr, f_ptr, M, Cd, Ce, Hd, n_blocks,
    ACC: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_NB: tl.constexpr,
):
    """f of sample b from the pool partial sums: pooled = sum of partials (Cd + Ce per source),
    hidden = relu(fc1 pooled + b1), f = sigmoid(fc2 hidden + b2). Writes pooled (B, M, Z), hidden
    (B, M, Hd) and f (B, M, Ce) (the backward reuses all three).
    psi's share of fc1 pooled is the same for every source and is computed once."""
    Z = Cd + Ce
    h = tl.arange(0, BLOCK_H)
    h_in = h < Hd
    pre_psi = tl.load(fc1b_ptr + h, mask=h_in, other=0.0)
    for k0 in range(0, Cd, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_in = k < Cd
        z = _sum_partials(psi_part_ptr + b * n_blocks * Cd, Cd, k, k_in, n_blocks, ACC, BLOCK_NB)
        for m in range(M):
            tl.store(pooled_ptr + (b * M + m) * Z + k, z, mask=k_in)
        w = tl.load(fc1w_ptr + h[:, None] * Z + k[None, :], mask=h_in[:, None] & k_in[None, :], other=0.0)
        pre_psi += tl.sum(w * z[None, :], axis=1)
    for m in range(M):
        pre = pre_psi
        for k0 in range(0, Ce, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            k_in = k < Ce
            z = _sum_partials(xi_part_ptr + (b * n_blocks * M + m) * Ce, M * Ce, k, k_in, n_blocks, ACC, BLOCK_NB)
            tl.store(pooled_ptr + (b * M + m) * Z + Cd + k, z, mask=k_in)
            w = tl.load(fc1w_ptr + h[:, None] * Z + Cd + k[None, :], mask=h_in[:, None] & k_in[None, :], other=0.0)
            pre += tl.sum(w * z[None, :], axis=1)
        hidden = tl.maximum(pre, 0.0, propagate_nan=tl.PropagateNan.ALL)  # NaN stays, as in F.relu
        tl.store(hidden_ptr + (b * M + m) * Hd + h, hidden, mask=h_in)
        for c0 in range(0, Ce, BLOCK_K):
            c = c0 + tl.arange(0, BLOCK_K)
            c_in = c < Ce
            w = tl.load(fc2w_ptr + c[:, None] * Hd + h[None, :], mask=c_in[:, None] & h_in[None, :], other=0.0)
            logit = tl.sum(w * hidden[None, :], axis=1) + tl.load(fc2b_ptr + c, mask=c_in, other=0.0)
            tl.store(f_ptr + (b * M + m) * Ce + c, 1.0 / (1.0 + tl.exp(-logit)), mask=c_in)


@triton.jit
def _channel_gate_backward(
    b, df_part_ptr, f_ptr, hidden_ptr, fc1w_ptr, fc2w_ptr,
    dz_ptr, dpool_psi_ptr, dpool_xi_ptr, M, Cd, Ce, Hd, n_blocks, inv_hw,
    ACC: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_NB: tl.constexpr,
):
    """The MLP backward of sample b from the partial sums of d loss / d f:
      dfz = df f (1 - f),  d pre = (fc2^T dfz) [hidden > 0],  d pooled = fc1^T d pre
    writes dz = [d pre, dfz] (B, M, Hd + Ce) (torch forms the MLP's weight and bias gradients
    from it: one sum gives both biases') and d pooled / HW: xi's per source (B, M, Ce), psi's summed over the sources (B, Cd)."""
    Z = Cd + Ce
    h = tl.arange(0, BLOCK_H)
    h_in = h < Hd
    dpre_sum = tl.zeros((BLOCK_H,), ACC)
    for m in range(M):
        d_hidden = tl.zeros((BLOCK_H,), ACC)
        for c0 in range(0, Ce, BLOCK_K):
            c = c0 + tl.arange(0, BLOCK_K)
            c_in = c < Ce
            df = _sum_partials(df_part_ptr + (b * n_blocks * M + m) * Ce, M * Ce, c, c_in, n_blocks, ACC, BLOCK_NB)
            f = tl.load(f_ptr + (b * M + m) * Ce + c, mask=c_in, other=0.0)
            dfz = df * f * (1.0 - f)
            tl.store(dz_ptr + (b * M + m) * (Hd + Ce) + Hd + c, dfz, mask=c_in)
            w = tl.load(fc2w_ptr + c[:, None] * Hd + h[None, :], mask=c_in[:, None] & h_in[None, :], other=0.0)
            d_hidden += tl.sum(w * dfz[:, None], axis=0)
        hidden = tl.load(hidden_ptr + (b * M + m) * Hd + h, mask=h_in, other=0.0)
        d_pre = tl.where(hidden > 0, d_hidden, 0.0)
        tl.store(dz_ptr + (b * M + m) * (Hd + Ce) + h, d_pre, mask=h_in)
        dpre_sum += d_pre
        for c0 in range(0, Ce, BLOCK_K):
            c = c0 + tl.arange(0, BLOCK_K)
            c_in = c < Ce
            w = tl.load(fc1w_ptr + h[:, None] * Z + Cd + c[None, :], mask=h_in[:, None] & c_in[None, :], other=0.0)
            tl.store(dpool_xi_ptr + (b * M + m) * Ce + c, tl.sum(w * d_pre[:, None], axis=0) * inv_hw, mask=c_in)
    for d0 in range(0, Cd, BLOCK_K):
        d = d0 + tl.arange(0, BLOCK_K)
        d_in = d < Cd
        w = tl.load(fc1w_ptr + h[:, None] * Z + d[None, :], mask=h_in[:, None] & d_in[None, :], other=0.0)
        tl.store(dpool_psi_ptr + b * Cd + d, tl.sum(w * dpre_sum[:, None], axis=0) * inv_hw, mask=d_in)


# ---------------------------------------------------------------------------------------------
# The passes: one pixel block hb of sample b each
# ---------------------------------------------------------------------------------------------


@triton.jit
def _pool_gate(
    b, hb, hw, hw_in, m, m_in, valid,
    psi_ptr, xi_ptr, gw_ptr, gb_ptr, out_ptr, gate_ptr, psi_part_ptr, xi_part_ptr,
    M, Cd, Ce, HW, W, n_blocks, inv_hw,
    s_psi_b, s_psi_c, s_psi_h, s_psi_w, s_xi_b, s_xi_m, s_xi_c, s_xi_h, s_xi_w, s_out_b, s_out_c,
    ACC: tl.constexpr, PIX_PSI: tl.constexpr, PIX_XI: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_HW: tl.constexpr,
    STAGES: tl.constexpr,
):
    """Forward pass 1: gate g, pool partial sums, psi copied into out[:, :Cd]."""
    part_row = b * n_blocks + hb

    # psi: its share of the gate logit (the same for every source), pool sums, and the copy.
    psi_pix = _pixel_offsets(hw, W, s_psi_h, s_psi_w, PIX_PSI)
    logit_psi = tl.zeros((BLOCK_HW,), ACC)
    for d0 in tl.range(0, Cd, BLOCK_D, num_stages=STAGES):
        d = d0 + tl.arange(0, BLOCK_D)
        d_in = d < Cd
        tile_in = d_in[:, None] & hw_in[None, :]
        d64 = d.to(tl.int64)[:, None]
        raw = tl.load(psi_ptr + b * s_psi_b + d64 * s_psi_c + psi_pix[None, :], mask=tile_in, other=0.0,
                      eviction_policy="evict_first")
        tl.store(out_ptr + b * s_out_b + d64 * s_out_c + hw[None, :], raw, mask=tile_in,
                 eviction_policy="evict_first")
        x = raw.to(ACC)
        w = tl.load(gw_ptr + d, mask=d_in, other=0.0)
        logit_psi += tl.sum(x * w[:, None], axis=0)
        tl.store(psi_part_ptr + part_row * Cd + d, tl.sum(x, axis=1) * inv_hw, mask=d_in)

    # xi: its share of the gate logit per source, pool sums per (source, channel).
    xi_pix = _pixel_offsets(hw, W, s_xi_h, s_xi_w, PIX_XI)
    xi_src = xi_ptr + b * s_xi_b + m.to(tl.int64) * s_xi_m
    logit = tl.zeros((BLOCK_M, BLOCK_HW), ACC) + logit_psi[None, :] + tl.load(gb_ptr)
    for c0 in tl.range(0, Ce, BLOCK_C, num_stages=STAGES):
        c = c0 + tl.arange(0, BLOCK_C)
        c_in = c < Ce
        # Invalid sources are never read: their padding may hold NaN.
        tile_in = valid[:, None, None] & c_in[None, :, None] & hw_in[None, None, :]
        offsets = xi_src[:, None, None] + c.to(tl.int64)[None, :, None] * s_xi_c + xi_pix[None, None, :]
        x = tl.load(offsets, mask=tile_in, other=0.0, eviction_policy="evict_last").to(ACC)
        w = tl.load(gw_ptr + Cd + c, mask=c_in, other=0.0)
        logit += tl.sum(x * w[None, :, None], axis=1)
        part = xi_part_ptr + (part_row * M + m[:, None]) * Ce + c[None, :]
        tl.store(part, tl.sum(x, axis=2) * inv_hw, mask=m_in[:, None] & c_in[None, :])

    g = 1.0 / (1.0 + tl.exp(-logit))
    tl.store(gate_ptr + _per_pixel_offsets(b, M, HW, m, hw), g, mask=m_in[:, None] & hw_in[None, :])


@triton.jit
def _fuse(
    b, hw, hw_in, m, m_in, valid,
    xi_ptr, gate_ptr, f_ptr, out_ptr, sal_ptr,
    M, Cd, Ce, HW, W, eps,
    s_xi_b, s_xi_m, s_xi_c, s_xi_h, s_xi_w, s_out_b, s_out_c,
    ACC: tl.constexpr, PIX_XI: tl.constexpr, SALIENCY: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr, STAGES: tl.constexpr,
):
    """Forward pass 2: out[:, Cd:] = sum_m Att xi, and the saliency mean_c Att."""
    mhw = _per_pixel_offsets(b, M, HW, m, hw)
    mhw_in = m_in[:, None] & hw_in[None, :]
    g = tl.load(gate_ptr + mhw, mask=mhw_in, other=0.0)

    xi_pix = _pixel_offsets(hw, W, s_xi_h, s_xi_w, PIX_XI)
    xi_src = xi_ptr + b * s_xi_b + m.to(tl.int64) * s_xi_m
    saliency = tl.zeros((BLOCK_M, BLOCK_HW), ACC)
    for c0 in tl.range(0, Ce, BLOCK_C, num_stages=STAGES):
        c = c0 + tl.arange(0, BLOCK_C)
        c_in = c < Ce
        mc_in = m_in[:, None] & c_in[None, :]
        f = tl.load(f_ptr + (b * M + m[:, None]) * Ce + c[None, :], mask=mc_in, other=0.0)
        tile_in = valid[:, None, None] & c_in[None, :, None] & hw_in[None, None, :]
        offsets = xi_src[:, None, None] + c.to(tl.int64)[None, :, None] * s_xi_c + xi_pix[None, None, :]
        x = tl.load(offsets, mask=tile_in, other=0.0, eviction_policy="evict_first").to(ACC)
        A, _ = _attention(g, f, valid, eps)
        # S >= eps: every sample has a valid source, and A = eps on padded lanes of valid sources.
        inv_s = 1.0 / tl.sum(A, axis=0)
        fused = tl.sum(A * x, axis=0) * inv_s
        out = out_ptr + b * s_out_b + (Cd + c).to(tl.int64)[:, None] * s_out_c + hw[None, :]
        tl.store(out, fused.to(out_ptr.dtype.element_ty), mask=c_in[:, None] & hw_in[None, :],
                 eviction_policy="evict_first")
        if SALIENCY:
            saliency += tl.sum(tl.where(c_in[None, :, None], A * inv_s[None, :, :], 0.0), axis=1)
    if SALIENCY:
        tl.store(sal_ptr + mhw, (saliency / Ce).to(sal_ptr.dtype.element_ty), mask=mhw_in)


@triton.jit
def _gate_grad(
    b, hb, hw, hw_in, m, m_in, valid,
    xi_ptr, gate_ptr, f_ptr, gout_ptr, gsal_ptr, dlogit_ptr, df_part_ptr, wgrad_part_ptr,
    M, Cd, Ce, HW, W, n_blocks, eps,
    s_xi_b, s_xi_m, s_xi_c, s_xi_h, s_xi_w, s_go_b, s_go_c, s_go_h, s_go_w, s_gs_b, s_gs_m, s_gs_h, s_gs_w,
    ACC: tl.constexpr, PIX_XI: tl.constexpr, PIX_GO: tl.constexpr, PIX_GS: tl.constexpr,
    HAS_GSAL: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr, STAGES: tl.constexpr,
):
    """Backward pass 1: d loss / d A, reduced to the gate logit (per pixel) and f (partials).

    With G = grad_out[:, Cd:] and Gs = grad_saliency:
      dA_m = G (xi_m - F) / S + (Gs_m - sum_k Gs_k Att_k) / (S Ce),   zero where g f < eps
      d g_m = sum_c dA_m f_m,   d logit_m = d g_m g_m (1 - g_m),   d f_m = sum_hw dA_m g_m.
    The gate bias gradient's partial sum goes to the last column of the weight-gradient partials.
    """
    mhw = _per_pixel_offsets(b, M, HW, m, hw)
    mhw_in = m_in[:, None] & hw_in[None, :]
    g = tl.load(gate_ptr + mhw, mask=mhw_in, other=0.0)
    if HAS_GSAL:
        gs_pix = _pixel_offsets(hw, W, s_gs_h, s_gs_w, PIX_GS)
        gs_offsets = b * s_gs_b + m.to(tl.int64)[:, None] * s_gs_m + gs_pix[None, :]
        gs = tl.load(gsal_ptr + gs_offsets, mask=valid[:, None] & hw_in[None, :], other=0.0).to(ACC)

    xi_pix = _pixel_offsets(hw, W, s_xi_h, s_xi_w, PIX_XI)
    go_pix = _pixel_offsets(hw, W, s_go_h, s_go_w, PIX_GO)
    xi_src = xi_ptr + b * s_xi_b + m.to(tl.int64) * s_xi_m
    d_gate = tl.zeros((BLOCK_M, BLOCK_HW), ACC)
    part_row = b * n_blocks + hb
    for c0 in tl.range(0, Ce, BLOCK_C, num_stages=STAGES):
        c = c0 + tl.arange(0, BLOCK_C)
        c_in = c < Ce
        chw_in = c_in[:, None] & hw_in[None, :]
        mc_in = m_in[:, None] & c_in[None, :]
        f = tl.load(f_ptr + (b * M + m[:, None]) * Ce + c[None, :], mask=mc_in, other=0.0)
        tile_in = valid[:, None, None] & c_in[None, :, None] & hw_in[None, None, :]
        offsets = xi_src[:, None, None] + c.to(tl.int64)[None, :, None] * s_xi_c + xi_pix[None, None, :]
        x = tl.load(offsets, mask=tile_in, other=0.0, eviction_policy="evict_last").to(ACC)
        go_offsets = b * s_go_b + (Cd + c).to(tl.int64)[:, None] * s_go_c + go_pix[None, :]
        go = tl.load(gout_ptr + go_offsets, mask=chw_in, other=0.0, eviction_policy="evict_last").to(ACC)
        A, gf = _attention(g, f, valid, eps)
        inv_s = 1.0 / tl.sum(A, axis=0)
        fused = tl.sum(A * x, axis=0) * inv_s
        dA = (go * inv_s)[None, :, :] * (x - fused[None, :, :])
        if HAS_GSAL:
            sal_dot = tl.sum(gs[:, None, :] * A, axis=0) * inv_s
            dA += (gs[:, None, :] - sal_dot[None, :, :]) * (inv_s / Ce)[None, :, :]
        dA = tl.where(tile_in & (gf >= eps), dA, 0.0)  # clamp_min passes the gradient where gf >= eps
        d_gate += tl.sum(dA * f[:, :, None], axis=1)
        part = df_part_ptr + (part_row * M + m[:, None]) * Ce + c[None, :]
        tl.store(part, tl.sum(dA * g[:, None, :], axis=2), mask=mc_in)

    d_logit = tl.where(valid[:, None] & hw_in[None, :], d_gate * g * (1.0 - g), 0.0)
    tl.store(dlogit_ptr + mhw, d_logit, mask=mhw_in)
    tl.store(wgrad_part_ptr + part_row * (Cd + Ce + 1) + Cd + Ce, tl.sum(tl.sum(d_logit, axis=1), axis=0))


@triton.jit
def _input_grad(
    b, hb, hw, hw_in, m, m_in, valid,
    xi_ptr, psi_ptr, gate_ptr, f_ptr, gout_ptr, dlogit_ptr, gw_ptr, dpool_xi_ptr, dpool_psi_ptr,
    gxi_ptr, gpsi_ptr, wgrad_part_ptr,
    M, Cd, Ce, HW, W, n_blocks, eps,
    s_xi_b, s_xi_m, s_xi_c, s_xi_h, s_xi_w, s_psi_b, s_psi_c, s_psi_h, s_psi_w, s_go_b, s_go_c, s_go_h, s_go_w,
    ACC: tl.constexpr, PIX_XI: tl.constexpr, PIX_PSI: tl.constexpr, PIX_GO: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_HW: tl.constexpr,
    STAGES: tl.constexpr,
):
    """Backward pass 2: grad_xi, grad_psi and the gate weight gradient (partials).

      grad_xi_m  = G Att_m + d logit_m w_xi + d pooled_xi_m / HW      (0 on invalid sources)
      grad_psi   = G_psi + (sum_m d logit_m) w_psi + sum_m d pooled_psi_m / HW
      d w_xi[c]  = sum_{m,hw} d logit_m xi_m[c],   d w_psi[d] = sum_hw (sum_m d logit_m) psi[d]
    dpool_xi_ptr and dpool_psi_ptr hold the pooled gradients already divided by HW. The weight
    gradient's partials are row (b, hb) of (B, n_blocks, Cd + Ce + 1): psi's, then xi's.
    """
    mhw = _per_pixel_offsets(b, M, HW, m, hw)
    mhw_in = m_in[:, None] & hw_in[None, :]
    g = tl.load(gate_ptr + mhw, mask=mhw_in, other=0.0)
    d_logit = tl.load(dlogit_ptr + mhw, mask=mhw_in, other=0.0)
    wgrad_row = wgrad_part_ptr + (b * n_blocks + hb) * (Cd + Ce + 1)

    xi_pix = _pixel_offsets(hw, W, s_xi_h, s_xi_w, PIX_XI)
    go_pix = _pixel_offsets(hw, W, s_go_h, s_go_w, PIX_GO)
    xi_src = xi_ptr + b * s_xi_b + m.to(tl.int64) * s_xi_m
    gxi_src = gxi_ptr + (b * M + m.to(tl.int64)) * Ce * HW
    for c0 in tl.range(0, Ce, BLOCK_C, num_stages=STAGES):
        c = c0 + tl.arange(0, BLOCK_C)
        c_in = c < Ce
        mc_in = m_in[:, None] & c_in[None, :]
        f = tl.load(f_ptr + (b * M + m[:, None]) * Ce + c[None, :], mask=mc_in, other=0.0)
        dpool = tl.load(dpool_xi_ptr + (b * M + m[:, None]) * Ce + c[None, :], mask=mc_in, other=0.0)
        w = tl.load(gw_ptr + Cd + c, mask=c_in, other=0.0)
        tile_in = valid[:, None, None] & c_in[None, :, None] & hw_in[None, None, :]
        c64 = c.to(tl.int64)[None, :, None]
        offsets = xi_src[:, None, None] + c64 * s_xi_c + xi_pix[None, None, :]
        x = tl.load(offsets, mask=tile_in, other=0.0, eviction_policy="evict_first").to(ACC)
        go_offsets = b * s_go_b + (Cd + c).to(tl.int64)[:, None] * s_go_c + go_pix[None, :]
        go = tl.load(gout_ptr + go_offsets, mask=c_in[:, None] & hw_in[None, :], other=0.0,
                     eviction_policy="evict_first").to(ACC)
        A, _ = _attention(g, f, valid, eps)
        inv_s = 1.0 / tl.sum(A, axis=0)
        grad = (go * inv_s)[None, :, :] * A + d_logit[:, None, :] * w[None, :, None] + dpool[:, :, None]
        grad = tl.where(valid[:, None, None], grad, 0.0)
        tile_out = m_in[:, None, None] & c_in[None, :, None] & hw_in[None, None, :]
        gxi = gxi_src[:, None, None] + c64 * HW + hw[None, None, :]
        tl.store(gxi, grad.to(gxi_ptr.dtype.element_ty), mask=tile_out, eviction_policy="evict_first")
        w_grad = tl.sum(tl.sum(d_logit[:, None, :] * x, axis=2), axis=0)
        tl.store(wgrad_row + Cd + c, w_grad, mask=c_in)

    d_logit_sum = tl.sum(d_logit, axis=0)
    psi_pix = _pixel_offsets(hw, W, s_psi_h, s_psi_w, PIX_PSI)
    for d0 in tl.range(0, Cd, BLOCK_D, num_stages=STAGES):
        d = d0 + tl.arange(0, BLOCK_D)
        d_in = d < Cd
        tile_in = d_in[:, None] & hw_in[None, :]
        d64 = d.to(tl.int64)[:, None]
        psi_offsets = b * s_psi_b + d64 * s_psi_c + psi_pix[None, :]
        x = tl.load(psi_ptr + psi_offsets, mask=tile_in, other=0.0, eviction_policy="evict_first").to(ACC)
        go_offsets = b * s_go_b + d64 * s_go_c + go_pix[None, :]
        go = tl.load(gout_ptr + go_offsets, mask=tile_in, other=0.0, eviction_policy="evict_first").to(ACC)
        w = tl.load(gw_ptr + d, mask=d_in, other=0.0)
        dpool = tl.load(dpool_psi_ptr + b * Cd + d, mask=d_in, other=0.0)
        grad = go + d_logit_sum[None, :] * w[:, None] + dpool[:, None]
        gpsi = gpsi_ptr + (b * Cd + d64) * HW + hw[None, :]
        tl.store(gpsi, grad.to(gpsi_ptr.dtype.element_ty), mask=tile_in, eviction_policy="evict_first")
        tl.store(wgrad_row + d, tl.sum(d_logit_sum[None, :] * x, axis=1), mask=d_in)


# ---------------------------------------------------------------------------------------------
# The two kernels: one launch per chunk of samples holds both passes of a direction
# ---------------------------------------------------------------------------------------------


@_autotune
@triton.jit
def _forward_kernel(
    psi_ptr, xi_ptr, gw_ptr, gb_ptr, fc1w_ptr, fc1b_ptr, fc2w_ptr, fc2b_ptr, valid_ptr,
    out_ptr, sal_ptr, gate_ptr, psi_part_ptr, xi_part_ptr, sync_ptr, pooled_ptr, hidden_ptr, f_ptr,
    chunk, b0, n_samples, n_chunks, B, M, Cd, Ce, Hd, HW, W, n_blocks, inv_hw, eps,
    s_psi_b, s_psi_c, s_psi_h, s_psi_w,
    s_xi_b, s_xi_m, s_xi_c, s_xi_h, s_xi_w,
    s_out_b, s_out_c,
    ACC: tl.constexpr, PIX_PSI: tl.constexpr, PIX_XI: tl.constexpr, SALIENCY: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_HW: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_NB: tl.constexpr, STAGES: tl.constexpr,
):
    """The forward of samples b0 .. b0 + n_samples - 1: pool and gate, the channel gate's MLP by
    each sample's last program, then fuse (sync_ptr: n_chunks tickets, B arrivals, B flags)."""
    first, s, hb = _schedule(sync_ptr, chunk, n_samples, n_blocks)
    b = b0 + s
    hw, hw_in, m, m_in, valid = _block(valid_ptr, b, hb, M, HW, BLOCK_M, BLOCK_HW)
    if first:
        _pool_gate(
            b, hb, hw, hw_in, m, m_in, valid,
            psi_ptr, xi_ptr, gw_ptr, gb_ptr, out_ptr, gate_ptr, psi_part_ptr, xi_part_ptr,
            M, Cd, Ce, HW, W, n_blocks, inv_hw,
            s_psi_b, s_psi_c, s_psi_h, s_psi_w, s_xi_b, s_xi_m, s_xi_c, s_xi_h, s_xi_w, s_out_b, s_out_c,
            ACC, PIX_PSI, PIX_XI, BLOCK_M, BLOCK_C, BLOCK_D, BLOCK_HW, STAGES,
        )
        if _last_of_sample(sync_ptr + n_chunks, b, n_blocks):
            _channel_gate(
                b, psi_part_ptr, xi_part_ptr, fc1w_ptr, fc1b_ptr, fc2w_ptr, fc2b_ptr,
                pooled_ptr, hidden_ptr, f_ptr, M, Cd, Ce, Hd, n_blocks, ACC, BLOCK_H, BLOCK_K, BLOCK_NB,
            )
            _raise_ready(sync_ptr + n_chunks + B + b)
    else:
        _wait_until_ready(sync_ptr + n_chunks + B + b)
        _fuse(
            b, hw, hw_in, m, m_in, valid,
            xi_ptr, gate_ptr, f_ptr, out_ptr, sal_ptr,
            M, Cd, Ce, HW, W, eps,
            s_xi_b, s_xi_m, s_xi_c, s_xi_h, s_xi_w, s_out_b, s_out_c,
            ACC, PIX_XI, SALIENCY, BLOCK_M, BLOCK_C, BLOCK_HW, STAGES,
        )


@_autotune
@triton.jit
def _backward_kernel(
    xi_ptr, psi_ptr, gw_ptr, fc1w_ptr, fc2w_ptr, valid_ptr, gate_ptr, hidden_ptr, f_ptr, gout_ptr, gsal_ptr,
    dlogit_ptr, df_part_ptr, wgrad_part_ptr, sync_ptr, dz_ptr, dpool_psi_ptr, dpool_xi_ptr,
    gxi_ptr, gpsi_ptr,
    chunk, b0, n_samples, n_chunks, B, M, Cd, Ce, Hd, HW, W, n_blocks, inv_hw, eps,
    s_xi_b, s_xi_m, s_xi_c, s_xi_h, s_xi_w,
    s_psi_b, s_psi_c, s_psi_h, s_psi_w,
    s_go_b, s_go_c, s_go_h, s_go_w,
    s_gs_b, s_gs_m, s_gs_h, s_gs_w,
    ACC: tl.constexpr, PIX_XI: tl.constexpr, PIX_PSI: tl.constexpr, PIX_GO: tl.constexpr,
    PIX_GS: tl.constexpr, HAS_GSAL: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_HW: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_NB: tl.constexpr, STAGES: tl.constexpr,
):
    """The backward of samples b0 .. b0 + n_samples - 1: the gate gradient, the MLP backward by
    each sample's last program, then the input gradients (sync_ptr as in _forward_kernel)."""
    first, s, hb = _schedule(sync_ptr, chunk, n_samples, n_blocks)
    b = b0 + s
    hw, hw_in, m, m_in, valid = _block(valid_ptr, b, hb, M, HW, BLOCK_M, BLOCK_HW)
    if first:
        _gate_grad(
            b, hb, hw, hw_in, m, m_in, valid,
            xi_ptr, gate_ptr, f_ptr, gout_ptr, gsal_ptr, dlogit_ptr, df_part_ptr, wgrad_part_ptr,
            M, Cd, Ce, HW, W, n_blocks, eps,
            s_xi_b, s_xi_m, s_xi_c, s_xi_h, s_xi_w, s_go_b, s_go_c, s_go_h, s_go_w,
            s_gs_b, s_gs_m, s_gs_h, s_gs_w,
            ACC, PIX_XI, PIX_GO, PIX_GS, HAS_GSAL, BLOCK_M, BLOCK_C, BLOCK_HW, STAGES,
        )
        if _last_of_sample(sync_ptr + n_chunks, b, n_blocks):
            _channel_gate_backward(
                b, df_part_ptr, f_ptr, hidden_ptr, fc1w_ptr, fc2w_ptr, dz_ptr,
                dpool_psi_ptr, dpool_xi_ptr, M, Cd, Ce, Hd, n_blocks, inv_hw, ACC, BLOCK_H, BLOCK_K, BLOCK_NB,
            )
            _raise_ready(sync_ptr + n_chunks + B + b)
    else:
        _wait_until_ready(sync_ptr + n_chunks + B + b)
        _input_grad(
            b, hb, hw, hw_in, m, m_in, valid,
            xi_ptr, psi_ptr, gate_ptr, f_ptr, gout_ptr, dlogit_ptr, gw_ptr, dpool_xi_ptr, dpool_psi_ptr,
            gxi_ptr, gpsi_ptr, wgrad_part_ptr,
            M, Cd, Ce, HW, W, n_blocks, eps,
            s_xi_b, s_xi_m, s_xi_c, s_xi_h, s_xi_w, s_psi_b, s_psi_c, s_psi_h, s_psi_w,
            s_go_b, s_go_c, s_go_h, s_go_w,
            ACC, PIX_XI, PIX_PSI, PIX_GO, BLOCK_M, BLOCK_C, BLOCK_D, BLOCK_HW, STAGES,
        )


# ---------------------------------------------------------------------------------------------
# Launchers: allocate, pick chunks and block sizes, launch. Shapes: psi (B, Cd, H, W), xi
# (B, M, Ce, H, W), valid (B, M) int8, HW = H * W. ``weights`` holds the six parameters
# (g_weight, g_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias) contiguous in the accumulation
# dtype (float32, or float64 for float64 inputs), which is also the dtype of g, f, d_logit, the
# pooled vectors and every partial sum.
# ---------------------------------------------------------------------------------------------


def _strides4(t: torch.Tensor) -> tuple[int, tuple[int, ...]]:
    mode, sh, sw = _pixel_layout(t)
    return mode, (t.stride(0), t.stride(1), sh, sw)


def _strides5(t: torch.Tensor) -> tuple[int, tuple[int, ...]]:
    mode, sh, sw = _pixel_layout(t)
    return mode, (t.stride(0), t.stride(1), t.stride(2), sh, sw)


class Plan(NamedTuple):
    """The launches of one direction: (first sample, samples) per chunk, and the block sizes."""

    chunks: list[tuple[int, int]]
    blocks: Blocks


def plan(B: int, M: int, Cd: int, Ce: int, HW: int, hidden: int, element_size: int) -> Plan:
    """Chunks whose xi fits in L2_CHUNK_BYTES (both directions: the backward's second pass also
    re-reads grad_out[:, Cd:], 1 / M of xi's bytes, which the byte model counts as partly missing
    where it does not fit; a budget of xi and grad_out together would double the launches at the
    small shapes); block sizes for the largest chunk."""
    chunks = chunk_samples(B, M * Ce * HW * element_size)
    return Plan(chunks, Blocks(M, Cd, Ce, HW, chunks[0][1], hidden))


def forward(
    psi: torch.Tensor, xi: torch.Tensor, weights, valid: torch.Tensor, eps: float, out: torch.Tensor,
    saliency: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Writes out (contiguous (B, Cd + Ce, H, W)) and, if given, the saliency (B, M, H, W)
    contiguous. Returns what the backward reuses: the gate g (B, M, H, W), pooled (B, M, Cd + Ce),
    the MLP's hidden units (B, M, Hd) and f (B, M, Ce)."""
    B, M, Ce, H, W = xi.shape
    Cd, HW, Hd = psi.shape[1], H * W, weights.fc1_weight.shape[0]
    acc = weights.g_weight.dtype
    chunks, blocks = plan(B, M, Cd, Ce, HW, Hd, xi.element_size())

    def new(*shape: int, dtype: torch.dtype = acc) -> torch.Tensor:
        return torch.empty(shape, device=xi.device, dtype=dtype)

    gate, pooled, hidden, f = new(B, M, H, W), new(B, M, Cd + Ce), new(B, M, Hd), new(B, M, Ce)
    psi_part, xi_part = new(B, blocks.n_blocks, Cd), new(B, blocks.n_blocks, M, Ce)
    sync = torch.zeros((len(chunks) + 2 * B,), device=xi.device, dtype=torch.int32)
    pix_psi, s_psi = _strides4(psi)
    pix_xi, s_xi = _strides5(xi)
    for index, (b0, n_samples) in enumerate(chunks):
        _forward_kernel[(2 * n_samples * blocks.n_blocks,)](
            psi, xi, *weights, valid, out, saliency if saliency is not None else out, gate,
            psi_part, xi_part, sync, pooled, hidden, f,
            index, b0, n_samples, len(chunks), B, M, Cd, Ce, Hd, HW, W, blocks.n_blocks, 1.0 / HW, eps,
            *s_psi, *s_xi, out.stride(0), out.stride(1),
            ACC=_TL_DTYPES[acc], PIX_PSI=pix_psi, PIX_XI=pix_xi, SALIENCY=saliency is not None,
            **blocks.meta(),
        )
    return gate, pooled, hidden, f


def backward(
    psi: torch.Tensor, xi: torch.Tensor, weights, valid: torch.Tensor, eps: float,
    grad_out: torch.Tensor, grad_saliency: torch.Tensor | None,
    gate: torch.Tensor, hidden: torch.Tensor, f: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """grad_out (B, Cd + Ce, H, W), grad_saliency (B, M, H, W) or None, any strides.

    Returns grad_psi (B, Cd, H, W) and grad_xi (B, M, Ce, H, W), contiguous in the input dtype;
    the gradient of (g_weight, g_bias) as one (Cd + Ce + 1,) vector; dz = [d pre-ReLU, d fc2-logit]
    (B, M, Hd + Ce), from which the caller forms the MLP's gradients."""
    B, M, Ce, H, W = xi.shape
    Cd, HW, Hd = psi.shape[1], H * W, weights.fc1_weight.shape[0]
    acc = weights.g_weight.dtype
    chunks, blocks = plan(B, M, Cd, Ce, HW, Hd, xi.element_size())

    def new(*shape: int, dtype: torch.dtype = acc) -> torch.Tensor:
        return torch.empty(shape, device=xi.device, dtype=dtype)

    d_logit, df_part = new(B, M, H, W), new(B, blocks.n_blocks, M, Ce)
    wgrad_part = new(B, blocks.n_blocks, Cd + Ce + 1)
    dz, dpool_psi, dpool_xi = new(B, M, Hd + Ce), new(B, Cd), new(B, M, Ce)
    sync = torch.zeros((len(chunks) + 2 * B,), device=xi.device, dtype=torch.int32)
    grad_psi = torch.empty(psi.shape, device=psi.device, dtype=psi.dtype)
    grad_xi = torch.empty(xi.shape, device=xi.device, dtype=xi.dtype)
    pix_xi, s_xi = _strides5(xi)
    pix_psi, s_psi = _strides4(psi)
    pix_go, s_go = _strides4(grad_out)
    gsal = grad_saliency if grad_saliency is not None else gate
    pix_gs, s_gs = _strides4(gsal)
    for index, (b0, n_samples) in enumerate(chunks):
        _backward_kernel[(2 * n_samples * blocks.n_blocks,)](
            xi, psi, weights.g_weight, weights.fc1_weight, weights.fc2_weight, valid, gate, hidden, f,
            grad_out, gsal, d_logit, df_part, wgrad_part, sync, dz, dpool_psi, dpool_xi,
            grad_xi, grad_psi,
            index, b0, n_samples, len(chunks), B, M, Cd, Ce, Hd, HW, W, blocks.n_blocks, 1.0 / HW, eps,
            *s_xi, *s_psi, *s_go, *s_gs,
            ACC=_TL_DTYPES[acc], PIX_XI=pix_xi, PIX_PSI=pix_psi, PIX_GO=pix_go, PIX_GS=pix_gs,
            HAS_GSAL=grad_saliency is not None,
            **blocks.meta(),
        )
    return grad_psi, grad_xi, wgrad_part.sum(dim=(0, 1)), dz
