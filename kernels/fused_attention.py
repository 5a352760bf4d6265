"""Triton kernels of the multi-source attention fusion (the op is ``msgen.ops.fused_attention``).

Notation as in ``msgen.ops.fused_attention``: psi (B, Cd, H, W), xi (B, M, Ce, H, W), P = H * W
pixels, gate g (B, M, P), channel gate f (B, M, Ce), A = max(g f, eps) over valid sources,
S = sum_m A, Att = A / S, F = sum_m Att xi.

How the work is divided
-----------------------
Every kernel runs one program per (pixel block of BLOCK_P pixels, sample b), on one flat grid
axis of cdiv(P, BLOCK_P) * B programs (so B may exceed the 65,535 of a second axis), each one
warp (so no reduction crosses warps), with BLOCK_P shrunk at small images until the grid holds
about _TARGET_PROGRAMS programs. A program loops over the channels in chunks of BLOCK_C and holds a
(BLOCK_M, BLOCK_C, BLOCK_P) tile of xi, all M sources at once, so the sums over sources (S, F) and
over channels (the gate's dot product) are register reductions; only per-pixel state (BLOCK_M,
BLOCK_P) lives across the channel loop. Nothing of size (B, M, Ce, P) is stored besides the outputs.
Reductions over pixels (the global average pool, the gradients of f and of the six weights) are
written as per-block partial sums, (B, n_blocks, ...), which the caller adds up with torch: they
are P / BLOCK_P times smaller than xi, deterministic, and need no atomics.

The global pool makes f depend on every pixel of a sample, so neither direction fits in one pass:

forward (two kernels, xi read twice, psi once, out written once)
  1. ``_pool_gate_kernel``: reads psi and xi once; writes the gate g (B, M, P) in the accumulation
     dtype, the pool partial sums of psi and xi (already divided by P), and copies psi into out[:, :Cd].
  -- the caller reduces the partial sums and runs the tiny MLP of f on (B, M, Cd + Ce) with torch.
  2. ``_fuse_kernel``: reads xi (and g, f); writes F into out[:, Cd:] and, when asked, the saliency
     (the channel mean of Att, (B, M, P)).
backward (two kernels, xi read twice, psi once, grad_out twice, grad_xi and grad_psi written once)
  3. ``_gate_grad_kernel``: reads xi, grad_out[:, Cd:] (and g, f, grad_saliency); recomputes A, S
     and F; writes d loss / d(gate logit) (B, M, P) and the partial sums of d loss / d f and of
     the gate bias gradient.
  -- the caller runs the MLP backward (B, M, Cd + Ce) with torch: weight gradients of fc1 and fc2
     and d loss / d pooled.
  4. ``_input_grad_kernel``: reads xi, psi, grad_out (and g, f, the gate-logit gradient); writes
     grad_xi, grad_psi and the partial sums of the gate weight gradient.
Forward + backward thus reads xi four times and psi twice: at the PERFORMANCE.md fusion shapes the
bytes moved are 1.55-1.63x its memory floor (which counts one read of xi in each direction), and
1.5-1.83x for the forward alone (M = 10 is the worst), before any L2 reuse.
Kernels 2 and 4 visit the blocks in the reverse order of kernels 1 and 3, so the first blocks they
read are the last ones the previous kernel read, still in L2.

Precision and indexing: every load is converted to ACC (float32, or float64 for float64 inputs) and
all sums accumulate in ACC; outputs are rounded once to the input dtype. Offsets are int64 (the
sample index is cast before any multiplication), so tensors beyond 2**31 elements are addressed
correctly. Each big tensor is addressed through its own strides; ``PIX_*`` constexprs pick flat
contiguous pixels (vectorisable), flat strided pixels (channels-last, expanded gradients) or a
general (h, w) walk.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# One warp per program: every reduction over sources and channels (S, F, the gate's dot product)
# then stays inside a thread or crosses lanes of the one warp with shuffles, never shared memory
# and barriers. With 4 warps and 128-pixel blocks Triton put the warps along the source axis
# (warpsPerCTA [2, 2, 1] at M = 5, [4, 1, 1] at M = 10): a cross-warp reduction per channel step.
# tests/test_kernel_static.py checks the TTGIR layouts and the registers for sm_90.
_NUM_WARPS = 1
# Elements of one (BLOCK_M, BLOCK_C, BLOCK_P) tile: 8 per thread for each live tile (x, A, the
# gradients), which keeps the kernels at 61-115 registers (16+ programs per SM) without spills
# under triton 3.6-3.9 (512 gave up to 227 registers with triton 3.6 at M = 10).
_TILE = 256
_MAX_BLOCK_P = 128  # 512-byte float32 rows: full coalesced segments per channel and source
# Programs to aim for: about 8 per SM of a 132-SM H100/H200. Deep levels have few pixels per
# sample, so their pixel blocks are made smaller until the grid has that many programs.
_TARGET_PROGRAMS = 1024
# Loads of the channel loops are software-pipelined (cp.async into shared memory on Ampere and
# later) this many iterations deep: the bytes in flight that a memory-bound loop needs.
_NUM_STAGES = 3

_PIX_CONTIGUOUS, _PIX_FLAT, _PIX_GENERAL = 0, 1, 2


def _acc_dtype(dtype: torch.dtype) -> tl.dtype:
    return tl.float64 if dtype == torch.float64 else tl.float32


def acc_torch_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels accumulate in (and store g, f and the partial sums in)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


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


class _Blocks:
    """Block sizes for one launch: all M sources in a tile, channels filling it up to _TILE."""

    def __init__(self, M: int, Cd: int, Ce: int, P: int, B: int) -> None:
        self.M = triton.next_power_of_2(M)
        self.P = min(_MAX_BLOCK_P, triton.next_power_of_2(P), max(16, _TILE // self.M))
        while self.P > 16 and triton.cdiv(P, self.P) * B < _TARGET_PROGRAMS:
            self.P //= 2
        self.C = max(1, min(triton.next_power_of_2(Ce), _TILE // (self.M * self.P)))
        self.D = max(1, min(triton.next_power_of_2(max(Cd, 1)), _TILE // self.P))
        self.n_blocks = triton.cdiv(P, self.P)

    def grid(self, B: int) -> tuple[int]:
        return (self.n_blocks * B,)

    def meta(self, with_d: bool) -> dict[str, int]:
        """The launch's block-size constexprs (BLOCK_D for kernels that loop over psi) and options."""
        meta = {"BLOCK_M": self.M, "BLOCK_C": self.C, "BLOCK_P": self.P}
        meta.update(STAGES=_NUM_STAGES, num_warps=_NUM_WARPS)
        return meta | ({"BLOCK_D": self.D} if with_d else {})


@triton.jit
def _pixel_offsets(p, W, stride_h, stride_w, MODE: tl.constexpr):
    """int64 element offsets of the flat pixel indices p (see _pixel_layout)."""
    p64 = p.to(tl.int64)
    if MODE == 0:
        offsets = p64
    elif MODE == 1:
        offsets = p64 * stride_w
    else:
        h = p64 // W
        offsets = h * stride_h + (p64 - h * W) * stride_w
    return offsets


@triton.jit
def _block_and_sample(n_blocks, REVERSE: tl.constexpr):
    """(pixel block, sample b as int64) of this program in the flat grid (n_blocks * B,): one grid
    axis, so B is not bound by the 65,535 programs of the second axis. REVERSE visits the blocks
    in the opposite order (the second kernel of a direction starts where the first one ended)."""
    pid = tl.program_id(0).to(tl.int64)
    if REVERSE:
        pid = tl.num_programs(0).to(tl.int64) - 1 - pid
    return (pid % n_blocks).to(tl.int32), pid // n_blocks


@triton.jit
def _source_mask(valid_ptr, b, M, BLOCK_M: tl.constexpr):
    """(BLOCK_M,) the sources of sample b that exist and are valid."""
    m = tl.arange(0, BLOCK_M)
    return tl.load(valid_ptr + b * M + m, mask=m < M, other=0) != 0


@triton.jit
def _attention(g, f, valid, eps):
    """A (BLOCK_M, BLOCK_C, BLOCK_P) = max(g f, eps) on valid sources, 0 elsewhere; also g f."""
    gf = g[:, None, :] * f[:, :, None]
    return tl.where(valid[:, None, None], tl.maximum(gf, eps), 0.0), gf


@triton.jit
def _pool_gate_kernel(
    psi_ptr, xi_ptr, gw_ptr, gb_ptr, valid_ptr,
    out_ptr, gate_ptr, psi_part_ptr, xi_part_ptr,
    M, Cd, Ce, P, W, n_blocks, inv_p,
    s_psi_b, s_psi_c, s_psi_h, s_psi_w,
    s_xi_b, s_xi_m, s_xi_c, s_xi_h, s_xi_w,
    s_out_b, s_out_c,
    ACC: tl.constexpr, PIX_PSI: tl.constexpr, PIX_XI: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_P: tl.constexpr,
    STAGES: tl.constexpr,
):
    """Pass 1 of the forward: gate g, pool partial sums, psi copied into out[:, :Cd]."""
    pb, b = _block_and_sample(n_blocks, False)
    p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    p_in = p < P
    m = tl.arange(0, BLOCK_M)
    m_in = m < M
    valid = _source_mask(valid_ptr, b, M, BLOCK_M)
    part_row = b * n_blocks + pb

    # psi: its share of the gate logit (the same for every source), pool sums, and the copy.
    psi_pix = _pixel_offsets(p, W, s_psi_h, s_psi_w, PIX_PSI)
    logit_psi = tl.zeros((BLOCK_P,), ACC)
    for d0 in tl.range(0, Cd, BLOCK_D, num_stages=STAGES):
        d = d0 + tl.arange(0, BLOCK_D)
        d_in = d < Cd
        tile_in = d_in[:, None] & p_in[None, :]
        d64 = d.to(tl.int64)[:, None]
        raw = tl.load(psi_ptr + b * s_psi_b + d64 * s_psi_c + psi_pix[None, :], mask=tile_in, other=0.0)
        tl.store(out_ptr + b * s_out_b + d64 * s_out_c + p[None, :], raw, mask=tile_in)
        x = raw.to(ACC)
        w = tl.load(gw_ptr + d, mask=d_in, other=0.0).to(ACC)
        logit_psi += tl.sum(x * w[:, None], axis=0)
        tl.store(psi_part_ptr + part_row * Cd + d, tl.sum(x, axis=1) * inv_p, mask=d_in)

    # xi: its share of the gate logit per source, pool sums per (source, channel).
    xi_pix = _pixel_offsets(p, W, s_xi_h, s_xi_w, PIX_XI)
    xi_src = xi_ptr + b * s_xi_b + m.to(tl.int64) * s_xi_m
    logit = tl.zeros((BLOCK_M, BLOCK_P), ACC) + logit_psi[None, :] + tl.load(gb_ptr).to(ACC)
    for c0 in tl.range(0, Ce, BLOCK_C, num_stages=STAGES):
        c = c0 + tl.arange(0, BLOCK_C)
        c_in = c < Ce
        # Invalid sources are never read: their padding may hold NaN.
        tile_in = valid[:, None, None] & c_in[None, :, None] & p_in[None, None, :]
        offsets = xi_src[:, None, None] + c.to(tl.int64)[None, :, None] * s_xi_c + xi_pix[None, None, :]
        x = tl.load(offsets, mask=tile_in, other=0.0).to(ACC)
        w = tl.load(gw_ptr + Cd + c, mask=c_in, other=0.0).to(ACC)
        logit += tl.sum(x * w[None, :, None], axis=1)
        part = xi_part_ptr + (part_row * M + m[:, None]) * Ce + c[None, :]
        tl.store(part, tl.sum(x, axis=2) * inv_p, mask=m_in[:, None] & c_in[None, :])

    g = 1.0 / (1.0 + tl.exp(-logit))
    tl.store(gate_ptr + (b * M + m[:, None]) * P + p[None, :], g, mask=m_in[:, None] & p_in[None, :])


@triton.jit
def _fuse_kernel(
    xi_ptr, gate_ptr, f_ptr, valid_ptr,
    out_ptr, sal_ptr,
    M, Cd, Ce, P, W, n_blocks, eps,
    s_xi_b, s_xi_m, s_xi_c, s_xi_h, s_xi_w,
    s_out_b, s_out_c,
    ACC: tl.constexpr, PIX_XI: tl.constexpr, SALIENCY: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, STAGES: tl.constexpr,
):
    """Pass 2 of the forward: out[:, Cd:] = sum_m Att xi, and the saliency mean_c Att."""
    pb, b = _block_and_sample(n_blocks, True)  # reverse: pass 1's last blocks are still in L2
    p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    p_in = p < P
    m = tl.arange(0, BLOCK_M)
    m_in = m < M
    valid = _source_mask(valid_ptr, b, M, BLOCK_M)
    mp_in = m_in[:, None] & p_in[None, :]
    g = tl.load(gate_ptr + (b * M + m[:, None]) * P + p[None, :], mask=mp_in, other=0.0)

    xi_pix = _pixel_offsets(p, W, s_xi_h, s_xi_w, PIX_XI)
    xi_src = xi_ptr + b * s_xi_b + m.to(tl.int64) * s_xi_m
    saliency = tl.zeros((BLOCK_M, BLOCK_P), ACC)
    for c0 in tl.range(0, Ce, BLOCK_C, num_stages=STAGES):
        c = c0 + tl.arange(0, BLOCK_C)
        c_in = c < Ce
        mc_in = m_in[:, None] & c_in[None, :]
        f = tl.load(f_ptr + (b * M + m[:, None]) * Ce + c[None, :], mask=mc_in, other=0.0)
        tile_in = valid[:, None, None] & c_in[None, :, None] & p_in[None, None, :]
        offsets = xi_src[:, None, None] + c.to(tl.int64)[None, :, None] * s_xi_c + xi_pix[None, None, :]
        x = tl.load(offsets, mask=tile_in, other=0.0).to(ACC)
        A, _ = _attention(g, f, valid, eps)
        # S >= eps: every sample has a valid source, and A = eps on padded lanes of valid sources.
        inv_s = 1.0 / tl.sum(A, axis=0)
        fused = tl.sum(A * x, axis=0) * inv_s
        out = out_ptr + b * s_out_b + (Cd + c).to(tl.int64)[:, None] * s_out_c + p[None, :]
        tl.store(out, fused.to(out_ptr.dtype.element_ty), mask=c_in[:, None] & p_in[None, :])
        if SALIENCY:
            saliency += tl.sum(tl.where(c_in[None, :, None], A * inv_s[None, :, :], 0.0), axis=1)
    if SALIENCY:
        sal = (saliency / Ce).to(sal_ptr.dtype.element_ty)
        tl.store(sal_ptr + (b * M + m[:, None]) * P + p[None, :], sal, mask=mp_in)


@triton.jit
def _gate_grad_kernel(
    xi_ptr, gate_ptr, f_ptr, valid_ptr, gout_ptr, gsal_ptr,
    dlogit_ptr, df_part_ptr, gb_part_ptr,
    M, Cd, Ce, P, W, n_blocks, eps,
    s_xi_b, s_xi_m, s_xi_c, s_xi_h, s_xi_w,
    s_go_b, s_go_c, s_go_h, s_go_w,
    s_gs_b, s_gs_m, s_gs_h, s_gs_w,
    ACC: tl.constexpr, PIX_XI: tl.constexpr, PIX_GO: tl.constexpr, PIX_GS: tl.constexpr,
    HAS_GSAL: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, STAGES: tl.constexpr,
):
    """Pass 1 of the backward: d loss / d A, reduced to the gate logit (per pixel) and f (partials).

    With G = grad_out[:, Cd:] and Gs = grad_saliency:
      dA_m = G (xi_m - F) / S + (Gs_m - sum_k Gs_k Att_k) / (S Ce),   zero where g f < eps
      d g_m = sum_c dA_m f_m,   d logit_m = d g_m g_m (1 - g_m),   d f_m = sum_p dA_m g_m.
    """
    pb, b = _block_and_sample(n_blocks, False)
    p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    p_in = p < P
    m = tl.arange(0, BLOCK_M)
    m_in = m < M
    valid = _source_mask(valid_ptr, b, M, BLOCK_M)
    mp_in = m_in[:, None] & p_in[None, :]
    g = tl.load(gate_ptr + (b * M + m[:, None]) * P + p[None, :], mask=mp_in, other=0.0)
    if HAS_GSAL:
        gs_pix = _pixel_offsets(p, W, s_gs_h, s_gs_w, PIX_GS)
        gs_offsets = b * s_gs_b + m.to(tl.int64)[:, None] * s_gs_m + gs_pix[None, :]
        gs = tl.load(gsal_ptr + gs_offsets, mask=valid[:, None] & p_in[None, :], other=0.0).to(ACC)

    xi_pix = _pixel_offsets(p, W, s_xi_h, s_xi_w, PIX_XI)
    go_pix = _pixel_offsets(p, W, s_go_h, s_go_w, PIX_GO)
    xi_src = xi_ptr + b * s_xi_b + m.to(tl.int64) * s_xi_m
    d_gate = tl.zeros((BLOCK_M, BLOCK_P), ACC)
    part_row = b * n_blocks + pb
    for c0 in tl.range(0, Ce, BLOCK_C, num_stages=STAGES):
        c = c0 + tl.arange(0, BLOCK_C)
        c_in = c < Ce
        cp_in = c_in[:, None] & p_in[None, :]
        mc_in = m_in[:, None] & c_in[None, :]
        f = tl.load(f_ptr + (b * M + m[:, None]) * Ce + c[None, :], mask=mc_in, other=0.0)
        tile_in = valid[:, None, None] & c_in[None, :, None] & p_in[None, None, :]
        offsets = xi_src[:, None, None] + c.to(tl.int64)[None, :, None] * s_xi_c + xi_pix[None, None, :]
        x = tl.load(offsets, mask=tile_in, other=0.0).to(ACC)
        go_offsets = b * s_go_b + (Cd + c).to(tl.int64)[:, None] * s_go_c + go_pix[None, :]
        go = tl.load(gout_ptr + go_offsets, mask=cp_in, other=0.0).to(ACC)
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

    d_logit = tl.where(valid[:, None] & p_in[None, :], d_gate * g * (1.0 - g), 0.0)
    tl.store(dlogit_ptr + (b * M + m[:, None]) * P + p[None, :], d_logit, mask=mp_in)
    tl.store(gb_part_ptr + part_row, tl.sum(tl.sum(d_logit, axis=1), axis=0))


@triton.jit
def _input_grad_kernel(
    xi_ptr, psi_ptr, gate_ptr, f_ptr, valid_ptr, gout_ptr, dlogit_ptr, gw_ptr,
    dpool_xi_ptr, dpool_psi_ptr,
    gxi_ptr, gpsi_ptr, wxi_part_ptr, wpsi_part_ptr,
    M, Cd, Ce, P, W, n_blocks, eps,
    s_xi_b, s_xi_m, s_xi_c, s_xi_h, s_xi_w,
    s_psi_b, s_psi_c, s_psi_h, s_psi_w,
    s_go_b, s_go_c, s_go_h, s_go_w,
    ACC: tl.constexpr, PIX_XI: tl.constexpr, PIX_PSI: tl.constexpr, PIX_GO: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_P: tl.constexpr,
    STAGES: tl.constexpr,
):
    """Pass 2 of the backward: grad_xi, grad_psi and the gate weight gradient (partials).

      grad_xi_m  = G Att_m + d logit_m w_xi + d pooled_xi_m / P      (0 on invalid sources)
      grad_psi   = G_psi + (sum_m d logit_m) w_psi + sum_m d pooled_psi_m / P
      d w_xi[c]  = sum_{m,p} d logit_m xi_m[c],   d w_psi[d] = sum_p (sum_m d logit_m) psi[d]
    dpool_xi_ptr and dpool_psi_ptr hold the pooled gradients already divided by P.
    """
    pb, b = _block_and_sample(n_blocks, True)  # reverse: pass 1's last blocks are still in L2
    p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    p_in = p < P
    m = tl.arange(0, BLOCK_M)
    m_in = m < M
    valid = _source_mask(valid_ptr, b, M, BLOCK_M)
    mp_in = m_in[:, None] & p_in[None, :]
    g = tl.load(gate_ptr + (b * M + m[:, None]) * P + p[None, :], mask=mp_in, other=0.0)
    d_logit = tl.load(dlogit_ptr + (b * M + m[:, None]) * P + p[None, :], mask=mp_in, other=0.0)
    part_row = b * n_blocks + pb

    xi_pix = _pixel_offsets(p, W, s_xi_h, s_xi_w, PIX_XI)
    go_pix = _pixel_offsets(p, W, s_go_h, s_go_w, PIX_GO)
    xi_src = xi_ptr + b * s_xi_b + m.to(tl.int64) * s_xi_m
    gxi_src = gxi_ptr + (b * M + m.to(tl.int64)) * Ce * P
    for c0 in tl.range(0, Ce, BLOCK_C, num_stages=STAGES):
        c = c0 + tl.arange(0, BLOCK_C)
        c_in = c < Ce
        mc_in = m_in[:, None] & c_in[None, :]
        f = tl.load(f_ptr + (b * M + m[:, None]) * Ce + c[None, :], mask=mc_in, other=0.0)
        dpool = tl.load(dpool_xi_ptr + (b * M + m[:, None]) * Ce + c[None, :], mask=mc_in, other=0.0)
        w = tl.load(gw_ptr + Cd + c, mask=c_in, other=0.0).to(ACC)
        tile_in = valid[:, None, None] & c_in[None, :, None] & p_in[None, None, :]
        c64 = c.to(tl.int64)[None, :, None]
        offsets = xi_src[:, None, None] + c64 * s_xi_c + xi_pix[None, None, :]
        x = tl.load(offsets, mask=tile_in, other=0.0).to(ACC)
        go_offsets = b * s_go_b + (Cd + c).to(tl.int64)[:, None] * s_go_c + go_pix[None, :]
        go = tl.load(gout_ptr + go_offsets, mask=c_in[:, None] & p_in[None, :], other=0.0).to(ACC)
        A, _ = _attention(g, f, valid, eps)
        inv_s = 1.0 / tl.sum(A, axis=0)
        grad = (go * inv_s)[None, :, :] * A + d_logit[:, None, :] * w[None, :, None] + dpool[:, :, None]
        grad = tl.where(valid[:, None, None], grad, 0.0)
        tile_out = m_in[:, None, None] & c_in[None, :, None] & p_in[None, None, :]
        gxi = gxi_src[:, None, None] + c64 * P + p[None, None, :]
        tl.store(gxi, grad.to(gxi_ptr.dtype.element_ty), mask=tile_out)
        w_grad = tl.sum(tl.sum(d_logit[:, None, :] * x, axis=2), axis=0)
        tl.store(wxi_part_ptr + part_row * Ce + c, w_grad, mask=c_in)

    d_logit_sum = tl.sum(d_logit, axis=0)
    psi_pix = _pixel_offsets(p, W, s_psi_h, s_psi_w, PIX_PSI)
    for d0 in tl.range(0, Cd, BLOCK_D, num_stages=STAGES):
        d = d0 + tl.arange(0, BLOCK_D)
        d_in = d < Cd
        tile_in = d_in[:, None] & p_in[None, :]
        d64 = d.to(tl.int64)[:, None]
        psi_offsets = b * s_psi_b + d64 * s_psi_c + psi_pix[None, :]
        x = tl.load(psi_ptr + psi_offsets, mask=tile_in, other=0.0).to(ACC)
        go_offsets = b * s_go_b + d64 * s_go_c + go_pix[None, :]
        go = tl.load(gout_ptr + go_offsets, mask=tile_in, other=0.0).to(ACC)
        w = tl.load(gw_ptr + d, mask=d_in, other=0.0).to(ACC)
        dpool = tl.load(dpool_psi_ptr + b * Cd + d, mask=d_in, other=0.0)
        grad = go + d_logit_sum[None, :] * w[:, None] + dpool[:, None]
        gpsi = gpsi_ptr + (b * Cd + d64) * P + p[None, :]
        tl.store(gpsi, grad.to(gpsi_ptr.dtype.element_ty), mask=tile_in)
        tl.store(wpsi_part_ptr + part_row * Cd + d, tl.sum(d_logit_sum[None, :] * x, axis=1), mask=d_in)


# ---------------------------------------------------------------------------------------------
# Launchers: allocate, pick block sizes, launch, and add up the per-block partial sums.
# Shapes: psi (B, Cd, H, W), xi (B, M, Ce, H, W), valid (B, M) int8, P = H * W; g, f, d_logit and
# the pooled vectors are in the accumulation dtype (float32, or float64 for float64 inputs).
# ---------------------------------------------------------------------------------------------


def _strides4(t: torch.Tensor) -> tuple[int, tuple[int, ...]]:
    mode, sh, sw = _pixel_layout(t)
    return mode, (t.stride(0), t.stride(1), sh, sw)


def _strides5(t: torch.Tensor) -> tuple[int, tuple[int, ...]]:
    mode, sh, sw = _pixel_layout(t)
    return mode, (t.stride(0), t.stride(1), t.stride(2), sh, sw)


def pool_and_gate(
    psi: torch.Tensor, xi: torch.Tensor, g_weight: torch.Tensor, g_bias: torch.Tensor,
    valid: torch.Tensor, out: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward pass 1. Writes psi into out[:, :Cd] (out contiguous (B, Cd + Ce, H, W)).

    Returns the gate g (B, M, H, W) and the pooled means of psi (B, Cd) and xi (B, M, Ce).
    """
    B, M, Ce, H, W = xi.shape
    Cd, P = psi.shape[1], H * W
    acc = acc_torch_dtype(psi.dtype)
    blocks = _Blocks(M, Cd, Ce, P, B)
    gate = torch.empty((B, M, H, W), device=xi.device, dtype=acc)
    psi_part = torch.empty((B, blocks.n_blocks, Cd), device=xi.device, dtype=acc)
    xi_part = torch.empty((B, blocks.n_blocks, M, Ce), device=xi.device, dtype=acc)
    pix_psi, s_psi = _strides4(psi)
    pix_xi, s_xi = _strides5(xi)
    _pool_gate_kernel[blocks.grid(B)](
        psi, xi, g_weight, g_bias, valid, out, gate, psi_part, xi_part,
        M, Cd, Ce, P, W, blocks.n_blocks, 1.0 / P, *s_psi, *s_xi, out.stride(0), out.stride(1),
        ACC=_acc_dtype(psi.dtype), PIX_PSI=pix_psi, PIX_XI=pix_xi,
        **blocks.meta(with_d=True),
    )
    # The partial sums are already divided by P: one reduction each gives the means.
    return gate, psi_part.sum(dim=1), xi_part.sum(dim=1)


def fuse(
    xi: torch.Tensor, gate: torch.Tensor, f: torch.Tensor, valid: torch.Tensor, eps: float,
    out: torch.Tensor, saliency: torch.Tensor | None,
) -> None:
    """Forward pass 2: writes out[:, Cd:] and, if given, saliency (B, M, H, W) contiguous."""
    B, M, Ce, H, W = xi.shape
    Cd, P = out.shape[1] - Ce, H * W
    blocks = _Blocks(M, Cd, Ce, P, B)
    pix_xi, s_xi = _strides5(xi)
    _fuse_kernel[blocks.grid(B)](
        xi, gate, f, valid, out, saliency if saliency is not None else out,
        M, Cd, Ce, P, W, blocks.n_blocks, eps, *s_xi, out.stride(0), out.stride(1),
        ACC=_acc_dtype(xi.dtype), PIX_XI=pix_xi, SALIENCY=saliency is not None,
        **blocks.meta(with_d=False),
    )


def gate_grad(
    xi: torch.Tensor, gate: torch.Tensor, f: torch.Tensor, valid: torch.Tensor,
    grad_out: torch.Tensor, grad_saliency: torch.Tensor | None, eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward pass 1. grad_out (B, Cd + Ce, H, W), grad_saliency (B, M, H, W) or None, any strides.

    Returns d loss / d gate logit (B, M, H, W), d loss / d f (B, M, Ce) and the g_bias gradient ().
    """
    B, M, Ce, H, W = xi.shape
    Cd, P = grad_out.shape[1] - Ce, H * W
    blocks = _Blocks(M, Cd, Ce, P, B)
    d_logit = torch.empty_like(gate)
    df_part = torch.empty((B, blocks.n_blocks, M, Ce), device=xi.device, dtype=gate.dtype)
    gb_part = torch.empty((B, blocks.n_blocks), device=xi.device, dtype=gate.dtype)
    pix_xi, s_xi = _strides5(xi)
    pix_go, s_go = _strides4(grad_out)
    gsal = grad_saliency if grad_saliency is not None else gate
    pix_gs, s_gs = _strides4(gsal)
    _gate_grad_kernel[blocks.grid(B)](
        xi, gate, f, valid, grad_out, gsal, d_logit, df_part, gb_part,
        M, Cd, Ce, P, W, blocks.n_blocks, eps, *s_xi, *s_go, *s_gs,
        ACC=_acc_dtype(xi.dtype), PIX_XI=pix_xi, PIX_GO=pix_go, PIX_GS=pix_gs,
        HAS_GSAL=grad_saliency is not None,
        **blocks.meta(with_d=False),
    )
    return d_logit, df_part.sum(dim=1), gb_part.sum()


def input_grads(
    psi: torch.Tensor, xi: torch.Tensor, gate: torch.Tensor, f: torch.Tensor, valid: torch.Tensor,
    grad_out: torch.Tensor, d_logit: torch.Tensor, g_weight: torch.Tensor,
    dpool_psi: torch.Tensor, dpool_xi: torch.Tensor, eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward pass 2. dpool_psi (B, Cd) and dpool_xi (B, M, Ce): pooled gradients divided by P.

    Returns grad_psi (B, Cd, H, W), grad_xi (B, M, Ce, H, W), contiguous, in the input dtype, and
    the g_weight gradient (Cd + Ce,) in the accumulation dtype.
    """
    B, M, Ce, H, W = xi.shape
    Cd, P = psi.shape[1], H * W
    blocks = _Blocks(M, Cd, Ce, P, B)
    grad_psi = torch.empty(psi.shape, device=psi.device, dtype=psi.dtype)
    grad_xi = torch.empty(xi.shape, device=xi.device, dtype=xi.dtype)
    wxi_part = torch.empty((B, blocks.n_blocks, Ce), device=xi.device, dtype=gate.dtype)
    wpsi_part = torch.empty((B, blocks.n_blocks, Cd), device=xi.device, dtype=gate.dtype)
    pix_xi, s_xi = _strides5(xi)
    pix_psi, s_psi = _strides4(psi)
    pix_go, s_go = _strides4(grad_out)
    _input_grad_kernel[blocks.grid(B)](
        xi, psi, gate, f, valid, grad_out, d_logit, g_weight, dpool_xi, dpool_psi,
        grad_xi, grad_psi, wxi_part, wpsi_part,
        M, Cd, Ce, P, W, blocks.n_blocks, eps, *s_xi, *s_psi, *s_go,
        ACC=_acc_dtype(xi.dtype), PIX_XI=pix_xi, PIX_PSI=pix_psi, PIX_GO=pix_go,
        **blocks.meta(with_d=True),
    )
    grad_weight = torch.cat([wpsi_part.sum(dim=(0, 1)), wxi_part.sum(dim=(0, 1))])
    return grad_psi, grad_xi, grad_weight
