// msgen::part_warp: the CUDA kernels (fp64/fp32/bf16/fp16, accumulation in fp32, fp64 for fp64).
//
// Work division: one thread per (output pixel, tile of kTile = 8 consecutive channels), blocks of
// kThreads = 128 adjacent pixels, the grid (pixel blocks, channel tiles, samples); the y and z
// extents stop at 65,535 and the kernels loop over the rest. A thread's whole computation is
// forward_tile / backward_tile in part_warp.h, shared with the CPU emulation that the CPU tests run
// (csrc/testing/part_warp_emulation.cpp).
//
// Bytes (msgen/ops/byte_model.py counts them; tests compare its counts with the emulation's):
// - Forward: a thread loads its pixel's P mask values, and for each part with a nonzero mask the
//   part's 6 theta values and the taps inside feat of its 8 channels; it stores 8 outputs. By
//   design DRAM sees feat, mask and theta read once and out written once (the floor): the mask is
//   re-read by the C / 8 tiles of a pixel and a feat element by its neighbours' taps, from L1/L2
//   (a sample's mask is P * H * W values, a few MB at most; the gathers of a smooth affine reuse
//   lines). Adjacent threads are adjacent output columns, so mask loads and out stores coalesce.
// - Backward: the winners of the thread's tile are recomputed (nothing is saved by the forward: a
//   saved uint8 winner would cost every forward, inference included, a write of 1 byte per output
//   element, and save a feat read only when neither mask nor theta needs a gradient), then per
//   winning part the mask value and theta again, and per channel one atomic add per tap into the
//   grad_feat buffer; DRAM sees grad_out, feat, mask and theta read once and grad_feat written once.
//
// Why this design and these constants:
// - No local memory. The loop over parts is outermost and the per-channel state (best value,
//   winning part, upstream gradient) is a kTile array indexed only by unrolled loops, so it lives
//   in registers; a per-part cache indexed by the run-time part number would live in a stack frame
//   and cost local loads per part per channel. tests/test_cuda_resources.py asserts 0 bytes of
//   stack and spill in every instantiation.
// - kTile = 8: 8 accumulation-type registers each for the best values and the upstream gradients
//   plus 8 winners fit the register budgets below; a part's footprint (6 FMAs and a floor) and mask
//   value are recomputed per tile, which costs C / 8 mask re-reads from L2 per pixel instead of a
//   per-part cache; and the C / 8 tiles give parallelism at every level (a deep level of 16x8
//   pixels and 512 channels still launches N * 64 blocks per pixel block instead of N).
// - kThreads = 128 with launch bounds of 8 (forward) and 4 (backward) blocks per SM: at most 64
//   and 128 registers per thread, enough that no instantiation spills, with 32 resident warps
//   (forward) and 16 (backward) per SM to hide the gathers' latency.
// - grad_feat: atomics into a zeroed accumulation-type buffer (float for bf16/fp16, so the
//   contributions are summed in float and rounded once, never rounded before they are added),
//   of as many samples as fit in kFeatBufferBytes = 24 MB (part_warp.h; at most the output's size),
//   so the zero fill, the atomics' read-modify-writes and the read-back stay in a Hopper L2 (50 MB,
//   shared with the streaming reads); the host runs the samples through it in chunks
//   (for_each_feat_chunk: zero, kernel, copy: three launches per chunk) and DRAM sees grad_feat
//   written once. fp32 with every sample in the buffer accumulates in grad_feat itself.
// - grad_mask: one atomic add per (pixel, part, tile) that won a channel, into an accumulation-type
//   buffer (the channel tiles of a pixel run in different threads). grad_theta: per-thread sums
//   reduced over the warp with shuffles, then one atomic per warp.
// - Offsets use int32 when every tensor's largest offset fits (cheaper address arithmetic), int64
//   otherwise.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "part_warp.h"

namespace msgen {
namespace {

using part_warp_host::Sizes;
using namespace part_warp_math;

constexpr int kThreads = 128;  // output pixels per block
// Blocks per SM the launch bounds ask for: at most 64 registers per forward thread, 128 per
// backward thread. They give ptxas a register budget large enough that no instantiation spills
// (tests/test_cuda_resources.py), which it does not choose by itself.
constexpr int kMinBlocks = 8;
constexpr int kMinBlocksBackward = 4;
constexpr int kTile = kCudaTileChannels;  // channels per thread
constexpr int64_t kMaxGridYZ = 65535;

template <typename scalar_t, typename index_t>
using Args = TileArgs<scalar_t, at::opmath_type<scalar_t>, index_t>;

template <typename scalar_t, typename index_t>
Args<scalar_t, index_t> make_args(const Sizes& s, const at::Tensor& feat, const at::Tensor& coeffs,
                                  const at::Tensor& mask, const at::Tensor& grad_out) {
  using acc_t = at::opmath_type<scalar_t>;
  Args<scalar_t, index_t> a;
  auto st = [](const at::Tensor& t, int d) { return static_cast<index_t>(t.stride(d)); };
  a.feat = feat.const_data_ptr<scalar_t>();
  a.fs_n = st(feat, 0), a.fs_c = st(feat, 1), a.fs_h = st(feat, 2), a.fs_w = st(feat, 3);
  a.theta = coeffs.const_data_ptr<acc_t>();
  a.mask = mask.const_data_ptr<scalar_t>();
  a.ms_n = st(mask, 0), a.ms_p = st(mask, 1), a.ms_h = st(mask, 2), a.ms_w = st(mask, 3);
  a.grad_out = grad_out.defined() ? grad_out.const_data_ptr<scalar_t>() : nullptr;
  if (grad_out.defined()) {
    a.gs_n = st(grad_out, 0), a.gs_c = st(grad_out, 1), a.gs_h = st(grad_out, 2), a.gs_w = st(grad_out, 3);
  } else {
    a.gs_n = a.gs_c = a.gs_h = a.gs_w = 0;
  }
  a.N = s.N, a.C = s.C, a.Hin = s.Hin, a.Win = s.Win, a.P = s.P, a.H = s.H, a.W = s.W;
  return a;
}

// The samples [n_begin, n_end) one launch covers (a chunk of the grad_feat buffer).
template <typename index_t>
struct SampleRange {
  index_t begin, end;
};

template <typename scalar_t, typename index_t, bool kBilinear>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    forward_kernel(const Args<scalar_t, index_t> a, scalar_t* __restrict__ out) {
  // 32-bit pixel arithmetic (the host checks H * W < 2^31): a 64-bit division is a call.
  const uint32_t pixel = blockIdx.x * kThreads + threadIdx.x;
  if (pixel >= static_cast<uint32_t>(a.H * a.W)) {
    return;
  }
  const uint32_t row = pixel / static_cast<uint32_t>(a.W);
  const index_t y = row, x = pixel - row * static_cast<uint32_t>(a.W);
  for (index_t n = blockIdx.z; n < a.N; n += gridDim.z) {
    for (index_t c0 = static_cast<index_t>(blockIdx.y) * kTile; c0 < a.C;
         c0 += static_cast<index_t>(gridDim.y) * kTile) {
      forward_tile<kTile, kBilinear>(a, n, c0, x, y, out);
    }
  }
}

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  return v;
}

// Where backward_tile's contributions go (see part_warp.h for the protocol).
template <typename acc_t, typename index_t>
struct CudaSink {
  bool want_feat, want_params;
  acc_t* grad_feat;  // (n_end - n_begin, C, Hin, Win) accumulation buffer, zeroed
  index_t n_begin, C, plane_size;
  acc_t* grad_mask;   // (N, P, H, W) contiguous, zeroed
  acc_t* theta_sums;  // (N, P, 6) contiguous, zeroed
  index_t P, H, W;

  __device__ __forceinline__ void feat(index_t n, index_t c, index_t offset, acc_t value) {
    gpuAtomicAdd(grad_feat + ((n - n_begin) * C + c) * plane_size + offset, value);
  }

  __device__ __forceinline__ void part(index_t n, index_t p, index_t x, index_t y, bool active,
                                       acc_t d_mask, acc_t d_x, acc_t d_y) {
    if (active && d_mask != acc_t(0)) {
      gpuAtomicAdd(grad_mask + ((n * P + p) * H + y) * W + x, d_mask);
    }
    // x_in = t0 x + t1 y + t2, y_in = t3 x + t4 y + t5. Every lane gets here (uniform loop).
    if (!__any_sync(0xffffffffu, d_x != acc_t(0) || d_y != acc_t(0))) {
      return;
    }
    const acc_t xf = static_cast<acc_t>(x), yf = static_cast<acc_t>(y);
    const acc_t terms[6] = {d_x * xf, d_x * yf, d_x, d_y * xf, d_y * yf, d_y};
#pragma unroll
    for (int k = 0; k < 6; ++k) {
      const acc_t total = warp_sum(terms[k]);
      if ((threadIdx.x & 31) == 0 && total != acc_t(0)) {
        gpuAtomicAdd(theta_sums + (n * P + p) * 6 + k, total);
      }
    }
  }
};

// Threads past the last pixel stay (inactive) for the warp reductions of grad_theta.
template <typename scalar_t, typename index_t, bool kBilinear>
__global__ void __launch_bounds__(kThreads, kMinBlocksBackward)
    backward_kernel(const Args<scalar_t, index_t> a, CudaSink<at::opmath_type<scalar_t>, index_t> sink,
                    SampleRange<index_t> samples) {
  const uint32_t pixel = blockIdx.x * kThreads + threadIdx.x;  // as in forward_kernel
  const bool active = pixel < static_cast<uint32_t>(a.H * a.W);
  const uint32_t row = active ? pixel / static_cast<uint32_t>(a.W) : 0;
  const index_t y = row, x = active ? pixel - row * static_cast<uint32_t>(a.W) : 0;
  for (index_t n = samples.begin + blockIdx.z; n < samples.end; n += gridDim.z) {
    for (index_t c0 = static_cast<index_t>(blockIdx.y) * kTile; c0 < a.C;
         c0 += static_cast<index_t>(gridDim.y) * kTile) {
      backward_tile<kTile, kBilinear>(a, n, c0, x, y, active, sink);
    }
  }
}

int64_t largest_offset(const at::Tensor& t) {
  int64_t offset = 0;
  for (int64_t d = 0; d < t.dim(); ++d) {
    offset += (t.size(d) - 1) * t.stride(d);
  }
  return t.numel() == 0 ? 0 : offset;
}

// int32 offsets when every tensor a kernel touches fits, including the outputs it writes.
bool fits_int32(std::initializer_list<const at::Tensor*> tensors) {
  constexpr int64_t kLimit = std::numeric_limits<int32_t>::max();
  for (const at::Tensor* t : tensors) {
    if (t->defined() && (largest_offset(*t) >= kLimit || t->numel() >= kLimit)) {
      return false;
    }
  }
  return true;
}

dim3 grid_for(const Sizes& s, int64_t samples) {
  const int64_t blocks = (s.H * s.W + kThreads - 1) / kThreads;
  const int64_t tiles = (s.C + kTile - 1) / kTile;
  return dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(std::min(tiles, kMaxGridYZ)),
              static_cast<unsigned>(std::min(samples, kMaxGridYZ)));
}

bool nothing_to_do(const Sizes& s) {
  TORCH_CHECK_VALUE(s.H * s.W < (int64_t(1) << 31),
                    "part_warp (CUDA): the output plane H * W must hold fewer than 2^31 pixels, got ",
                    s.H, " x ", s.W);
  return s.N == 0 || s.C == 0 || s.H == 0 || s.W == 0;
}

at::Tensor part_warp_cuda(const at::Tensor& feat, const at::Tensor& theta, const at::Tensor& mask,
                          c10::string_view mode) {
  const Sizes s = part_warp_host::check_inputs(feat, theta, mask, mode);
  const c10::cuda::CUDAGuard guard(feat.device());
  const at::Tensor coeffs = part_warp_host::theta_for_kernels(theta, feat);
  at::Tensor out = at::empty({s.N, s.C, s.H, s.W}, feat.options());
  if (nothing_to_do(s)) {
    return out;
  }
  const bool small = fits_int32({&feat, &mask, &out});
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, feat.scalar_type(), "part_warp_cuda", [&] {
    auto launch = [&](auto index_zero) {
      using index_t = decltype(index_zero);
      const auto a = make_args<scalar_t, index_t>(s, feat, coeffs, mask, at::Tensor());
      scalar_t* o = out.mutable_data_ptr<scalar_t>();
      const dim3 grid = grid_for(s, s.N);
      if (s.bilinear) {
        forward_kernel<scalar_t, index_t, true><<<grid, kThreads, 0, stream>>>(a, o);
      } else {
        forward_kernel<scalar_t, index_t, false><<<grid, kThreads, 0, stream>>>(a, o);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    small ? launch(int32_t(0)) : launch(int64_t(0));
  });
  return out;
}

// The gradients one backward call returns; undefined where not wanted.
struct Grads {
  at::Tensor feat, theta, mask;
};

Grads backward_cuda(const at::Tensor& grad_out, const at::Tensor& feat, const at::Tensor& theta,
                    const at::Tensor& mask, c10::string_view mode, bool want_feat,
                    bool want_params) {
  const Sizes s = part_warp_host::check_inputs(feat, theta, mask, mode, grad_out);
  const c10::cuda::CUDAGuard guard(feat.device());
  const at::Tensor coeffs = part_warp_host::theta_for_kernels(theta, feat);
  const auto acc_options = coeffs.options();  // float, double for double
  Grads grads;
  part_warp_host::FeatBuffers buffers;
  at::Tensor mask_buffer, theta_sums;
  if (want_feat) {
    // The atomics go to an accumulation-type buffer of plan.samples samples that stays in L2 (at
    // most kFeatBufferBytes, never larger than the output), each chunk then rounded once into
    // grad_feat: DRAM sees grad_feat written once instead of zero-filled and read-modify-written.
    buffers = part_warp_host::make_feat_buffers(s, feat, acc_options);
    grads.feat = buffers.grad_feat;
  }
  if (want_params) {
    mask_buffer = at::zeros({s.N, s.P, s.H, s.W}, acc_options);
    theta_sums = at::zeros({s.N, s.P, 2, 3}, acc_options);
  }
  if (!nothing_to_do(s)) {
    const bool small = fits_int32({&feat, &mask, &grad_out, &buffers.buffer, &mask_buffer});
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, feat.scalar_type(), "part_warp_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      auto launch = [&](auto index_zero, int64_t n_begin, int64_t n_end) {
        using index_t = decltype(index_zero);
        const auto a = make_args<scalar_t, index_t>(s, feat, coeffs, mask, grad_out);
        CudaSink<acc_t, index_t> sink;
        sink.want_feat = want_feat;
        sink.want_params = want_params;
        sink.grad_feat = want_feat ? buffers.buffer.mutable_data_ptr<acc_t>() : nullptr;
        sink.n_begin = static_cast<index_t>(n_begin);
        sink.C = static_cast<index_t>(s.C);
        sink.plane_size = static_cast<index_t>(s.Hin * s.Win);
        sink.grad_mask = want_params ? mask_buffer.mutable_data_ptr<acc_t>() : nullptr;
        sink.theta_sums = want_params ? theta_sums.mutable_data_ptr<acc_t>() : nullptr;
        sink.P = static_cast<index_t>(s.P), sink.H = static_cast<index_t>(s.H), sink.W = static_cast<index_t>(s.W);
        const SampleRange<index_t> samples{static_cast<index_t>(n_begin), static_cast<index_t>(n_end)};
        const dim3 grid = grid_for(s, n_end - n_begin);
        if (s.bilinear) {
          backward_kernel<scalar_t, index_t, true><<<grid, kThreads, 0, stream>>>(a, sink, samples);
        } else {
          backward_kernel<scalar_t, index_t, false><<<grid, kThreads, 0, stream>>>(a, sink, samples);
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      part_warp_host::for_each_feat_chunk(s, buffers, want_feat, [&](int64_t n0, int64_t n1) {
        small ? launch(int32_t(0), n0, n1) : launch(int64_t(0), n0, n1);
      });
    });
  } else if (want_feat && !buffers.plan.in_place) {
    grads.feat.zero_();
  }
  if (want_params) {
    grads.theta = theta_sums.to(theta.scalar_type());
    grads.mask = mask_buffer.to(mask.scalar_type());
  }
  return grads;
}

at::Tensor part_warp_backward_feat_cuda(const at::Tensor& grad_out, const at::Tensor& feat,
                                        const at::Tensor& theta, const at::Tensor& mask,
                                        c10::string_view mode) {
  return backward_cuda(grad_out, feat, theta, mask, mode, true, false).feat;
}

std::tuple<at::Tensor, at::Tensor> part_warp_backward_params_cuda(
    const at::Tensor& grad_out, const at::Tensor& feat, const at::Tensor& theta,
    const at::Tensor& mask, c10::string_view mode) {
  Grads g = backward_cuda(grad_out, feat, theta, mask, mode, false, true);
  return {g.theta, g.mask};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> part_warp_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& feat, const at::Tensor& theta,
    const at::Tensor& mask, c10::string_view mode) {
  Grads g = backward_cuda(grad_out, feat, theta, mask, mode, true, true);
  return {g.feat, g.theta, g.mask};
}

}  // namespace

TORCH_LIBRARY_IMPL(msgen, CUDA, m) {
  m.impl("part_warp", &part_warp_cuda);
  m.impl("part_warp_backward_feat", &part_warp_backward_feat_cuda);
  m.impl("part_warp_backward_params", &part_warp_backward_params_cuda);
  m.impl("part_warp_backward", &part_warp_backward_cuda);
}

}  // namespace msgen
