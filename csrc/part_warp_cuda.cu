// msgen::part_warp: the CUDA kernels (fp64/fp32/bf16/fp16, accumulation in fp32, fp64 for fp64).
//
// One thread per output pixel (n, y, x). The thread computes the footprints and mask values of the
// first kCachedParts parts once and loops over the channels, so a channel costs only the taps'
// loads; parts beyond the cache are recomputed per channel (correct for any P, fast for P <= 16;
// the method uses P = 10). Adjacent threads are adjacent output columns: mask loads and output
// stores are coalesced, and the gathers of feat follow a smooth affine, so they hit the same lines.
//
// Backward: the winning part of each (n, c, y, x) is recomputed (nothing is saved by the forward).
//   grad_feat: scattered with atomicAdd into a zero-initialised tensor of feat's dtype (no fp32
//   copy of feat: that would be a temporary larger than the output in bf16).
//   grad_mask: each thread owns its pixel's P values and accumulates them in registers.
//   grad_theta: per-thread sums over channels, reduced over the warp with shuffles, then one
//   atomicAdd per warp into an fp32 (fp64 for fp64) (N, P, 6) buffer.
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

constexpr int kThreads = 256;
constexpr int kCachedParts = 16;
constexpr int kMaxGridY = 65535;

template <typename index_t>
struct Strides4 {
  index_t n, c, h, w;
};

template <typename index_t>
Strides4<index_t> strides_of(const at::Tensor& t) {
  return {static_cast<index_t>(t.stride(0)), static_cast<index_t>(t.stride(1)),
          static_cast<index_t>(t.stride(2)), static_cast<index_t>(t.stride(3))};
}

// Everything a kernel reads, passed by value.
template <typename scalar_t, typename index_t>
struct Args {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* feat;
  Strides4<index_t> fs;
  const acc_t* theta;  // contiguous (N, P, 6)
  const scalar_t* mask;
  Strides4<index_t> ms;
  const scalar_t* grad_out;  // null in the forward
  Strides4<index_t> gs;
  index_t N, C, Hin, Win, P, H, W;
};

template <typename scalar_t, typename index_t>
Args<scalar_t, index_t> make_args(const Sizes& s, const at::Tensor& feat, const at::Tensor& coeffs,
                                  const at::Tensor& mask, const at::Tensor& grad_out) {
  using acc_t = at::opmath_type<scalar_t>;
  Args<scalar_t, index_t> a;
  a.feat = feat.const_data_ptr<scalar_t>();
  a.fs = strides_of<index_t>(feat);
  a.theta = coeffs.const_data_ptr<acc_t>();
  a.mask = mask.const_data_ptr<scalar_t>();
  a.ms = strides_of<index_t>(mask);
  a.grad_out = grad_out.defined() ? grad_out.const_data_ptr<scalar_t>() : nullptr;
  a.gs = grad_out.defined() ? strides_of<index_t>(grad_out) : Strides4<index_t>{0, 0, 0, 0};
  a.N = s.N, a.C = s.C, a.Hin = s.Hin, a.Win = s.Win, a.P = s.P, a.H = s.H, a.W = s.W;
  return a;
}

// The cached parts' footprints and mask values at one output pixel.
template <typename acc_t>
struct PixelParts {
  Footprint<acc_t> where[kCachedParts];
  acc_t mask[kCachedParts];
};

template <bool kBilinear, typename scalar_t, typename index_t>
__device__ __forceinline__ Footprint<at::opmath_type<scalar_t>> footprint_of(
    const Args<scalar_t, index_t>& a, index_t n, index_t p, index_t x, index_t y) {
  return locate<kBilinear>(source_point(a.theta + (n * a.P + p) * 6, x, y), a.Hin, a.Win);
}

template <typename scalar_t, typename index_t>
__device__ __forceinline__ at::opmath_type<scalar_t> mask_at(const Args<scalar_t, index_t>& a,
                                                             index_t n, index_t p, index_t x,
                                                             index_t y) {
  return static_cast<at::opmath_type<scalar_t>>(
      a.mask[n * a.ms.n + p * a.ms.c + y * a.ms.h + x * a.ms.w]);
}

template <bool kBilinear, typename scalar_t, typename index_t>
__device__ void cache_parts(const Args<scalar_t, index_t>& a, index_t n, index_t x, index_t y,
                            PixelParts<at::opmath_type<scalar_t>>& parts) {
  const index_t cached = a.P < kCachedParts ? a.P : kCachedParts;
  for (index_t p = 0; p < cached; ++p) {
    parts.where[p] = footprint_of<kBilinear>(a, n, p, x, y);
    parts.mask[p] = mask_at(a, n, p, x, y);
  }
}

template <bool kBilinear, typename scalar_t, typename index_t>
__device__ __forceinline__ void part_at(const Args<scalar_t, index_t>& a,
                                        const PixelParts<at::opmath_type<scalar_t>>& parts,
                                        index_t n, index_t p, index_t x, index_t y,
                                        Footprint<at::opmath_type<scalar_t>>& where,
                                        at::opmath_type<scalar_t>& mask) {
  if (p < kCachedParts) {
    where = parts.where[p];
    mask = parts.mask[p];
  } else {
    where = footprint_of<kBilinear>(a, n, p, x, y);
    mask = mask_at(a, n, p, x, y);
  }
}

// max over parts of mask * sample for one channel plane; the same rule as the CPU kernels (a mask
// of 0 contributes 0 without a load; ties keep the lowest part).
template <bool kBilinear, typename scalar_t, typename index_t>
__device__ void max_over_parts(const Args<scalar_t, index_t>& a,
                               const PixelParts<at::opmath_type<scalar_t>>& parts, index_t n,
                               index_t x, index_t y, const scalar_t* plane,
                               at::opmath_type<scalar_t>& best, index_t& winner) {
  using acc_t = at::opmath_type<scalar_t>;
  for (index_t p = 0; p < a.P; ++p) {
    Footprint<acc_t> where;
    acc_t m;
    part_at<kBilinear>(a, parts, n, p, x, y, where, m);
    const acc_t v = m == acc_t(0) ? acc_t(0) : m * sample<kBilinear>(where, plane, a.fs.h, a.fs.w);
    if (p == 0 || replaces(v, best)) {
      best = v;
      winner = p;
    }
  }
}

template <typename scalar_t, typename index_t, bool kBilinear>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const Args<scalar_t, index_t> a, scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t pixel = static_cast<index_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (pixel >= a.H * a.W) {
    return;
  }
  const index_t y = pixel / a.W, x = pixel % a.W;
  PixelParts<acc_t> parts;
  for (index_t n = blockIdx.y; n < a.N; n += gridDim.y) {
    cache_parts<kBilinear>(a, n, x, y, parts);
    for (index_t c = 0; c < a.C; ++c) {
      acc_t best;
      index_t winner;
      max_over_parts<kBilinear>(a, parts, n, x, y, a.feat + n * a.fs.n + c * a.fs.c, best, winner);
      out[((n * a.C + c) * a.H + y) * a.W + x] = static_cast<scalar_t>(best);
    }
  }
}

template <typename scalar_t, typename index_t, bool kBilinear>
__global__ void __launch_bounds__(kThreads)
    backward_feat_kernel(const Args<scalar_t, index_t> a, scalar_t* __restrict__ grad_feat) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t pixel = static_cast<index_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (pixel >= a.H * a.W) {
    return;
  }
  const index_t y = pixel / a.W, x = pixel % a.W;
  const index_t plane_size = a.Hin * a.Win;
  PixelParts<acc_t> parts;
  for (index_t n = blockIdx.y; n < a.N; n += gridDim.y) {
    cache_parts<kBilinear>(a, n, x, y, parts);
    for (index_t c = 0; c < a.C; ++c) {
      const acc_t g = static_cast<acc_t>(a.grad_out[n * a.gs.n + c * a.gs.c + y * a.gs.h + x * a.gs.w]);
      if (g == acc_t(0)) {
        continue;
      }
      acc_t best;
      index_t winner;
      max_over_parts<kBilinear>(a, parts, n, x, y, a.feat + n * a.fs.n + c * a.fs.c, best, winner);
      Footprint<acc_t> where;
      acc_t m;
      part_at<kBilinear>(a, parts, n, winner, x, y, where, m);
      const acc_t scale = g * m;
      if (scale == acc_t(0)) {
        continue;
      }
      scalar_t* grad_plane = grad_feat + (n * a.C + c) * plane_size;
#pragma unroll
      for (int k = 0; k < TapCount<kBilinear>::value; ++k) {
        if (where.valid & (1u << k)) {
          const index_t offset = static_cast<index_t>(tap_y(where.y0, k)) * a.Win + tap_x(where.x0, k);
          gpuAtomicAdd(grad_plane + offset, static_cast<scalar_t>(scale * tap_weight<kBilinear>(where, k)));
        }
      }
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

// grad_mask (owned per pixel) and grad_theta (warp-reduced, then atomicAdd). Parts are handled in
// chunks of kCachedParts accumulators; the argmax always runs over all parts. Threads past the
// last pixel stay to take part in the shuffles with zero contributions.
template <typename scalar_t, typename index_t, bool kBilinear>
__global__ void __launch_bounds__(kThreads)
    backward_params_kernel(const Args<scalar_t, index_t> a, scalar_t* __restrict__ grad_mask,
                           at::opmath_type<scalar_t>* __restrict__ grad_theta) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t pixel = static_cast<index_t>(blockIdx.x) * kThreads + threadIdx.x;
  const bool active = pixel < a.H * a.W;
  const index_t y = active ? pixel / a.W : 0, x = active ? pixel % a.W : 0;
  PixelParts<acc_t> parts;
  for (index_t n = blockIdx.y; n < a.N; n += gridDim.y) {
    if (active) {
      cache_parts<kBilinear>(a, n, x, y, parts);
    }
    for (index_t p0 = 0; p0 < a.P; p0 += kCachedParts) {
      acc_t mask_grad[kCachedParts], dx[kCachedParts], dy[kCachedParts];
      for (int i = 0; i < kCachedParts; ++i) {
        mask_grad[i] = dx[i] = dy[i] = acc_t(0);
      }
      for (index_t c = 0; active && c < a.C; ++c) {
        const acc_t g = static_cast<acc_t>(a.grad_out[n * a.gs.n + c * a.gs.c + y * a.gs.h + x * a.gs.w]);
        if (g == acc_t(0)) {
          continue;
        }
        const scalar_t* plane = a.feat + n * a.fs.n + c * a.fs.c;
        acc_t best;
        index_t winner;
        max_over_parts<kBilinear>(a, parts, n, x, y, plane, best, winner);
        if (winner < p0 || winner >= p0 + kCachedParts) {
          continue;
        }
        Footprint<acc_t> where;
        acc_t m;
        part_at<kBilinear>(a, parts, n, winner, x, y, where, m);
        const int i = static_cast<int>(winner - p0);
        if (kBilinear) {
          const auto sg = bilinear_with_grad(where, plane, a.fs.h, a.fs.w);
          mask_grad[i] += g * sg.value;
          dx[i] += g * m * sg.d_x;
          dy[i] += g * m * sg.d_y;
        } else {
          mask_grad[i] += g * sample<false>(where, plane, a.fs.h, a.fs.w);
        }
      }
      const index_t chunk = a.P - p0 < kCachedParts ? a.P - p0 : kCachedParts;
      for (index_t i = 0; i < chunk; ++i) {
        const index_t p = p0 + i;
        if (active) {
          grad_mask[((n * a.P + p) * a.H + y) * a.W + x] = static_cast<scalar_t>(mask_grad[i]);
        }
        if (kBilinear) {
          // x_in = t0 x + t1 y + t2, y_in = t3 x + t4 y + t5.
          const acc_t xf = static_cast<acc_t>(x), yf = static_cast<acc_t>(y);
          const acc_t terms[6] = {dx[i] * xf, dx[i] * yf, dx[i], dy[i] * xf, dy[i] * yf, dy[i]};
#pragma unroll
          for (int k = 0; k < 6; ++k) {
            const acc_t total = warp_sum(terms[k]);
            if ((threadIdx.x & 31) == 0 && total != acc_t(0)) {
              gpuAtomicAdd(grad_theta + (n * a.P + p) * 6 + k, total);
            }
          }
        }
      }
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

dim3 grid_for(const Sizes& s) {
  const int64_t blocks = (s.H * s.W + kThreads - 1) / kThreads;
  return dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(std::min<int64_t>(s.N, kMaxGridY)));
}

bool nothing_to_do(const Sizes& s) { return s.N == 0 || s.C == 0 || s.H == 0 || s.W == 0; }

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
      if (s.bilinear) {
        forward_kernel<scalar_t, index_t, true><<<grid_for(s), kThreads, 0, stream>>>(a, o);
      } else {
        forward_kernel<scalar_t, index_t, false><<<grid_for(s), kThreads, 0, stream>>>(a, o);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    small ? launch(int32_t(0)) : launch(int64_t(0));
  });
  return out;
}

at::Tensor part_warp_backward_feat_cuda(const at::Tensor& grad_out, const at::Tensor& feat,
                                        const at::Tensor& theta, const at::Tensor& mask,
                                        c10::string_view mode) {
  const Sizes s = part_warp_host::check_inputs(feat, theta, mask, mode, grad_out);
  const c10::cuda::CUDAGuard guard(feat.device());
  const at::Tensor coeffs = part_warp_host::theta_for_kernels(theta, feat);
  at::Tensor grad_feat = at::zeros({s.N, s.C, s.Hin, s.Win}, feat.options());
  if (nothing_to_do(s)) {
    return grad_feat;
  }
  const bool small = fits_int32({&feat, &mask, &grad_out, &grad_feat});
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, feat.scalar_type(),
                                  "part_warp_backward_feat_cuda", [&] {
    auto launch = [&](auto index_zero) {
      using index_t = decltype(index_zero);
      const auto a = make_args<scalar_t, index_t>(s, feat, coeffs, mask, grad_out);
      scalar_t* gf = grad_feat.mutable_data_ptr<scalar_t>();
      if (s.bilinear) {
        backward_feat_kernel<scalar_t, index_t, true><<<grid_for(s), kThreads, 0, stream>>>(a, gf);
      } else {
        backward_feat_kernel<scalar_t, index_t, false><<<grid_for(s), kThreads, 0, stream>>>(a, gf);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    small ? launch(int32_t(0)) : launch(int64_t(0));
  });
  return grad_feat;
}

std::tuple<at::Tensor, at::Tensor> part_warp_backward_params_cuda(
    const at::Tensor& grad_out, const at::Tensor& feat, const at::Tensor& theta,
    const at::Tensor& mask, c10::string_view mode) {
  const Sizes s = part_warp_host::check_inputs(feat, theta, mask, mode, grad_out);
  const c10::cuda::CUDAGuard guard(feat.device());
  const at::Tensor coeffs = part_warp_host::theta_for_kernels(theta, feat);
  at::Tensor grad_mask = at::zeros({s.N, s.P, s.H, s.W}, mask.options());
  // The theta sums are accumulated in the kernels' position type (float, double for double).
  at::Tensor theta_sums = at::zeros({s.N, s.P, 2, 3}, coeffs.options());
  if (!nothing_to_do(s)) {
    const bool small = fits_int32({&feat, &mask, &grad_out, &grad_mask});
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, feat.scalar_type(),
                                  "part_warp_backward_params_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      auto launch = [&](auto index_zero) {
        using index_t = decltype(index_zero);
        const auto a = make_args<scalar_t, index_t>(s, feat, coeffs, mask, grad_out);
        scalar_t* gm = grad_mask.mutable_data_ptr<scalar_t>();
        acc_t* gt = theta_sums.mutable_data_ptr<acc_t>();
        if (s.bilinear) {
          backward_params_kernel<scalar_t, index_t, true><<<grid_for(s), kThreads, 0, stream>>>(a, gm, gt);
        } else {
          backward_params_kernel<scalar_t, index_t, false><<<grid_for(s), kThreads, 0, stream>>>(a, gm, gt);
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      small ? launch(int32_t(0)) : launch(int64_t(0));
    });
  }
  return {theta_sums.to(theta.scalar_type()), grad_mask};
}

}  // namespace

TORCH_LIBRARY_IMPL(msgen, CUDA, m) {
  m.impl("part_warp", &part_warp_cuda);
  m.impl("part_warp_backward_feat", &part_warp_backward_feat_cuda);
  m.impl("part_warp_backward_params", &part_warp_backward_params_cuda);
}

}  // namespace msgen
