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
// CPU layout of the work: out and grad_feat by tasks of (sample, channel block) over a
// channels-last copy of the block (see "forward and grad_feat" below); grad_mask and grad_theta by
// output rows, with the footprints and mask values of all P parts of a row computed once and reused
// for every channel. The host-side checks are in part_warp_host.cpp.
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
namespace {

using part_warp_host::Sizes;
using namespace part_warp_math;

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

// --- forward and grad_feat: channel blocks, channels last -------------------------------------
// Work division: one task per (sample n, block of cb consecutive channels), tasks spread over the
// threads by at::parallel_for. A task copies feat[n, c0:c0+cb] into a channels-last scratch
// (Hin * Win + 1 rows of cb values in the accumulation type; the extra row is zeros, the target of
// every tap outside feat, so the inner loops have no branch per tap). Then for each output pixel it
// lists the parts whose mask is nonzero there (most pixels: the torso and at most one limb), and
// the lowest part whose mask is 0 there (it contributes exactly 0); each listed part's footprint
// and tap weights are computed once and applied to all cb channels by loops over contiguous
// channels, which the compiler vectorises. Bytes: feat is read once per task (a task owns its
// channels), mask P values per pixel per task, out written once; the scratch is per thread and
// stays in cache for the shapes of this project (cb * Hin * Win values, 1 MB at 32 x 128 x 64).

// Channels per task: enough to amortise the per-pixel part list over a long vector loop, few enough
// that a task's channels-last scratch stays in cache; fewer when that leaves a thread without work.
constexpr int64_t kMaxChannelsPerBlock = 64;
constexpr int64_t kMinChannelsPerBlock = 8;

int64_t channel_block(const Sizes& s) {
  int64_t cb = std::min<int64_t>(s.C, kMaxChannelsPerBlock);
  const int64_t want_tasks = 2 * static_cast<int64_t>(at::get_num_threads());
  while (cb > kMinChannelsPerBlock && s.N * ((s.C + cb - 1) / cb) < want_tasks) {
    cb = (cb / 2 + 7) / 8 * 8;
  }
  return std::max<int64_t>(cb, 1);
}

// One listed part at one pixel: the scratch offsets of its taps (the zero row for a tap outside
// feat), their weights and the mask value; m == 0 marks the lowest part that is 0 there.
template <typename acc_t, int kTaps>
struct Entry {
  int64_t offset[kTaps];
  acc_t weight[kTaps];
  acc_t m;
  int32_t part;
};

// Per-thread scratch of a task: channels-last feat (and grad_feat) and one row's part lists.
template <typename acc_t, int kTaps>
struct BlockScratch {
  std::vector<acc_t> feat;      // (Hin * Win + 1, cb): the last row is zeros
  std::vector<acc_t> grad;      // (Hin * Win + 1, cb): the last row receives the outside taps
  std::vector<acc_t> row;       // (W, cb): out (forward) or grad_out (backward) of one row
  std::vector<acc_t> best;      // (cb)
  std::vector<int32_t> winner;  // (cb)
  std::vector<Entry<acc_t, kTaps>> entries;  // (W * (P + 1)) at most
  std::vector<int32_t> first_entry;          // (W + 1): pixel x lists entries [first[x], first[x+1])
};

template <typename scalar_t, typename acc_t>
void load_channels_last(const Inputs<scalar_t, acc_t>& in, const Sizes& s, int64_t n, int64_t c0,
                        int64_t cb, acc_t* dst) {
  const int64_t plane = s.Hin * s.Win;
  for (int64_t c = 0; c < cb; ++c) {
    const scalar_t* src = in.plane(n, c0 + c);
    for (int64_t yi = 0; yi < s.Hin; ++yi) {
      const scalar_t* line = src + yi * in.fs[2];
      acc_t* out = dst + yi * s.Win * cb + c;
      for (int64_t xi = 0; xi < s.Win; ++xi) {
        out[xi * cb] = static_cast<acc_t>(line[xi * in.fs[3]]);
      }
    }
  }
  std::fill(dst + plane * cb, dst + (plane + 1) * cb, acc_t(0));
}

// The part lists of output row (n, y), in part order per pixel (ties go to the lowest part).
template <bool kBilinear, typename scalar_t, typename acc_t, int kTaps>
void list_parts(const Inputs<scalar_t, acc_t>& in, const Sizes& s, int64_t n, int64_t y,
                int64_t cb, BlockScratch<acc_t, kTaps>& sc) {
  const int64_t zero_row = s.Hin * s.Win * cb;
  int32_t count = 0;
  for (int64_t x = 0; x < s.W; ++x) {
    sc.first_entry[x] = count;
    bool zero_listed = false;
    for (int64_t p = 0; p < s.P; ++p) {
      const acc_t m = static_cast<acc_t>(in.mask_row(n, p, y)[x * in.ms[3]]);
      if (m == acc_t(0)) {
        if (!zero_listed) {
          zero_listed = true;
          Entry<acc_t, kTaps>& e = sc.entries[count++];
          e.m = acc_t(0);
          e.part = static_cast<int32_t>(p);
        }
        continue;
      }
      Entry<acc_t, kTaps>& e = sc.entries[count++];
      e.m = m;
      e.part = static_cast<int32_t>(p);
      const Footprint<acc_t> f =
          locate<kBilinear>(source_point(in.theta + (n * s.P + p) * 6, x, y), s.Hin, s.Win);
      for (int k = 0; k < kTaps; ++k) {
        const bool inside = f.valid & (1u << k);
        e.offset[k] = inside ? (int64_t(tap_y(f.y0, k)) * s.Win + tap_x(f.x0, k)) * cb : zero_row;
        e.weight[k] = tap_weight<kBilinear>(f, k);
      }
    }
  }
  sc.first_entry[s.W] = count;
}

// v[c] = m * sample of entry e for the cb channels (sum over the taps in tap order, as sample()).
// (Everything the loops read is copied to locals and the pointers are __restrict__: otherwise the
// compiler must assume that v aliases e or the taps, and the loops stay scalar.)
template <typename acc_t, int kTaps>
inline void sample_entry(const Entry<acc_t, kTaps>& e, const acc_t* feat, int64_t cb,
                         acc_t* __restrict__ v) {
  const acc_t m = e.m;
  const acc_t* __restrict__ t0 = feat + e.offset[0];
  const acc_t w0 = e.weight[0];
  if constexpr (kTaps == 4) {
    const acc_t* __restrict__ t1 = feat + e.offset[1];
    const acc_t* __restrict__ t2 = feat + e.offset[2];
    const acc_t* __restrict__ t3 = feat + e.offset[3];
    const acc_t w1 = e.weight[1], w2 = e.weight[2], w3 = e.weight[3];
    for (int64_t c = 0; c < cb; ++c) {
      v[c] = m * (((w0 * t0[c] + w1 * t1[c]) + w2 * t2[c]) + w3 * t3[c]);
    }
  } else {
    for (int64_t c = 0; c < cb; ++c) {
      v[c] = m * (w0 * t0[c]);
    }
  }
}

// best[c] (and winner[c] when wanted) = the max over pixel x's listed parts, the `replaces` rule.
template <bool kWinner, typename acc_t, int kTaps>
inline void max_at_pixel(const BlockScratch<acc_t, kTaps>& sc, int64_t x, int64_t cb,
                         acc_t* __restrict__ v, acc_t* __restrict__ best,
                         int32_t* __restrict__ winner) {
  const acc_t* feat = sc.feat.data();
  bool first = true;
  for (int32_t i = sc.first_entry[x]; i < sc.first_entry[x + 1]; ++i) {
    const Entry<acc_t, kTaps>& e = sc.entries[i];
    if (e.m == acc_t(0)) {
      std::fill(v, v + cb, acc_t(0));
    } else {
      sample_entry(e, feat, cb, v);
    }
    if (first) {
      std::copy(v, v + cb, best);
      if constexpr (kWinner) {
        std::fill(winner, winner + cb, e.part);
      }
      first = false;
      continue;
    }
    const int32_t part = e.part;
    for (int64_t c = 0; c < cb; ++c) {
      const bool take = replaces(v[c], best[c]);
      best[c] = take ? v[c] : best[c];
      if constexpr (kWinner) {
        winner[c] = take ? part : winner[c];
      }
    }
  }
}

template <typename scalar_t, bool kBilinear>
void forward_kernel(const Inputs<scalar_t, at::opmath_type<scalar_t>>& in, const Sizes& s,
                    scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kTaps = TapCount<kBilinear>::value;
  const int64_t cb = channel_block(s);
  const int64_t blocks = (s.C + cb - 1) / cb;
  at::parallel_for(0, s.N * blocks, 1, [&](int64_t begin, int64_t end) {
    BlockScratch<acc_t, kTaps> sc;
    sc.feat.resize((s.Hin * s.Win + 1) * cb);
    sc.row.resize(s.W * cb);
    sc.best.resize(cb);
    sc.entries.resize(s.W * (s.P + 1));
    sc.first_entry.resize(s.W + 1);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, c0 = (task % blocks) * cb;
      const int64_t count = std::min(cb, s.C - c0);
      load_channels_last(in, s, n, c0, count, sc.feat.data());
      for (int64_t y = 0; y < s.H; ++y) {
        list_parts<kBilinear>(in, s, n, y, count, sc);
        for (int64_t x = 0; x < s.W; ++x) {
          max_at_pixel<false>(sc, x, count, sc.best.data(), sc.row.data() + x * count, nullptr);
        }
        for (int64_t c = 0; c < count; ++c) {
          scalar_t* o = out + ((n * s.C + c0 + c) * s.H + y) * s.W;
          const acc_t* r = sc.row.data() + c;
          for (int64_t x = 0; x < s.W; ++x) {
            o[x] = static_cast<scalar_t>(r[x * count]);
          }
        }
      }
    }
  });
}

// grad_feat: the task of (n, channel block) recomputes each pixel's winners, then scatters
// grad_out * mask * weight into a channels-last accumulation-type scratch of its own channels (no
// atomics: no other task writes them), rounded once into grad_feat at the end.
template <typename scalar_t, bool kBilinear>
void backward_feat_kernel(const Inputs<scalar_t, at::opmath_type<scalar_t>>& in, const Sizes& s,
                          const scalar_t* grad_out, at::IntArrayRef gs, scalar_t* grad_feat) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kTaps = TapCount<kBilinear>::value;
  const int64_t cb = channel_block(s);
  const int64_t blocks = (s.C + cb - 1) / cb;
  const int64_t plane = s.Hin * s.Win;
  at::parallel_for(0, s.N * blocks, 1, [&](int64_t begin, int64_t end) {
    BlockScratch<acc_t, kTaps> sc;
    sc.feat.resize((plane + 1) * cb);
    sc.grad.resize((plane + 1) * cb);
    sc.row.resize(s.W * cb);
    sc.best.resize(cb);
    sc.winner.resize(cb);
    sc.entries.resize(s.W * (s.P + 1));
    sc.first_entry.resize(s.W + 1);
    std::vector<acc_t> v(cb), share(cb);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, c0 = (task % blocks) * cb;
      const int64_t count = std::min(cb, s.C - c0);
      load_channels_last(in, s, n, c0, count, sc.feat.data());
      acc_t* grad = sc.grad.data();
      std::fill(grad, grad + (plane + 1) * count, acc_t(0));
      for (int64_t y = 0; y < s.H; ++y) {
        list_parts<kBilinear>(in, s, n, y, count, sc);
        for (int64_t c = 0; c < count; ++c) {
          const scalar_t* g = grad_out + n * gs[0] + (c0 + c) * gs[1] + y * gs[2];
          acc_t* r = sc.row.data() + c;
          for (int64_t x = 0; x < s.W; ++x) {
            r[x * count] = static_cast<acc_t>(g[x * gs[3]]);
          }
        }
        for (int64_t x = 0; x < s.W; ++x) {
          const int32_t first = sc.first_entry[x], last = sc.first_entry[x + 1];
          const acc_t* g = sc.row.data() + x * count;
          int32_t* winner = sc.winner.data();
          if (last - first == 1) {
            std::fill(winner, winner + count, sc.entries[first].part);  // a single candidate wins
          } else {
            max_at_pixel<true>(sc, x, count, v.data(), sc.best.data(), winner);
          }
          for (int32_t i = first; i < last; ++i) {
            const Entry<acc_t, kTaps>& e = sc.entries[i];
            if (e.m == acc_t(0)) {
              continue;  // a part that is 0 here passes no gradient to feat
            }
            acc_t* __restrict__ sh = share.data();
            const int32_t* __restrict__ won = winner;
            const acc_t* __restrict__ up = g;
            const acc_t m = e.m;
            const int32_t part = e.part;
            for (int64_t c = 0; c < count; ++c) {
              sh[c] = won[c] == part ? up[c] * m : acc_t(0);
            }
            for (int k = 0; k < kTaps; ++k) {
              acc_t* __restrict__ t = grad + e.offset[k];
              const acc_t* __restrict__ add = sh;
              const acc_t w = e.weight[k];
              for (int64_t c = 0; c < count; ++c) {
                t[c] += add[c] * w;
              }
            }
          }
        }
      }
      for (int64_t c = 0; c < count; ++c) {
        scalar_t* dst = grad_feat + (n * s.C + c0 + c) * plane;
        const acc_t* src = grad + c;
        for (int64_t i = 0; i < plane; ++i) {
          dst[i] = static_cast<scalar_t>(src[i * count]);
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
  // Every element is written by the task that owns its (sample, channel block): no zero fill.
  at::Tensor grad_feat = at::empty({s.N, s.C, s.Hin, s.Win}, feat.options());
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
}

TORCH_LIBRARY_IMPL(msgen, CPU, m) {
  m.impl("part_warp", &part_warp_cpu);
  m.impl("part_warp_backward_feat", &part_warp_backward_feat_cpu);
  m.impl("part_warp_backward_params", &part_warp_backward_params_cpu);
  m.impl("part_warp_backward", &part_warp_backward_cpu);
}

}  // namespace msgen
