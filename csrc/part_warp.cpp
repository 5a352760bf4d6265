// msgen::part_warp: the op schemas (TORCH_LIBRARY) and the CPU kernels.
//
// Three ops, so autograd only pays for what it needs:
//   part_warp(feat, theta, mask, mode) -> out
//   part_warp_backward_feat(grad_out, feat, theta, mask, mode) -> grad_feat
//   part_warp_backward_params(grad_out, feat, theta, mask, mode) -> (grad_theta, grad_mask)
//   part_warp_backward(grad_out, feat, theta, mask, mode) -> (grad_feat, grad_theta, grad_mask)
//     (all three in one pass on CUDA, when feat and mask or theta need gradients)
// The winning part of each output element is recomputed in the backward ops instead of being
// stored by the forward: no saved tensor, and the forward allocates nothing but its output.
// Python registers the fake (shape) kernels and the autograd formula (msgen/ops/part_warp.py).
//
// CPU layout of the work: every kernel walks output rows. For one output row (n, y) the sampling
// footprints and mask values of all P parts are computed once (P * W entries) and reused for every
// channel. Scratch per thread: that row (O(P * W)), plus for bf16/fp16 grad_feat a float copy of
// the kChannelsPerTask planes the thread is accumulating.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "part_warp.h"

namespace msgen {
namespace part_warp_host {

Sizes check_inputs(const at::Tensor& feat, const at::Tensor& theta, const at::Tensor& mask,
                   std::string_view mode, const at::Tensor& grad_out) {
  TORCH_CHECK_VALUE(mode == "bilinear" || mode == "nearest",
                    "part_warp: mode must be 'bilinear' or 'nearest', got '", mode, "'");
  TORCH_CHECK_VALUE(feat.dim() == 4, "part_warp: feat must be (N, C, Hin, Win), got ",
                    feat.sizes());
  const auto dtype = feat.scalar_type();
  TORCH_CHECK_VALUE(dtype == at::kDouble || dtype == at::kFloat || dtype == at::kBFloat16 ||
                        dtype == at::kHalf,
                    "part_warp: feat must be float64, float32, bfloat16 or float16, got ", dtype);
  const int64_t N = feat.size(0);
  TORCH_CHECK_VALUE(theta.dim() == 4 && theta.size(0) == N && theta.size(2) == 2 &&
                        theta.size(3) == 3,
                    "part_warp: theta must be (N=", N, ", P, 2, 3), got ", theta.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(theta.scalar_type()),
                    "part_warp: theta must be floating point, got ", theta.scalar_type());
  const int64_t P = theta.size(1);
  TORCH_CHECK_VALUE(P >= 1, "part_warp: theta and mask must hold at least one part (P >= 1)");
  TORCH_CHECK_VALUE(mask.dim() == 4 && mask.size(0) == N && mask.size(1) == P,
                    "part_warp: mask must be (N=", N, ", P=", P, ", H, W), got ", mask.sizes());
  TORCH_CHECK_VALUE(mask.scalar_type() == dtype, "part_warp: mask must have feat's dtype ", dtype,
                    ", got ", mask.scalar_type());
  for (const auto* named : {&theta, &mask}) {
    TORCH_CHECK_VALUE(named->device() == feat.device(), "part_warp: ",
                      named == &theta ? "theta" : "mask", " is on ", named->device(),
                      ", feat on ", feat.device());
  }
  Sizes s{N, feat.size(1), feat.size(2), feat.size(3), P, mask.size(2), mask.size(3),
          mode == "bilinear"};
  // Pixel coordinates travel as int32 in the kernels (with room for the taps at size and -1).
  constexpr int64_t kMaxSide = int64_t(1) << 30;
  TORCH_CHECK_VALUE(s.Hin < kMaxSide && s.Win < kMaxSide && s.H < kMaxSide && s.W < kMaxSide,
                    "part_warp: spatial sizes must be below 2^30");
  TORCH_CHECK_VALUE(P < (int64_t(1) << 31), "part_warp: too many parts (", P, ")");
  if (grad_out.defined()) {
    TORCH_CHECK_VALUE(grad_out.sizes() == at::IntArrayRef({N, s.C, s.H, s.W}),
                      "part_warp backward: grad_out must be (N, C, H, W) = (", N, ", ", s.C, ", ",
                      s.H, ", ", s.W, "), got ", grad_out.sizes());
    TORCH_CHECK_VALUE(grad_out.scalar_type() == dtype && grad_out.device() == feat.device(),
                      "part_warp backward: grad_out must match feat's dtype and device");
  }
  return s;
}

at::Tensor theta_for_kernels(const at::Tensor& theta, const at::Tensor& feat) {
  const auto position_type = feat.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return theta.to(position_type).contiguous();
}

}  // namespace part_warp_host

namespace {

using part_warp_host::Sizes;
using namespace part_warp_math;

// Channels per backward_feat task: enough to reuse one row of footprints, few enough for tasks.
constexpr int64_t kChannelsPerTask = 16;

// Iterations per at::parallel_for chunk so that a chunk holds at least ~32k samples.
int64_t grain_for(int64_t samples_per_iteration) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, samples_per_iteration));
}

// Views of the inputs with their strides, so non-contiguous inputs are read in place.
template <typename scalar_t, typename acc_t>
struct Inputs {
  const scalar_t* feat;
  at::IntArrayRef fs;  // feat strides (N, C, H, W)
  const acc_t* theta;  // contiguous (N, P, 6)
  const scalar_t* mask;
  at::IntArrayRef ms;  // mask strides

  Inputs(const at::Tensor& f, const at::Tensor& coeffs, const at::Tensor& m)
      : feat(f.const_data_ptr<scalar_t>()),
        fs(f.strides()),
        theta(coeffs.const_data_ptr<acc_t>()),
        mask(m.const_data_ptr<scalar_t>()),
        ms(m.strides()) {}

  const scalar_t* plane(int64_t n, int64_t c) const { return feat + n * fs[0] + c * fs[1]; }
  const scalar_t* mask_row(int64_t n, int64_t p, int64_t y) const {
    return mask + n * ms[0] + p * ms[1] + y * ms[2];
  }
};

// What every channel of output row (n, y) shares: the footprints and mask values of all P parts
// (index p * W + x), the parts with a nonzero mask somewhere on the row, and the lowest part that
// is zero on the whole row (-1 if none). Most parts cover few rows; a part that is zero on the
// whole row contributes exactly 0 everywhere, which is merged once instead of part by part.
template <typename acc_t>
struct Row {
  std::vector<Footprint<acc_t>> where;
  std::vector<acc_t> mask;
  std::vector<int32_t> active_parts;
  int32_t first_empty_part = -1;
  std::vector<acc_t> best;      // per channel: the max over parts ...
  std::vector<int32_t> winner;  // ... and the lowest part reaching it

  explicit Row(const Sizes& s) : where(s.P * s.W), mask(s.P * s.W), best(s.W), winner(s.W) {
    active_parts.reserve(s.P);
  }
};

template <bool kBilinear, typename scalar_t, typename acc_t>
void prepare_row(const Inputs<scalar_t, acc_t>& in, const Sizes& s, int64_t n, int64_t y,
                 Row<acc_t>& row) {
  const int64_t mask_stride_w = in.ms[3];
  row.active_parts.clear();
  row.first_empty_part = -1;
  for (int64_t p = 0; p < s.P; ++p) {
    const acc_t* coeffs = in.theta + (n * s.P + p) * 6;
    const scalar_t* m = in.mask_row(n, p, y);
    bool any = false;
    for (int64_t x = 0; x < s.W; ++x) {
      const acc_t mv = static_cast<acc_t>(m[x * mask_stride_w]);
      row.mask[p * s.W + x] = mv;
      any |= mv != acc_t(0);
      row.where[p * s.W + x] = locate<kBilinear>(source_point(coeffs, x, y), s.Hin, s.Win);
    }
    if (any) {
      row.active_parts.push_back(static_cast<int32_t>(p));
    } else if (row.first_empty_part < 0) {
      row.first_empty_part = static_cast<int32_t>(p);
    }
  }
}

// For channel c of the prepared row: row.best[x] = max_p mask * sample, row.winner[x] = its
// lowest p (the same result as visiting the parts in order with `replaces`). A part whose mask is
// 0 at a pixel contributes exactly 0 without reading feat (for finite feat this is mask * sample).
template <bool kBilinear, typename scalar_t, typename acc_t>
void max_over_parts(const Inputs<scalar_t, acc_t>& in, const Sizes& s, int64_t n, int64_t c,
                    Row<acc_t>& row) {
  const scalar_t* plane = in.plane(n, c);
  const int64_t stride_h = in.fs[2], stride_w = in.fs[3], W = s.W;
  acc_t* best = row.best.data();
  int32_t* winner = row.winner.data();
  bool first = true;
  for (const int32_t p : row.active_parts) {
    const acc_t* m = row.mask.data() + p * W;
    const Footprint<acc_t>* w = row.where.data() + p * W;
    for (int64_t x = 0; x < W; ++x) {
      const acc_t v =
          m[x] == acc_t(0) ? acc_t(0) : m[x] * sample<kBilinear>(w[x], plane, stride_h, stride_w);
      if (first || replaces(v, best[x])) {
        best[x] = v;
        winner[x] = p;
      }
    }
    first = false;
  }
  const int32_t zero_part = row.first_empty_part;
  if (zero_part < 0) {
    return;
  }
  for (int64_t x = 0; x < W; ++x) {
    if (first || replaces(acc_t(0), best[x])) {
      best[x] = acc_t(0);
      winner[x] = zero_part;
    } else if (best[x] == acc_t(0) && winner[x] > zero_part) {
      winner[x] = zero_part;  // a tie: the lower part wins
    }
  }
}

template <typename scalar_t, bool kBilinear>
void forward_kernel(const Inputs<scalar_t, at::opmath_type<scalar_t>>& in, const Sizes& s,
                    scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  at::parallel_for(0, s.N * s.H, grain_for(s.P * s.C * s.W), [&](int64_t begin, int64_t end) {
    Row<acc_t> row(s);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / s.H, y = r % s.H;
      prepare_row<kBilinear>(in, s, n, y, row);
      for (int64_t c = 0; c < s.C; ++c) {
        max_over_parts<kBilinear>(in, s, n, c, row);
        scalar_t* o = out + ((n * s.C + c) * s.H + y) * s.W;
        for (int64_t x = 0; x < s.W; ++x) {
          o[x] = static_cast<scalar_t>(row.best[x]);
        }
      }
    }
  });
}

// grad_feat: each task owns the planes of channels [c0, c1) of one sample n, so the scatter needs
// no atomics. Reduced-precision planes are accumulated in a float buffer of the task's planes.
template <typename scalar_t, bool kBilinear>
void backward_feat_kernel(const Inputs<scalar_t, at::opmath_type<scalar_t>>& in, const Sizes& s,
                          const scalar_t* grad_out, at::IntArrayRef gs, scalar_t* grad_feat) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool kInPlace = std::is_same_v<acc_t, scalar_t>;
  const int64_t blocks = (s.C + kChannelsPerTask - 1) / kChannelsPerTask;
  const int64_t plane_size = s.Hin * s.Win;
  at::parallel_for(0, s.N * blocks, 1, [&](int64_t begin, int64_t end) {
    Row<acc_t> row(s);
    std::vector<acc_t> buffer(kInPlace ? 0 : kChannelsPerTask * plane_size);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, c0 = (task % blocks) * kChannelsPerTask;
      const int64_t c1 = std::min(s.C, c0 + kChannelsPerTask);
      scalar_t* grad_planes = grad_feat + (n * s.C + c0) * plane_size;
      acc_t* acc_planes;
      if constexpr (kInPlace) {
        acc_planes = grad_planes;  // zero-initialised by the caller
      } else {
        std::fill(buffer.begin(), buffer.end(), acc_t(0));
        acc_planes = buffer.data();
      }
      for (int64_t y = 0; y < s.H; ++y) {
        prepare_row<kBilinear>(in, s, n, y, row);
        for (int64_t c = c0; c < c1; ++c) {
          max_over_parts<kBilinear>(in, s, n, c, row);
          const scalar_t* g = grad_out + n * gs[0] + c * gs[1] + y * gs[2];
          acc_t* acc = acc_planes + (c - c0) * plane_size;
          for (int64_t x = 0; x < s.W; ++x) {
            const int64_t i = row.winner[x] * s.W + x;
            const acc_t scale = static_cast<acc_t>(g[x * gs[3]]) * row.mask[i];
            if (scale == acc_t(0)) {
              continue;
            }
            const Footprint<acc_t>& f = row.where[i];
            for (int k = 0; k < TapCount<kBilinear>::value; ++k) {
              if (f.valid & (1u << k)) {
                acc[int64_t(tap_y(f.y0, k)) * s.Win + tap_x(f.x0, k)] +=
                    scale * tap_weight<kBilinear>(f, k);
              }
            }
          }
        }
      }
      if constexpr (!kInPlace) {
        for (int64_t i = 0; i < (c1 - c0) * plane_size; ++i) {
          grad_planes[i] = static_cast<scalar_t>(acc_planes[i]);
        }
      }
    }
  });
}

// grad_mask and grad_theta, one output row per iteration. grad_mask[n, p, y, x] sums over the
// channels that part p wins; grad_theta's per-row partial sums (double) are reduced over rows by
// the caller, so no two iterations write the same element.
template <typename scalar_t, bool kBilinear>
void backward_params_kernel(const Inputs<scalar_t, at::opmath_type<scalar_t>>& in,
                            const Sizes& s, const scalar_t* grad_out, at::IntArrayRef gs,
                            scalar_t* grad_mask, double* theta_rows) {
  using acc_t = at::opmath_type<scalar_t>;
  at::parallel_for(0, s.N * s.H, grain_for(s.P * s.C * s.W), [&](int64_t begin, int64_t end) {
    Row<acc_t> row(s);
    std::vector<acc_t> mask_grad(s.P * s.W);
    std::vector<acc_t> point_grad(kBilinear ? 2 * s.P * s.W : 0);  // d loss / d (x_in, y_in)
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / s.H, y = r % s.H;
      prepare_row<kBilinear>(in, s, n, y, row);
      std::fill(mask_grad.begin(), mask_grad.end(), acc_t(0));
      std::fill(point_grad.begin(), point_grad.end(), acc_t(0));
      for (int64_t c = 0; c < s.C; ++c) {
        max_over_parts<kBilinear>(in, s, n, c, row);
        const scalar_t* plane = in.plane(n, c);
        const scalar_t* g = grad_out + n * gs[0] + c * gs[1] + y * gs[2];
        for (int64_t x = 0; x < s.W; ++x) {
          const acc_t gv = static_cast<acc_t>(g[x * gs[3]]);
          if (gv == acc_t(0)) {
            continue;
          }
          const int64_t i = row.winner[x] * s.W + x;
          if constexpr (kBilinear) {
            const auto sg = bilinear_with_grad(row.where[i], plane, in.fs[2], in.fs[3]);
            const acc_t scale = gv * row.mask[i];
            mask_grad[i] += gv * sg.value;
            point_grad[2 * i] += scale * sg.d_x;
            point_grad[2 * i + 1] += scale * sg.d_y;
          } else {
            mask_grad[i] += gv * sample<false>(row.where[i], plane, in.fs[2], in.fs[3]);
          }
        }
      }
      for (int64_t p = 0; p < s.P; ++p) {
        scalar_t* gm = grad_mask + ((n * s.P + p) * s.H + y) * s.W;
        for (int64_t x = 0; x < s.W; ++x) {
          gm[x] = static_cast<scalar_t>(mask_grad[p * s.W + x]);
        }
      }
      if constexpr (kBilinear) {
        // x_in = t0 x + t1 y + t2, y_in = t3 x + t4 y + t5.
        for (int64_t p = 0; p < s.P; ++p) {
          double sums[6] = {0, 0, 0, 0, 0, 0};
          for (int64_t x = 0; x < s.W; ++x) {
            const double gx = point_grad[2 * (p * s.W + x)];
            const double gy = point_grad[2 * (p * s.W + x) + 1];
            sums[0] += gx * x;
            sums[1] += gx * y;
            sums[2] += gx;
            sums[3] += gy * x;
            sums[4] += gy * y;
            sums[5] += gy;
          }
          std::copy(sums, sums + 6, theta_rows + (r * s.P + p) * 6);
        }
      }
    }
  });
}

at::Tensor part_warp_cpu(const at::Tensor& feat, const at::Tensor& theta, const at::Tensor& mask,
                         c10::string_view mode) {
  const Sizes s = part_warp_host::check_inputs(feat, theta, mask, mode);
  const at::Tensor coeffs = part_warp_host::theta_for_kernels(theta, feat);
  at::Tensor out = at::empty({s.N, s.C, s.H, s.W}, feat.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, feat.scalar_type(), "part_warp_cpu", [&] {
    const Inputs<scalar_t, at::opmath_type<scalar_t>> in(feat, coeffs, mask);
    if (s.bilinear) {
      forward_kernel<scalar_t, true>(in, s, out.mutable_data_ptr<scalar_t>());
    } else {
      forward_kernel<scalar_t, false>(in, s, out.mutable_data_ptr<scalar_t>());
    }
  });
  return out;
}

at::Tensor part_warp_backward_feat_cpu(const at::Tensor& grad_out, const at::Tensor& feat,
                                       const at::Tensor& theta, const at::Tensor& mask,
                                       c10::string_view mode) {
  const Sizes s = part_warp_host::check_inputs(feat, theta, mask, mode, grad_out);
  const at::Tensor coeffs = part_warp_host::theta_for_kernels(theta, feat);
  at::Tensor grad_feat = at::zeros({s.N, s.C, s.Hin, s.Win}, feat.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, feat.scalar_type(),
                                  "part_warp_backward_feat_cpu", [&] {
    const Inputs<scalar_t, at::opmath_type<scalar_t>> in(feat, coeffs, mask);
    const scalar_t* g = grad_out.const_data_ptr<scalar_t>();
    scalar_t* gf = grad_feat.mutable_data_ptr<scalar_t>();
    if (s.bilinear) {
      backward_feat_kernel<scalar_t, true>(in, s, g, grad_out.strides(), gf);
    } else {
      backward_feat_kernel<scalar_t, false>(in, s, g, grad_out.strides(), gf);
    }
  });
  return grad_feat;
}

std::tuple<at::Tensor, at::Tensor> part_warp_backward_params_cpu(
    const at::Tensor& grad_out, const at::Tensor& feat, const at::Tensor& theta,
    const at::Tensor& mask, c10::string_view mode) {
  const Sizes s = part_warp_host::check_inputs(feat, theta, mask, mode, grad_out);
  const at::Tensor coeffs = part_warp_host::theta_for_kernels(theta, feat);
  at::Tensor grad_mask = at::empty({s.N, s.P, s.H, s.W}, mask.options());
  // Nearest sampling is piecewise constant in theta: its gradient is zero (as in grid_sample).
  at::Tensor theta_rows = at::zeros({s.N, s.bilinear ? s.H : 0, s.P, 6},
                                    theta.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, feat.scalar_type(),
                                  "part_warp_backward_params_cpu", [&] {
    const Inputs<scalar_t, at::opmath_type<scalar_t>> in(feat, coeffs, mask);
    const scalar_t* g = grad_out.const_data_ptr<scalar_t>();
    scalar_t* gm = grad_mask.mutable_data_ptr<scalar_t>();
    if (s.bilinear) {
      backward_params_kernel<scalar_t, true>(in, s, g, grad_out.strides(), gm,
                                             theta_rows.mutable_data_ptr<double>());
    } else {
      backward_params_kernel<scalar_t, false>(in, s, g, grad_out.strides(), gm, nullptr);
    }
  });
  at::Tensor grad_theta = theta_rows.sum(1).view({s.N, s.P, 2, 3}).to(theta.scalar_type());
  return {grad_theta, grad_mask};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> part_warp_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& feat, const at::Tensor& theta,
    const at::Tensor& mask, c10::string_view mode) {
  auto [grad_theta, grad_mask] = part_warp_backward_params_cpu(grad_out, feat, theta, mask, mode);
  return {part_warp_backward_feat_cpu(grad_out, feat, theta, mask, mode), grad_theta, grad_mask};
}

// --- The CUDA kernels' per-thread code, run serially on the CPU ---------------------------------
// Every (sample, channel tile, pixel) in turn calls forward_tile / backward_tile of part_warp.h,
// the functions the CUDA kernels call per thread, with a sink that adds where the GPU uses atomics
// and warp sums. Only for tests: it checks the GPU's code path on a machine without a GPU,
// including the float accumulation buffer of bf16/fp16 grad_feat (rounded once at the end).

template <typename scalar_t>
using EmulationArgs = TileArgs<scalar_t, at::opmath_type<scalar_t>, int64_t>;

template <typename scalar_t>
EmulationArgs<scalar_t> emulation_args(const Sizes& s, const at::Tensor& feat,
                                       const at::Tensor& coeffs, const at::Tensor& mask,
                                       const at::Tensor& grad_out) {
  EmulationArgs<scalar_t> a;
  a.feat = feat.const_data_ptr<scalar_t>();
  a.fs_n = feat.stride(0), a.fs_c = feat.stride(1), a.fs_h = feat.stride(2), a.fs_w = feat.stride(3);
  a.theta = coeffs.const_data_ptr<at::opmath_type<scalar_t>>();
  a.mask = mask.const_data_ptr<scalar_t>();
  a.ms_n = mask.stride(0), a.ms_p = mask.stride(1), a.ms_h = mask.stride(2), a.ms_w = mask.stride(3);
  a.grad_out = grad_out.defined() ? grad_out.const_data_ptr<scalar_t>() : nullptr;
  a.gs_n = grad_out.defined() ? grad_out.stride(0) : 0;
  a.gs_c = grad_out.defined() ? grad_out.stride(1) : 0;
  a.gs_h = grad_out.defined() ? grad_out.stride(2) : 0;
  a.gs_w = grad_out.defined() ? grad_out.stride(3) : 0;
  a.N = s.N, a.C = s.C, a.Hin = s.Hin, a.Win = s.Win, a.P = s.P, a.H = s.H, a.W = s.W;
  return a;
}

template <typename acc_t>
struct EmulationSink {
  bool want_feat = true, want_params = true;
  acc_t* grad_feat;  // (N, C, Hin, Win)
  acc_t* grad_mask;  // (N, P, H, W)
  acc_t* theta_sums;  // (N, P, 6)
  int64_t C, plane_size, P, H, W;

  void feat(int64_t n, int64_t c, int64_t offset, acc_t value) {
    grad_feat[(n * C + c) * plane_size + offset] += value;
  }
  void part(int64_t n, int64_t p, int64_t x, int64_t y, bool active, acc_t d_mask, acc_t d_x,
            acc_t d_y) {
    if (!active) {
      return;
    }
    grad_mask[((n * P + p) * H + y) * W + x] += d_mask;
    const acc_t xf = static_cast<acc_t>(x), yf = static_cast<acc_t>(y);
    const acc_t terms[6] = {d_x * xf, d_x * yf, d_x, d_y * xf, d_y * yf, d_y};
    for (int k = 0; k < 6; ++k) {
      theta_sums[(n * P + p) * 6 + k] += terms[k];
    }
  }
};

template <typename Body>
void for_each_thread(const Sizes& s, Body body) {
  for (int64_t n = 0; n < s.N; ++n) {
    for (int64_t c0 = 0; c0 < s.C; c0 += kCudaTileChannels) {
      for (int64_t y = 0; y < s.H; ++y) {
        for (int64_t x = 0; x < s.W; ++x) {
          body(n, c0, x, y);
        }
      }
    }
  }
}

at::Tensor part_warp_cuda_emulation(const at::Tensor& feat, const at::Tensor& theta,
                                    const at::Tensor& mask, c10::string_view mode) {
  const Sizes s = part_warp_host::check_inputs(feat, theta, mask, mode);
  const at::Tensor coeffs = part_warp_host::theta_for_kernels(theta, feat);
  at::Tensor out = at::empty({s.N, s.C, s.H, s.W}, feat.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, feat.scalar_type(), "part_warp_emulation", [&] {
    const auto a = emulation_args<scalar_t>(s, feat, coeffs, mask, at::Tensor());
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    for_each_thread(s, [&](int64_t n, int64_t c0, int64_t x, int64_t y) {
      if (s.bilinear) {
        forward_tile<kCudaTileChannels, true>(a, n, c0, x, y, o);
      } else {
        forward_tile<kCudaTileChannels, false>(a, n, c0, x, y, o);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> part_warp_backward_cuda_emulation(
    const at::Tensor& grad_out, const at::Tensor& feat, const at::Tensor& theta,
    const at::Tensor& mask, c10::string_view mode) {
  const Sizes s = part_warp_host::check_inputs(feat, theta, mask, mode, grad_out);
  const at::Tensor coeffs = part_warp_host::theta_for_kernels(theta, feat);
  const auto acc_options = coeffs.options();
  at::Tensor grad_feat = at::zeros({s.N, s.C, s.Hin, s.Win}, acc_options);
  at::Tensor grad_mask = at::zeros({s.N, s.P, s.H, s.W}, acc_options);
  at::Tensor theta_sums = at::zeros({s.N, s.P, 2, 3}, acc_options);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, feat.scalar_type(), "part_warp_backward_emulation", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto a = emulation_args<scalar_t>(s, feat, coeffs, mask, grad_out);
    EmulationSink<acc_t> sink;
    sink.grad_feat = grad_feat.mutable_data_ptr<acc_t>();
    sink.grad_mask = grad_mask.mutable_data_ptr<acc_t>();
    sink.theta_sums = theta_sums.mutable_data_ptr<acc_t>();
    sink.C = s.C, sink.plane_size = s.Hin * s.Win, sink.P = s.P, sink.H = s.H, sink.W = s.W;
    for_each_thread(s, [&](int64_t n, int64_t c0, int64_t x, int64_t y) {
      if (s.bilinear) {
        backward_tile<kCudaTileChannels, true>(a, n, c0, x, y, true, sink);
      } else {
        backward_tile<kCudaTileChannels, false>(a, n, c0, x, y, true, sink);
      }
    });
  });
  return {grad_feat.to(feat.scalar_type()), theta_sums.to(theta.scalar_type()),
          grad_mask.to(mask.scalar_type())};
}

}  // namespace

TORCH_LIBRARY(msgen, m) {
  // The fake (shape) kernels and the autograd formula are registered in Python.
  m.set_python_module("msgen.ops.part_warp");
  m.def("part_warp(Tensor feat, Tensor theta, Tensor mask, str mode) -> Tensor");
  m.def(
      "part_warp_backward_feat(Tensor grad_out, Tensor feat, Tensor theta, Tensor mask, str mode)"
      " -> Tensor");
  m.def(
      "part_warp_backward_params(Tensor grad_out, Tensor feat, Tensor theta, Tensor mask, "
      "str mode) -> (Tensor, Tensor)");
  m.def(
      "part_warp_backward(Tensor grad_out, Tensor feat, Tensor theta, Tensor mask, str mode)"
      " -> (Tensor, Tensor, Tensor)");
  // Test-only: the CUDA kernels' per-thread code run serially on CPU tensors (see above).
  m.def("part_warp_cuda_emulation(Tensor feat, Tensor theta, Tensor mask, str mode) -> Tensor");
  m.def(
      "part_warp_backward_cuda_emulation(Tensor grad_out, Tensor feat, Tensor theta, Tensor mask, "
      "str mode) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(msgen, CPU, m) {
  m.impl("part_warp", &part_warp_cpu);
  m.impl("part_warp_backward_feat", &part_warp_backward_feat_cpu);
  m.impl("part_warp_backward_params", &part_warp_backward_params_cpu);
  m.impl("part_warp_backward", &part_warp_backward_cpu);
  m.impl("part_warp_cuda_emulation", &part_warp_cuda_emulation);
  m.impl("part_warp_backward_cuda_emulation", &part_warp_backward_cuda_emulation);
}

}  // namespace msgen
