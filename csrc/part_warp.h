// msgen::part_warp: the per-pixel math shared by the CPU kernels (part_warp.cpp) and the CUDA
// kernels (part_warp_cuda.cu), so both devices compute the same numbers. The convention is the one
// written in msgen/ops/part_warp.py: pixel coordinates of feat's grid with pixel centres at
// integers, theta[n, p] maps the output pixel (x, y) to the source point theta @ (x, y, 1),
// bilinear taps outside feat count as zero, nearest rounds half to even (nearbyint), and the max
// over parts keeps the lowest part index on ties.
//
// Everything here is header-only and free of ATen, so nvcc compiles it for the device and g++
// for the host. The host-side entry points at the end are declared here and defined in the .cpp.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define MSGEN_HOST_DEVICE __host__ __device__ __forceinline__
#define MSGEN_UNROLL _Pragma("unroll")
#else
#define MSGEN_HOST_DEVICE inline
#define MSGEN_UNROLL
#endif

// Every global-memory access of the CUDA per-thread code below goes through these two macros. On
// the GPU and in the CPU kernels they are plain accesses; the CPU emulation of the per-thread code
// (csrc/testing/part_warp_emulation.cpp, a test-only module) defines them before including this
// header to count the bytes each tensor moves, which tests compare with msgen/ops/byte_model.py.
// The inline namespace keeps the two builds of these inline functions apart.
#ifndef MSGEN_WARP_LOAD
#define MSGEN_WARP_LOAD(tensor, ptr) (*(ptr))
#define MSGEN_WARP_STORE(tensor, ptr, value) (*(ptr) = (value))
#define MSGEN_WARP_NAMESPACE plain_access
#endif

namespace msgen {
namespace part_warp_math {
inline namespace MSGEN_WARP_NAMESPACE {

// Overloads rather than std:: calls: the same spelling must resolve on the host and the device.
MSGEN_HOST_DEVICE float floor_of(float v) { return ::floorf(v); }
MSGEN_HOST_DEVICE double floor_of(double v) { return ::floor(v); }
MSGEN_HOST_DEVICE float round_half_even(float v) { return ::nearbyintf(v); }
MSGEN_HOST_DEVICE double round_half_even(double v) { return ::nearbyint(v); }

template <typename acc_t>
struct Point {
  acc_t x, y;
};

// The source point sampled by output pixel (x, y); coeffs holds theta[n, p] row-major (6 values).
template <typename acc_t>
MSGEN_HOST_DEVICE Point<acc_t> source_point(const acc_t* coeffs, int64_t x, int64_t y) {
  const acc_t xf = static_cast<acc_t>(x), yf = static_cast<acc_t>(y);
  acc_t t[6];
MSGEN_UNROLL
  for (int k = 0; k < 6; ++k) {
    t[k] = MSGEN_WARP_LOAD(theta, coeffs + k);
  }
  return {t[0] * xf + t[1] * yf + t[2], t[3] * xf + t[4] * yf + t[5]};
}

// Where a source point lands on feat's grid. Bilinear: the top-left tap (x0, y0), the fractions
// (fx, fy) towards the bottom-right one, and a bit per tap inside feat (bit k for tap k = 0
// top-left, 1 top-right, 2 bottom-left, 3 bottom-right). Nearest: the rounded pixel as tap 0.
// Pixel coordinates always fit int32 (the host checks Hin, Win < 2^30), offsets use index_t.
template <typename acc_t>
struct Footprint {
  int32_t x0, y0;
  acc_t fx, fy;
  uint32_t valid;
};

// A point outside (-1, size) in either axis has no tap inside feat. Testing that before the
// float-to-int conversion also keeps huge or non-finite coordinates (a part that "samples
// nothing") from overflowing; NaN fails both comparisons and so samples zero.
template <typename acc_t>
MSGEN_HOST_DEVICE bool may_touch(acc_t v, int64_t size) {
  return v > acc_t(-1) && v < static_cast<acc_t>(size);
}

template <bool kBilinear, typename acc_t>
MSGEN_HOST_DEVICE Footprint<acc_t> locate(Point<acc_t> p, int64_t Hin, int64_t Win) {
  Footprint<acc_t> f{0, 0, acc_t(0), acc_t(0), 0u};
  if (!(may_touch(p.x, Win) && may_touch(p.y, Hin))) {
    return f;
  }
  if (kBilinear) {
    const acc_t xf = floor_of(p.x), yf = floor_of(p.y);
    f.x0 = static_cast<int32_t>(xf);
    f.y0 = static_cast<int32_t>(yf);
    f.fx = p.x - xf;
    f.fy = p.y - yf;
    const bool left = f.x0 >= 0, right = f.x0 + 1 < Win;
    const bool top = f.y0 >= 0, bottom = f.y0 + 1 < Hin;
    f.valid = (top && left ? 1u : 0u) | (top && right ? 2u : 0u) | (bottom && left ? 4u : 0u) |
              (bottom && right ? 8u : 0u);
  } else {
    f.x0 = static_cast<int32_t>(round_half_even(p.x));
    f.y0 = static_cast<int32_t>(round_half_even(p.y));
    f.valid = (f.x0 >= 0 && f.x0 < Win && f.y0 >= 0 && f.y0 < Hin) ? 1u : 0u;
  }
  return f;
}

template <bool kBilinear>
struct TapCount {
  static constexpr int value = kBilinear ? 4 : 1;
};

MSGEN_HOST_DEVICE int32_t tap_x(int32_t x0, int k) { return x0 + (k & 1); }
MSGEN_HOST_DEVICE int32_t tap_y(int32_t y0, int k) { return y0 + (k >> 1); }

// Interpolation weight of tap k (1 for the single nearest tap).
template <bool kBilinear, typename acc_t>
MSGEN_HOST_DEVICE acc_t tap_weight(const Footprint<acc_t>& f, int k) {
  if (!kBilinear) {
    return acc_t(1);
  }
  const acc_t wx = (k & 1) ? f.fx : acc_t(1) - f.fx;
  const acc_t wy = (k >> 1) ? f.fy : acc_t(1) - f.fy;
  return wx * wy;
}

// sample(feat[n, c], point) given the plane's first element and its (row, column) strides.
template <bool kBilinear, typename acc_t, typename index_t, typename scalar_t>
MSGEN_HOST_DEVICE acc_t sample(const Footprint<acc_t>& f, const scalar_t* plane, index_t stride_h,
                               index_t stride_w) {
  acc_t value = acc_t(0);
MSGEN_UNROLL
  for (int k = 0; k < TapCount<kBilinear>::value; ++k) {
    if (f.valid & (1u << k)) {
      const index_t offset = static_cast<index_t>(tap_y(f.y0, k)) * stride_h +
                             static_cast<index_t>(tap_x(f.x0, k)) * stride_w;
      value += tap_weight<kBilinear>(f, k) * static_cast<acc_t>(MSGEN_WARP_LOAD(feat, plane + offset));
    }
  }
  return value;
}

template <typename acc_t>
struct SampleWithGrad {
  acc_t value, d_x, d_y;  // the bilinear sample and its derivatives w.r.t. the source point
};

// Bilinear sample and its derivative w.r.t. (x_in, y_in): taps outside feat count as zero, and at
// integer coordinates the derivative is the one of the cell to the right/below (the floor), as in
// grid_sample's backward.
template <typename acc_t, typename index_t, typename scalar_t>
MSGEN_HOST_DEVICE SampleWithGrad<acc_t> bilinear_with_grad(const Footprint<acc_t>& f,
                                                           const scalar_t* plane, index_t stride_h,
                                                           index_t stride_w) {
  acc_t v[4];
MSGEN_UNROLL
  for (int k = 0; k < 4; ++k) {
    v[k] = acc_t(0);
    if (f.valid & (1u << k)) {
      const index_t offset = static_cast<index_t>(tap_y(f.y0, k)) * stride_h +
                             static_cast<index_t>(tap_x(f.x0, k)) * stride_w;
      v[k] = static_cast<acc_t>(MSGEN_WARP_LOAD(feat, plane + offset));
    }
  }
  const acc_t gx = acc_t(1) - f.fx, gy = acc_t(1) - f.fy;
  SampleWithGrad<acc_t> r;
  r.value = gy * (gx * v[0] + f.fx * v[1]) + f.fy * (gx * v[2] + f.fx * v[3]);
  r.d_x = gy * (v[1] - v[0]) + f.fy * (v[3] - v[2]);
  r.d_y = gx * (v[2] - v[0]) + f.fx * (v[3] - v[1]);
  return r;
}

// The running max over parts: a later part replaces the best only when strictly larger, so ties
// keep the lowest part index; a NaN wins once (torch.max propagates NaN and points at it).
template <typename acc_t>
MSGEN_HOST_DEVICE bool replaces(acc_t candidate, acc_t best) {
  return candidate > best || (candidate != candidate && best == best);
}

// --- The CUDA kernels' per-thread work --------------------------------------------------------
// One GPU thread owns one output pixel (n, y, x) and a tile of kTile consecutive channels
// [c0, c0 + count). The functions below are that thread's whole computation; part_warp_cuda.cu
// calls them from its kernels, and the test-only module msgen._C_testing
// (csrc/testing/part_warp_emulation.cpp) calls the same functions from a serial CPU loop, so the
// CPU tests check the exact code that the GPU runs, and count the bytes it moves.
//
// Why this shape (the GPU design, see part_warp_cuda.cu): the loop over parts is outermost and
// the per-channel state (best value, winning part, upstream gradient) is an array of kTile
// entries indexed only by fully unrolled loops, so it lives in registers; nothing is indexed by
// a run-time part number, which would put it in local memory (a stack frame). The footprint of a
// part is recomputed per channel tile (6 FMAs and a floor), not cached per part.

// Channels per GPU thread: 8 accumulation-type registers each for the best values and the
// upstream gradients, plus 8 winners.
constexpr int kCudaTileChannels = 8;

template <typename scalar_t, typename acc_t, typename index_t>
struct TileArgs {
  const scalar_t* feat;
  index_t fs_n, fs_c, fs_h, fs_w;
  const acc_t* theta;  // contiguous (N, P, 6)
  const scalar_t* mask;
  index_t ms_n, ms_p, ms_h, ms_w;
  const scalar_t* grad_out;  // null in the forward
  index_t gs_n, gs_c, gs_h, gs_w;
  index_t N, C, Hin, Win, P, H, W;
};

// best[i] = max over parts of mask * sample for channel c0 + i (i < count), winner[i] its lowest
// part; the rule of the CPU kernels (a mask of 0 contributes 0 without a load).
template <int kTile, bool kBilinear, typename scalar_t, typename acc_t, typename index_t>
MSGEN_HOST_DEVICE void tile_max(const TileArgs<scalar_t, acc_t, index_t>& a, index_t n, index_t c0,
                                int count, index_t x, index_t y, acc_t (&best)[kTile],
                                int32_t (&winner)[kTile]) {
  const scalar_t* planes = a.feat + n * a.fs_n + c0 * a.fs_c;
  const scalar_t* mask = a.mask + n * a.ms_n + y * a.ms_h + x * a.ms_w;
  for (index_t p = 0; p < a.P; ++p) {
    const acc_t m = static_cast<acc_t>(MSGEN_WARP_LOAD(mask, mask + p * a.ms_p));
    Footprint<acc_t> f{0, 0, acc_t(0), acc_t(0), 0u};
    if (m != acc_t(0)) {
      f = locate<kBilinear>(source_point(a.theta + (n * a.P + p) * 6, x, y), a.Hin, a.Win);
    }
MSGEN_UNROLL
    for (int i = 0; i < kTile; ++i) {
      if (i < count) {
        const acc_t v = m == acc_t(0)
                            ? acc_t(0)
                            : m * sample<kBilinear>(f, planes + i * a.fs_c, a.fs_h, a.fs_w);
        if (p == 0 || replaces(v, best[i])) {
          best[i] = v;
          winner[i] = static_cast<int32_t>(p);
        }
      }
    }
  }
}

template <int kTile, bool kBilinear, typename scalar_t, typename acc_t, typename index_t>
MSGEN_HOST_DEVICE void forward_tile(const TileArgs<scalar_t, acc_t, index_t>& a, index_t n,
                                    index_t c0, index_t x, index_t y, scalar_t* out) {
  const int count = static_cast<int>(a.C - c0 < kTile ? a.C - c0 : kTile);
  acc_t best[kTile];
  int32_t winner[kTile];
  tile_max<kTile, kBilinear>(a, n, c0, count, x, y, best, winner);
MSGEN_UNROLL
  for (int i = 0; i < kTile; ++i) {
    if (i < count) {
      MSGEN_WARP_STORE(out, out + ((n * a.C + c0 + i) * a.H + y) * a.W + x,
                       static_cast<scalar_t>(best[i]));
    }
  }
}

// The backward of one thread's tile. The winners are recomputed (tile_max), then a second loop
// over the parts hands each part's share to the sink:
//   sink.feat(n, c, offset, value): a contribution to grad_feat[n, c] at offset y_in * Win + x_in,
//   sink.part(n, p, x, y, active, d_mask, d_x, d_y): this pixel's d loss / d mask[n, p, y, x] and
//     d loss / d (x_in, y_in) of part p summed over the tile's channels; called for every part by
//     every thread, active or not, so a GPU sink may reduce across a warp.
// sink.want_feat and sink.want_params say which gradients are wanted (the others cost nothing);
// they are the same for every thread of a launch, so the branches on them never diverge.
template <int kTile, bool kBilinear, typename Sink, typename scalar_t, typename acc_t,
          typename index_t>
MSGEN_HOST_DEVICE void backward_tile(const TileArgs<scalar_t, acc_t, index_t>& a, index_t n,
                                     index_t c0, index_t x, index_t y, bool active, Sink& sink) {
  const int count = active ? static_cast<int>(a.C - c0 < kTile ? a.C - c0 : kTile) : 0;
  acc_t best[kTile], g[kTile];
  int32_t winner[kTile];
  tile_max<kTile, kBilinear>(a, n, c0, count, x, y, best, winner);
  const scalar_t* grads = a.grad_out + n * a.gs_n + c0 * a.gs_c + y * a.gs_h + x * a.gs_w;
MSGEN_UNROLL
  for (int i = 0; i < kTile; ++i) {
    g[i] = i < count ? static_cast<acc_t>(MSGEN_WARP_LOAD(grad_out, grads + i * a.gs_c)) : acc_t(0);
    if (g[i] == acc_t(0)) {
      winner[i] = -1;  // nothing to propagate: no part takes this channel
    }
  }
  const scalar_t* planes = a.feat + n * a.fs_n + c0 * a.fs_c;
  const scalar_t* mask = a.mask + n * a.ms_n + y * a.ms_h + x * a.ms_w;
  for (index_t p = 0; p < a.P; ++p) {
    const int32_t part = static_cast<int32_t>(p);
    bool wins = false;
MSGEN_UNROLL
    for (int i = 0; i < kTile; ++i) {
      wins |= winner[i] == part;
    }
    acc_t d_mask = acc_t(0), d_x = acc_t(0), d_y = acc_t(0);
    if (wins) {
      const acc_t m = static_cast<acc_t>(MSGEN_WARP_LOAD(mask, mask + p * a.ms_p));
      const Footprint<acc_t> f =
          locate<kBilinear>(source_point(a.theta + (n * a.P + p) * 6, x, y), a.Hin, a.Win);
MSGEN_UNROLL
      for (int i = 0; i < kTile; ++i) {
        if (winner[i] != part) {
          continue;
        }
        if (sink.want_feat) {
          const acc_t scale = g[i] * m;
          if (scale != acc_t(0)) {
MSGEN_UNROLL
            for (int k = 0; k < TapCount<kBilinear>::value; ++k) {
              if (f.valid & (1u << k)) {
                const index_t offset =
                    static_cast<index_t>(tap_y(f.y0, k)) * a.Win + tap_x(f.x0, k);
                sink.feat(n, c0 + i, offset, scale * tap_weight<kBilinear>(f, k));
              }
            }
          }
        }
        if (sink.want_params) {
          const scalar_t* plane = planes + i * a.fs_c;
          if (kBilinear) {
            const auto sg = bilinear_with_grad(f, plane, a.fs_h, a.fs_w);
            d_mask += g[i] * sg.value;
            d_x += g[i] * m * sg.d_x;
            d_y += g[i] * m * sg.d_y;
          } else {
            d_mask += g[i] * sample<false>(f, plane, a.fs_h, a.fs_w);
          }
        }
      }
    }
    if (sink.want_params) {
      sink.part(n, p, x, y, active, d_mask, d_x, d_y);
    }
  }
}

}  // namespace MSGEN_WARP_NAMESPACE
}  // namespace part_warp_math
}  // namespace msgen

#ifndef MSGEN_PART_WARP_NO_HOST_API
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <string_view>
#include <tuple>

namespace msgen {
namespace part_warp_host {

// Sizes of one call, validated once by check_inputs for both devices.
struct Sizes {
  int64_t N, C, Hin, Win, P, H, W;
  bool bilinear;
};

// TORCH_CHECKs naming the argument at fault; grad_out is checked when defined.
Sizes check_inputs(const at::Tensor& feat, const at::Tensor& theta, const at::Tensor& mask,
                   std::string_view mode, const at::Tensor& grad_out = at::Tensor());

// theta as a contiguous (N, P, 2, 3) tensor of the type the kernels compute positions in:
// float64 for float64 features, float32 otherwise (bf16/fp16 positions would be off by pixels).
at::Tensor theta_for_kernels(const at::Tensor& theta, const at::Tensor& feat);

// The CUDA backward's grad_feat accumulation (see part_warp_cuda.cu): the per-thread atomics go
// to an accumulation-type buffer of `samples` samples, small enough to stay in L2; the host runs
// the samples through it in chunks (zero the buffer, one kernel launch, round the chunk into
// grad_feat). in_place: the buffer is grad_feat itself (accumulation type == feat's type and every
// sample fits), so there is one chunk and no copy.
struct FeatChunks {
  int64_t samples;
  bool in_place;
};

// 24 MB: a Hopper L2 holds 50 MB, and the streaming reads of the same launch share it.
constexpr int64_t kFeatBufferBytes = int64_t(24) << 20;

// The buffer's byte budget: kFeatBufferBytes, or the test hook MSGEN_WARP_FEAT_BUFFER_BYTES when
// that environment variable is set (tests force a buffer of a few samples to run the chunk loop).
int64_t feat_buffer_budget();

// The plan for one backward: at most min(budget, the output's bytes) of buffer, at least one sample.
FeatChunks plan_feat_chunks(const Sizes& s, int64_t feat_element_size, int64_t acc_element_size,
                            bool same_type, int64_t budget);

// grad_feat (feat's type and shape) and its accumulation buffer (the plan's samples, acc_options),
// which is grad_feat itself (zeroed) in place.
struct FeatBuffers {
  FeatChunks plan;
  at::Tensor grad_feat, buffer;
};
FeatBuffers make_feat_buffers(const Sizes& s, const at::Tensor& feat,
                              const at::TensorOptions& acc_options);

// The host's chunk loop: launch(n_begin, n_end) runs the per-thread code for those samples into
// the buffer; every chunk is zeroed before and rounded into grad_feat after, unless in place.
// Without grad_feat one launch covers every sample.
template <typename Launch>
void for_each_feat_chunk(const Sizes& s, FeatBuffers& b, bool want_feat, Launch&& launch) {
  if (!want_feat) {
    launch(int64_t(0), s.N);
    return;
  }
  for (int64_t n0 = 0; n0 < s.N; n0 += b.plan.samples) {
    const int64_t n1 = std::min(s.N, n0 + b.plan.samples);
    if (!b.plan.in_place) {
      b.buffer.zero_();
    }
    launch(n0, n1);
    if (!b.plan.in_place) {
      b.grad_feat.narrow(0, n0, n1 - n0).copy_(b.buffer.narrow(0, 0, n1 - n0));
    }
  }
}

}  // namespace part_warp_host
}  // namespace msgen
#endif
