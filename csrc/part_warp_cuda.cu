// msgen::part_warp: the CUDA kernels (fp64/fp32/bf16/fp16, accumulation in fp32, fp64 for fp64).
//
// Work division: one thread per (output pixel, tile of kTile consecutive channels), the grid
// (pixel blocks, channel tiles, samples). A thread's whole computation is forward_tile /
// backward_tile in part_warp.h (shared with the CPU emulation ops that the CPU tests check).
// Why:
// - No local memory. The loop over parts is outermost and the per-channel state (best value,
//   winning part, upstream gradient) is a kTile array indexed by unrolled loops, so it stays in
//   registers; the earlier design cached P footprints in an array indexed by the run-time part,
//   which ptxas put in a stack frame of 448-1024 bytes (about 6 local loads per part per channel).
//   tests/test_cuda_resources.py asserts 0 bytes of stack and spill in every instantiation.
// - Parallelism at every level: C / kTile channel tiles per pixel, so a deep level (16x8 pixels,
//   512 channels) still launches N * 64 blocks per pixel block instead of N.
// - A part's footprint (6 FMAs and a floor) and mask value are recomputed per channel tile: the
//   mask is re-read C / kTile times, from L2 (a sample's masks are P * H * W values).
// Adjacent threads are adjacent output columns: mask loads and output stores are coalesced, and
// the gathers of feat follow a smooth affine, so they hit the same lines.
//
// Backward (one kernel for grad_feat, grad_mask and grad_theta, each only when wanted):
//   the winners of the thread's tile are recomputed (nothing is saved by the forward: by the byte
//   model in msgen/ops/byte_model.py a saved uint8 winner costs a forward write of 1 byte per
//   output element, and saves a feat read only when neither mask nor theta needs a gradient).
//   grad_feat: atomics into a zeroed accumulation-type buffer (float for bf16/fp16, so the
//   contributions are summed in float and rounded once, never rounded before they are added).
//   The buffer holds as many samples as fit in 24 MB (at most the output's size), so the zero
//   fill, the atomics' read-modify-writes and the read-back stay in L2; the samples go through it
//   in chunks (three launches each: zero, kernel, copy), and DRAM sees grad_feat written once.
//   grad_mask: one atomic add per (pixel, part, tile) that won a channel, into an accumulation-type
//   buffer (the channel tiles of a pixel run in different threads).
//   grad_theta: per-thread sums reduced over the warp with shuffles, then one atomic per warp.
// Offsets use int32 when every tensor's largest offset fits, int64 otherwise.
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
// backward thread. Without them ptxas 13 settled on 32-40 registers and spilled (4-20 bytes) in
// a third of the instantiations; with them none spills (tests/test_cuda_resources.py).
constexpr int kMinBlocks = 8;
constexpr int kMinBlocksBackward = 4;
constexpr int kTile = kCudaTileChannels;  // channels per thread
constexpr int64_t kMaxGridYZ = 65535;
// The backward's grad_feat accumulation buffer: small enough to stay in a Hopper L2 (50-60 MB).
constexpr int64_t kFeatBufferBytes = int64_t(24) << 20;

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
  at::Tensor feat_buffer, mask_buffer, theta_sums;
  int64_t chunk = std::max<int64_t>(s.N, 1);
  bool in_place = false;
  if (want_feat) {
    // The atomics go to an accumulation-type buffer of `chunk` samples that stays in L2 (at most
    // kFeatBufferBytes, and never larger than the output), each chunk then rounded once into
    // grad_feat: DRAM sees grad_feat written once instead of zero-filled and read-modified-written.
    const int64_t sample_bytes = std::max<int64_t>(s.C * s.Hin * s.Win * coeffs.element_size(), 1);
    const int64_t out_bytes = s.N * s.C * s.H * s.W * feat.element_size();
    const int64_t budget = std::min<int64_t>(kFeatBufferBytes, out_bytes);
    chunk = std::clamp<int64_t>(budget / sample_bytes, 1, std::max<int64_t>(s.N, 1));
    in_place = chunk >= s.N && coeffs.scalar_type() == feat.scalar_type();
    grads.feat = in_place ? at::zeros({s.N, s.C, s.Hin, s.Win}, feat.options())
                          : at::empty({s.N, s.C, s.Hin, s.Win}, feat.options());
    feat_buffer = in_place ? grads.feat : at::empty({chunk, s.C, s.Hin, s.Win}, acc_options);
  }
  if (want_params) {
    mask_buffer = at::zeros({s.N, s.P, s.H, s.W}, acc_options);
    theta_sums = at::zeros({s.N, s.P, 2, 3}, acc_options);
  }
  if (!nothing_to_do(s)) {
    const bool small = fits_int32({&feat, &mask, &grad_out, &feat_buffer, &mask_buffer});
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, feat.scalar_type(), "part_warp_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      auto launch = [&](auto index_zero, int64_t n_begin, int64_t n_end) {
        using index_t = decltype(index_zero);
        const auto a = make_args<scalar_t, index_t>(s, feat, coeffs, mask, grad_out);
        CudaSink<acc_t, index_t> sink;
        sink.want_feat = want_feat;
        sink.want_params = want_params;
        sink.grad_feat = want_feat ? feat_buffer.mutable_data_ptr<acc_t>() : nullptr;
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
      for (int64_t n0 = 0; n0 < s.N; n0 += chunk) {
        const int64_t n1 = std::min(s.N, n0 + chunk);
        if (want_feat && !in_place) {
          feat_buffer.zero_();
        }
        small ? launch(int32_t(0), n0, n1) : launch(int64_t(0), n0, n1);
        if (want_feat && !in_place) {
          grads.feat.narrow(0, n0, n1 - n0).copy_(feat_buffer.narrow(0, 0, n1 - n0));
        }
        if (!want_feat) {
          break;  // without a grad_feat buffer one launch covers every sample
        }
      }
    });
  } else if (want_feat && !in_place) {
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
