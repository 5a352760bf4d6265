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
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

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
// (Hin * Win + kTaps rows of cb values in the accumulation type; row Hin * Win + k is zeros, the
// target of tap k when it falls outside feat, so the inner loops have no branch per tap and the
// taps of one part never share a row). Then for each output pixel it lists the parts whose mask is
// nonzero there (most pixels: the torso and at most one limb), and the lowest part whose mask is 0
// there (it contributes exactly 0); each listed part's footprint and tap weights are computed once
// and applied to all cb channels by loops over contiguous channels, which the compiler vectorises.
// Bytes: feat is read once per task (a task owns its channels), mask P values per pixel per task,
// out written once; the backward also reads grad_out once and writes grad_feat once. The scratch
// is per thread (cb * Hin * Win values, 1 MB at 32 x 128 x 64; the backward's second scratch for
// grad_feat as much again) and one output row works on a few source rows of it, which stay in cache.

// The channel loops below touch kTaps rows of each scratch that never overlap (distinct taps, or
// distinct zero rows for taps outside feat) and no other memory they write; the compiler cannot
// prove it of pointers computed from run-time offsets, so it is told (otherwise it adds an overlap
// test per call and keeps a scalar copy of each loop).
#if defined(__clang__)
#define MSGEN_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define MSGEN_IVDEP _Pragma("GCC ivdep")
#else
#define MSGEN_IVDEP
#endif

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

// The copies between channel planes and the channels-last scratch are transposes, done in tiles of
// kTransposeTile x kTransposeTile values so that both sides are touched in runs of consecutive
// values rather than one value per cache line on the strided side; float to float with a
// contiguous source goes 4 x 4 through SSE registers (4 loads, 8 shuffles, 4 stores per 16
// values), which x86-64 always has.
constexpr int64_t kTransposeTile = 8;

// dst[j * ds + r] = src[r * ss + j * step] for r < rows, j < cols.
template <typename src_t, typename dst_t>
void transpose(const src_t* src, int64_t ss, int64_t step, int64_t rows, int64_t cols, dst_t* dst,
               int64_t ds) {
  int64_t r0 = 0, j0 = 0;
#if defined(__SSE2__)
  if constexpr (std::is_same_v<src_t, float> && std::is_same_v<dst_t, float>) {
    if (step == 1) {
      for (; r0 + 4 <= rows; r0 += 4) {
        const float* s = src + r0 * ss;
        float* d = dst + r0;
        for (int64_t j = 0; j + 4 <= cols; j += 4) {
          __m128 a = _mm_loadu_ps(s + j), b = _mm_loadu_ps(s + ss + j);
          __m128 c = _mm_loadu_ps(s + 2 * ss + j), e = _mm_loadu_ps(s + 3 * ss + j);
          _MM_TRANSPOSE4_PS(a, b, c, e);
          _mm_storeu_ps(d + j * ds, a);
          _mm_storeu_ps(d + (j + 1) * ds, b);
          _mm_storeu_ps(d + (j + 2) * ds, c);
          _mm_storeu_ps(d + (j + 3) * ds, e);
        }
      }
      j0 = cols / 4 * 4;  // left: rows [r0, rows) of every column, columns [j0, cols) of the rest
      for (int64_t r = 0; r < r0; ++r) {
        for (int64_t j = j0; j < cols; ++j) {
          dst[j * ds + r] = src[r * ss + j];
        }
      }
      j0 = 0;
    }
  }
#endif
  constexpr int64_t T = kTransposeTile;
  for (int64_t rt = r0; rt < rows; rt += T) {
    const int64_t nr = std::min(T, rows - rt);
    for (int64_t jt = j0; jt < cols; jt += T) {
      const int64_t nj = std::min(T, cols - jt);
      const src_t* s = src + rt * ss + jt * step;
      dst_t* d = dst + jt * ds + rt;
      for (int64_t r = 0; r < nr; ++r) {
        for (int64_t j = 0; j < nj; ++j) {
          d[j * ds + r] = static_cast<dst_t>(s[r * ss + j * step]);
        }
      }
    }
  }
}

// dst[i * ld + c] = src[c * cs + i * is] for c < count, i < len.
template <typename src_t, typename dst_t>
void to_channels_last(const src_t* src, int64_t cs, int64_t is, int64_t count, int64_t len,
                      dst_t* dst, int64_t ld) {
  transpose(src, cs, is, count, len, dst, ld);
}

// dst[c * cs + i] = src[i * ld + c] for c < count, i < len.
template <typename src_t, typename dst_t>
void from_channels_last(const src_t* src, int64_t ld, int64_t count, int64_t len, dst_t* dst,
                        int64_t cs) {
  transpose(src, ld, 1, len, count, dst, cs);
}

// One listed part at one pixel: the scratch offsets of its taps (row Hin * Win + k for a tap k
// outside feat), their weights and the mask value; m == 0 marks the lowest part that is 0 there.
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
  std::vector<acc_t> feat;        // (Hin * Win + kTaps, cb): the last kTaps rows are zeros
  std::vector<acc_t> grad;        // (Hin * Win + kTaps, cb): the last rows take the outside taps
  std::vector<acc_t> row;         // (W, cb): out (forward) or grad_out (backward) of one row
  std::vector<acc_t> best, value; // (cb)
  std::vector<int32_t> winner;    // (cb)
  std::vector<acc_t> row_mask;    // (P, W): mask values of the parts nonzero somewhere on the row
  std::vector<int32_t> row_parts; // (P): those parts, ascending
  std::vector<Entry<acc_t, kTaps>> entries;  // (W * (P + 1)) at most
  std::vector<int32_t> first_entry;          // (W + 1): pixel x lists entries [first[x], first[x+1])

  BlockScratch(const Sizes& s, int64_t cb, bool backward)
      : feat((s.Hin * s.Win + kTaps) * cb),
        grad(backward ? (s.Hin * s.Win + kTaps) * cb : 0),
        row(s.W * cb),
        best(cb),
        value(cb),
        winner(cb),
        row_mask(s.P * s.W),
        row_parts(s.P),
        entries(s.W * (s.P + 1)),
        first_entry(s.W + 1) {}
};

template <typename scalar_t, typename acc_t>
void load_channels_last(const Inputs<scalar_t, acc_t>& in, const Sizes& s, int64_t n, int64_t c0,
                        int64_t cb, int kTaps, acc_t* dst) {
  const scalar_t* planes = in.plane(n, c0);
  for (int64_t yi = 0; yi < s.Hin; ++yi) {
    to_channels_last(planes + yi * in.fs[2], in.fs[1], in.fs[3], cb, s.Win, dst + yi * s.Win * cb,
                     cb);
  }
  const int64_t plane = s.Hin * s.Win;
  std::fill(dst + plane * cb, dst + (plane + kTaps) * cb, acc_t(0));
}

// The part lists of output row (n, y), in part order per pixel (ties go to the lowest part). The
// parts that are 0 on the whole row (most of them: a limb covers few rows) are set aside once per
// row; only the lowest of them can be listed, as the pixel's zero part.
template <bool kBilinear, typename scalar_t, typename acc_t, int kTaps>
void list_parts(const Inputs<scalar_t, acc_t>& in, const Sizes& s, int64_t n, int64_t y,
                int64_t cb, BlockScratch<acc_t, kTaps>& sc) {
  const int64_t W = s.W, outside = s.Hin * s.Win * cb;
  int32_t active = 0, row_zero = -1;
  for (int64_t p = 0; p < s.P; ++p) {
    const scalar_t* m = in.mask_row(n, p, y);
    acc_t* values = sc.row_mask.data() + active * W;
    if (in.ms[3] == 1) {  // the usual layout: a loop the compiler vectorises
      for (int64_t x = 0; x < W; ++x) {
        values[x] = static_cast<acc_t>(m[x]);
      }
    } else {
      for (int64_t x = 0; x < W; ++x) {
        values[x] = static_cast<acc_t>(m[x * in.ms[3]]);
      }
    }
    int32_t nonzero = 0;
    for (int64_t x = 0; x < W; ++x) {
      nonzero |= values[x] != acc_t(0);
    }
    if (nonzero) {
      sc.row_parts[active++] = static_cast<int32_t>(p);
    } else if (row_zero < 0) {
      row_zero = static_cast<int32_t>(p);
    }
  }
  int32_t count = 0;
  for (int64_t x = 0; x < W; ++x) {
    sc.first_entry[x] = count;
    // The pixel's zero part: the lowest of row_zero and the row's parts that are 0 at x, listed
    // in its place among the nonzero parts.
    int32_t zero = row_zero;
    bool zero_seen = false, zero_listed = false;
    for (int32_t k = 0; k < active; ++k) {
      const int32_t p = sc.row_parts[k];
      const acc_t m = sc.row_mask[k * W + x];
      if (m == acc_t(0)) {
        if (!zero_seen) {
          zero_seen = true;
          zero = zero < 0 ? p : std::min(zero, p);
        }
        continue;
      }
      if (!zero_listed && zero >= 0 && zero < p) {
        zero_listed = true;
        Entry<acc_t, kTaps>& z = sc.entries[count++];
        z.m = acc_t(0);
        z.part = zero;
      }
      Entry<acc_t, kTaps>& e = sc.entries[count++];
      e.m = m;
      e.part = p;
      const Footprint<acc_t> f =
          locate<kBilinear>(source_point(in.theta + (n * s.P + p) * 6, x, y), s.Hin, s.Win);
      for (int k = 0; k < kTaps; ++k) {
        const bool inside = f.valid & (1u << k);
        e.offset[k] = inside ? (int64_t(tap_y(f.y0, k)) * s.Win + tap_x(f.x0, k)) * cb
                             : outside + k * cb;
        e.weight[k] = tap_weight<kBilinear>(f, k);
      }
    }
    if (!zero_listed && zero >= 0) {
      Entry<acc_t, kTaps>& z = sc.entries[count++];
      z.m = acc_t(0);
      z.part = zero;
    }
  }
  sc.first_entry[W] = count;
}

// value(c) = m * sample of entry e at channel c (the sum over the taps in tap order, as sample()),
// the one place the forward and the backward recompute it. Everything it reads is copied into the
// closure and the pointers are __restrict__: otherwise the compiler must assume that the loop's
// stores alias e or the taps, and the channel loops stay scalar.
template <typename acc_t, int kTaps>
inline auto entry_value(const Entry<acc_t, kTaps>& e, const acc_t* feat) {
  const acc_t m = e.m;
  const acc_t* __restrict__ t0 = feat + e.offset[0];
  const acc_t w0 = e.weight[0];
  if constexpr (kTaps == 4) {
    const acc_t* __restrict__ t1 = feat + e.offset[1];
    const acc_t* __restrict__ t2 = feat + e.offset[2];
    const acc_t* __restrict__ t3 = feat + e.offset[3];
    const acc_t w1 = e.weight[1], w2 = e.weight[2], w3 = e.weight[3];
    return [=](int64_t c) { return m * (((w0 * t0[c] + w1 * t1[c]) + w2 * t2[c]) + w3 * t3[c]); };
  } else {
    return [=](int64_t c) { return m * (w0 * t0[c]); };
  }
}

// v[c] = m * sample of entry e for the cb channels.
template <typename acc_t, int kTaps>
inline void sample_entry(const Entry<acc_t, kTaps>& e, const acc_t* feat, int64_t cb,
                         acc_t* __restrict__ v) {
  const auto value = entry_value(e, feat);
  MSGEN_IVDEP  // v aliases no tap; through the closure the compiler cannot see that, and checks at run time
  for (int64_t c = 0; c < cb; ++c) {
    v[c] = value(c);
  }
}

// best[c] (and winner[c] when wanted) = the max over pixel x's listed parts, the `replaces` rule;
// v is room for one part's values. The zero part is merged as the constant 0, without a sample.
template <bool kWinner, typename acc_t, int kTaps>
inline void max_at_pixel(const BlockScratch<acc_t, kTaps>& sc, int64_t x, int64_t cb,
                         acc_t* __restrict__ v, acc_t* __restrict__ best,
                         int32_t* __restrict__ winner) {
  const acc_t* feat = sc.feat.data();
  bool first = true;
  for (int32_t i = sc.first_entry[x]; i < sc.first_entry[x + 1]; ++i) {
    const Entry<acc_t, kTaps>& e = sc.entries[i];
    const int32_t part = e.part;
    if (first) {
      if (e.m == acc_t(0)) {
        std::fill(best, best + cb, acc_t(0));
      } else {
        sample_entry(e, feat, cb, best);
      }
      if constexpr (kWinner) {
        std::fill(winner, winner + cb, part);
      }
      first = false;
    } else if (e.m == acc_t(0)) {
      for (int64_t c = 0; c < cb; ++c) {
        const bool take = replaces(acc_t(0), best[c]);
        best[c] = take ? acc_t(0) : best[c];
        if constexpr (kWinner) {
          winner[c] = take ? part : winner[c];
        }
      }
    } else {
      sample_entry(e, feat, cb, v);
      for (int64_t c = 0; c < cb; ++c) {
        const bool take = replaces(v[c], best[c]);
        best[c] = take ? v[c] : best[c];
        if constexpr (kWinner) {
          winner[c] = take ? part : winner[c];
        }
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
    BlockScratch<acc_t, kTaps> sc(s, cb, /*backward=*/false);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, c0 = (task % blocks) * cb;
      const int64_t count = std::min(cb, s.C - c0);
      load_channels_last(in, s, n, c0, count, kTaps, sc.feat.data());
      for (int64_t y = 0; y < s.H; ++y) {
        list_parts<kBilinear>(in, s, n, y, count, sc);
        for (int64_t x = 0; x < s.W; ++x) {
          max_at_pixel<false>(sc, x, count, sc.value.data(), sc.row.data() + x * count, nullptr);
        }
        from_channels_last(sc.row.data(), count, count, s.W,
                           out + ((n * s.C + c0) * s.H + y) * s.W, s.H * s.W);
      }
    }
  });
}

// keep ? v : 0 as a bit mask. Written as a conditional, GCC moves the product that computes v into
// the branch and then, under its default -ftrapping-math, neither executes it unconditionally nor
// vectorises the loop; the mask keeps the channel loops branch-free.
template <typename T>
inline T keep_if(bool keep, T v) {
  using bits_t = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;
  static_assert(sizeof(T) == sizeof(bits_t), "keep_if: float or double");
  bits_t b;
  std::memcpy(&b, &v, sizeof b);
  b &= bits_t(0) - bits_t(keep);
  std::memcpy(&v, &b, sizeof b);
  return v;
}

// Which channels a pixel with one nonzero part passes to that part: all of them (no part is 0
// there), or those where the part's value v beats the zero part's 0 by the `replaces` rule, the
// zero part listed before it (kZeroFirst: replaces(v, 0), i.e. v > 0 or NaN, i.e. !(v <= 0)) or
// after it (kZeroAfter: !replaces(0, v), i.e. v >= 0 or NaN, i.e. !(v < 0)). The single
// comparisons leave the loop free of branches, so the compiler vectorises it.
enum class LoneRule { kAlways, kZeroFirst, kZeroAfter };

template <LoneRule kRule, typename acc_t>
inline bool lone_part_wins(acc_t v) {
  if constexpr (kRule == LoneRule::kZeroFirst) {
    return !(v <= acc_t(0));
  } else if constexpr (kRule == LoneRule::kZeroAfter) {
    return !(v < acc_t(0));
  } else {
    return true;
  }
}

// grad_feat of entry e at one pixel: for each channel c that e wins (wins(c), inlined into the loop
// so that the test and the scatter vectorise together), d_k[c] += grad_out[c] * m * w_k for its
// kTaps taps; a channel it does not win adds 0.
template <typename acc_t, int kTaps, typename Wins>
inline void scatter_taps(const Entry<acc_t, kTaps>& e, acc_t* grad, const acc_t* __restrict__ g,
                         int64_t cb, Wins wins) {
  const acc_t m = e.m;
  acc_t* __restrict__ d0 = grad + e.offset[0];
  const acc_t w0 = e.weight[0];
  if constexpr (kTaps == 4) {
    acc_t* __restrict__ d1 = grad + e.offset[1];
    acc_t* __restrict__ d2 = grad + e.offset[2];
    acc_t* __restrict__ d3 = grad + e.offset[3];
    const acc_t w1 = e.weight[1], w2 = e.weight[2], w3 = e.weight[3];
    MSGEN_IVDEP
    for (int64_t c = 0; c < cb; ++c) {
      const acc_t share = keep_if(wins(c), g[c] * m);
      d0[c] += share * w0;
      d1[c] += share * w1;
      d2[c] += share * w2;
      d3[c] += share * w3;
    }
  } else {
    MSGEN_IVDEP
    for (int64_t c = 0; c < cb; ++c) {
      const acc_t share = keep_if(wins(c), g[c] * m);
      d0[c] += share * w0;
    }
  }
}

// A pixel whose only nonzero part is e: it wins the channels where kRule says its value beats the
// zero part's 0 (every channel under kAlways), its value recomputed from the taps in the same loop.
template <LoneRule kRule, typename acc_t, int kTaps>
inline void scatter_lone(const Entry<acc_t, kTaps>& e, const acc_t* feat, acc_t* grad,
                         const acc_t* __restrict__ g, int64_t cb) {
  if constexpr (kRule == LoneRule::kAlways) {
    scatter_taps(e, grad, g, cb, [](int64_t) { return true; });
  } else {
    const auto value = entry_value(e, feat);
    scatter_taps(e, grad, g, cb, [=](int64_t c) { return lone_part_wins<kRule>(value(c)); });
  }
}

// An entry at a pixel with several nonzero parts: the channels it won in max_at_pixel (winner[c]).
template <typename acc_t, int kTaps>
inline void scatter_winner(const Entry<acc_t, kTaps>& e, const int32_t* __restrict__ winner,
                           acc_t* grad, const acc_t* __restrict__ g, int64_t cb) {
  const int32_t part = e.part;
  scatter_taps(e, grad, g, cb, [=](int64_t c) { return winner[c] == part; });
}

// grad_feat: the task of (n, channel block) finds each pixel's winners again and scatters
// grad_out * mask * weight into a channels-last accumulation-type scratch of its own channels (no
// atomics: no other task writes them), rounded once into grad_feat at the end. Most pixels have
// one nonzero part besides their zero part; there the winner test and the scatter are one loop
// (scatter_lone), elsewhere the winners are found first (max_at_pixel) and each part scatters the
// channels it wins. Only the winner's taps receive a nonzero share; a part that is 0 at a pixel
// passes no gradient to feat.
template <typename scalar_t, bool kBilinear>
void backward_feat_kernel(const Inputs<scalar_t, at::opmath_type<scalar_t>>& in, const Sizes& s,
                          const scalar_t* grad_out, at::IntArrayRef gs, scalar_t* grad_feat) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kTaps = TapCount<kBilinear>::value;
  const int64_t cb = channel_block(s);
  const int64_t blocks = (s.C + cb - 1) / cb;
  const int64_t plane = s.Hin * s.Win;
  at::parallel_for(0, s.N * blocks, 1, [&](int64_t begin, int64_t end) {
    BlockScratch<acc_t, kTaps> sc(s, cb, /*backward=*/true);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, c0 = (task % blocks) * cb;
      const int64_t count = std::min(cb, s.C - c0);
      load_channels_last(in, s, n, c0, count, kTaps, sc.feat.data());
      acc_t* grad = sc.grad.data();
      std::fill(grad, grad + (plane + kTaps) * count, acc_t(0));
      for (int64_t y = 0; y < s.H; ++y) {
        list_parts<kBilinear>(in, s, n, y, count, sc);
        to_channels_last(grad_out + n * gs[0] + c0 * gs[1] + y * gs[2], gs[1], gs[3], count, s.W,
                         sc.row.data(), count);
        for (int64_t x = 0; x < s.W; ++x) {
          const int32_t first = sc.first_entry[x], last = sc.first_entry[x + 1];
          const acc_t* g = sc.row.data() + x * count;
          const Entry<acc_t, kTaps>* e = sc.entries.data() + first;
          if (last - first == 1) {
            if (e[0].m != acc_t(0)) {  // the one part (P = 1): it wins every channel
              scatter_lone<LoneRule::kAlways>(e[0], sc.feat.data(), grad, g, count);
            }
          } else if (last - first == 2 && (e[0].m == acc_t(0) || e[1].m == acc_t(0))) {
            if (e[0].m == acc_t(0)) {
              scatter_lone<LoneRule::kZeroFirst>(e[1], sc.feat.data(), grad, g, count);
            } else {
              scatter_lone<LoneRule::kZeroAfter>(e[0], sc.feat.data(), grad, g, count);
            }
          } else {
            int32_t* winner = sc.winner.data();
            max_at_pixel<true>(sc, x, count, sc.value.data(), sc.best.data(), winner);
            for (int32_t i = 0; i < last - first; ++i) {
              if (e[i].m != acc_t(0)) {
                scatter_winner(e[i], winner, grad, g, count);
              }
            }
          }
        }
      }
      from_channels_last(grad, count, count, plane, grad_feat + (n * s.C + c0) * plane, plane);
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
