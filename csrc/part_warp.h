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

namespace msgen {
namespace part_warp_math {

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
  return {coeffs[0] * xf + coeffs[1] * yf + coeffs[2], coeffs[3] * xf + coeffs[4] * yf + coeffs[5]};
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
      value += tap_weight<kBilinear>(f, k) * static_cast<acc_t>(plane[offset]);
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
      v[k] = static_cast<acc_t>(plane[offset]);
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

}  // namespace part_warp_math
}  // namespace msgen

#ifndef MSGEN_PART_WARP_NO_HOST_API
#include <ATen/core/Tensor.h>

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

}  // namespace part_warp_host
}  // namespace msgen
#endif
