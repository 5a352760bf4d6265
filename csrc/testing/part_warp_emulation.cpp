// msgen._C_testing: the CUDA kernels' per-thread code of msgen::part_warp run serially on CPU
// tensors, for tests only (it is a module of its own, never loaded by the library; setup.py builds
// it beside msgen._C). Every (sample, channel tile, pixel) in turn calls forward_tile /
// backward_tile of part_warp.h, the functions each CUDA thread runs, with a sink that adds where
// the GPU uses atomics and warp sums; the backward runs the CUDA op's host chunk loop
// (for_each_feat_chunk, with its accumulation buffer and the MSGEN_WARP_FEAT_BUFFER_BYTES hook).
// So the GPU's code path is checked on a machine without a GPU.
//
// Byte counting: this file defines the access macros of part_warp.h before including it, so each
// load and store of the per-thread code is counted per tensor (bytes requested, and distinct bytes
// touched), and the sink counts the atomics. traffic() returns the counts of one call, which
// tests/test_part_warp.py compares with msgen/ops/byte_model.py.
#include <ATen/OpMathType.h>
#include <torch/extension.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_set>

namespace msgen {
namespace testing {

enum Tensor { feat, mask, theta, grad_out, out, kTensors };
constexpr const char* kNames[kTensors] = {"feat", "mask", "theta", "grad_out", "out"};

struct Traffic {
  std::array<int64_t, kTensors> requested{};  // bytes of every access, as each thread issues them
  std::array<std::unordered_set<uintptr_t>, kTensors> touched;  // distinct byte addresses
  std::array<int64_t, kTensors> touched_bytes{};
  int64_t feat_atomics = 0;  // grad_feat atomic adds (each a read-modify-write of acc_t)
  int64_t mask_atomics = 0;  // grad_mask atomic adds
};

Traffic* current = nullptr;  // set while traffic() runs one call (the emulation is serial)

template <typename T>
void count(Tensor t, const T* ptr) {
  if (current == nullptr) {
    return;
  }
  current->requested[t] += sizeof(T);
  if (current->touched[t].insert(reinterpret_cast<uintptr_t>(ptr)).second) {
    current->touched_bytes[t] += sizeof(T);
  }
}

template <typename T>
T counted_load(Tensor t, const T* ptr) {
  count(t, ptr);
  return *ptr;
}

template <typename T, typename V>
void counted_store(Tensor t, T* ptr, V value) {
  count(t, static_cast<const T*>(ptr));
  *ptr = value;
}

}  // namespace testing
}  // namespace msgen

#define MSGEN_WARP_LOAD(tensor, ptr) (::msgen::testing::counted_load(::msgen::testing::tensor, (ptr)))
#define MSGEN_WARP_STORE(tensor, ptr, value) \
  (::msgen::testing::counted_store(::msgen::testing::tensor, (ptr), (value)))
#define MSGEN_WARP_NAMESPACE counted_access
#include "../part_warp.h"

namespace msgen {
namespace testing {
namespace {

using part_warp_host::Sizes;
using namespace part_warp_math;

template <typename scalar_t>
using Args = TileArgs<scalar_t, at::opmath_type<scalar_t>, int64_t>;

template <typename scalar_t>
Args<scalar_t> make_args(const Sizes& s, const at::Tensor& feat_t, const at::Tensor& coeffs,
                         const at::Tensor& mask_t, const at::Tensor& grad_t) {
  Args<scalar_t> a;
  a.feat = feat_t.const_data_ptr<scalar_t>();
  a.fs_n = feat_t.stride(0), a.fs_c = feat_t.stride(1), a.fs_h = feat_t.stride(2), a.fs_w = feat_t.stride(3);
  a.theta = coeffs.const_data_ptr<at::opmath_type<scalar_t>>();
  a.mask = mask_t.const_data_ptr<scalar_t>();
  a.ms_n = mask_t.stride(0), a.ms_p = mask_t.stride(1), a.ms_h = mask_t.stride(2), a.ms_w = mask_t.stride(3);
  const bool g = grad_t.defined();
  a.grad_out = g ? grad_t.const_data_ptr<scalar_t>() : nullptr;
  a.gs_n = g ? grad_t.stride(0) : 0, a.gs_c = g ? grad_t.stride(1) : 0;
  a.gs_h = g ? grad_t.stride(2) : 0, a.gs_w = g ? grad_t.stride(3) : 0;
  a.N = s.N, a.C = s.C, a.Hin = s.Hin, a.Win = s.Win, a.P = s.P, a.H = s.H, a.W = s.W;
  return a;
}

// Adds where the CUDA sink uses atomics (grad_feat, grad_mask) and a warp sum + atomic (theta).
template <typename acc_t>
struct Sink {
  bool want_feat = true, want_params = true;
  acc_t* grad_feat = nullptr;  // (chunk samples, C, Hin, Win), sample n at n - n_begin
  int64_t n_begin = 0, C = 0, plane_size = 0;
  acc_t* grad_mask = nullptr;   // (N, P, H, W)
  acc_t* theta_sums = nullptr;  // (N, P, 6)
  int64_t P = 0, H = 0, W = 0;

  void feat(int64_t n, int64_t c, int64_t offset, acc_t value) {
    if (current != nullptr) {
      ++current->feat_atomics;
    }
    grad_feat[((n - n_begin) * C + c) * plane_size + offset] += value;
  }
  void part(int64_t n, int64_t p, int64_t x, int64_t y, bool active, acc_t d_mask, acc_t d_x,
            acc_t d_y) {
    if (!active) {
      return;
    }
    if (d_mask != acc_t(0)) {
      if (current != nullptr) {
        ++current->mask_atomics;
      }
      grad_mask[((n * P + p) * H + y) * W + x] += d_mask;
    }
    const acc_t xf = static_cast<acc_t>(x), yf = static_cast<acc_t>(y);
    const acc_t terms[6] = {d_x * xf, d_x * yf, d_x, d_y * xf, d_y * yf, d_y};
    for (int k = 0; k < 6; ++k) {
      theta_sums[(n * P + p) * 6 + k] += terms[k];
    }
  }
};

// The CUDA kernels' threads of samples [n_begin, n_end), one after another.
template <typename Body>
void for_each_thread(const Sizes& s, int64_t n_begin, int64_t n_end, Body body) {
  for (int64_t n = n_begin; n < n_end; ++n) {
    for (int64_t c0 = 0; c0 < s.C; c0 += kCudaTileChannels) {
      for (int64_t y = 0; y < s.H; ++y) {
        for (int64_t x = 0; x < s.W; ++x) {
          body(n, c0, x, y);
        }
      }
    }
  }
}

at::Tensor forward(const at::Tensor& feat_t, const at::Tensor& theta_t, const at::Tensor& mask_t,
                   const std::string& mode) {
  const Sizes s = part_warp_host::check_inputs(feat_t, theta_t, mask_t, mode);
  const at::Tensor coeffs = part_warp_host::theta_for_kernels(theta_t, feat_t);
  at::Tensor result = at::empty({s.N, s.C, s.H, s.W}, feat_t.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, feat_t.scalar_type(), "emulation", [&] {
    const auto a = make_args<scalar_t>(s, feat_t, coeffs, mask_t, at::Tensor());
    scalar_t* o = result.mutable_data_ptr<scalar_t>();
    for_each_thread(s, 0, s.N, [&](int64_t n, int64_t c0, int64_t x, int64_t y) {
      if (s.bilinear) {
        forward_tile<kCudaTileChannels, true>(a, n, c0, x, y, o);
      } else {
        forward_tile<kCudaTileChannels, false>(a, n, c0, x, y, o);
      }
    });
  });
  return result;
}

// As the CUDA op's backward: (grad_feat, grad_theta, grad_mask), undefined where not wanted.
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(const at::Tensor& grad_t,
                                                        const at::Tensor& feat_t,
                                                        const at::Tensor& theta_t,
                                                        const at::Tensor& mask_t,
                                                        const std::string& mode, bool want_feat,
                                                        bool want_params) {
  const Sizes s = part_warp_host::check_inputs(feat_t, theta_t, mask_t, mode, grad_t);
  const at::Tensor coeffs = part_warp_host::theta_for_kernels(theta_t, feat_t);
  const auto acc_options = coeffs.options();
  part_warp_host::FeatBuffers buffers;
  if (want_feat) {
    buffers = part_warp_host::make_feat_buffers(s, feat_t, acc_options);
  }
  at::Tensor mask_buffer, theta_sums;
  if (want_params) {
    mask_buffer = at::zeros({s.N, s.P, s.H, s.W}, acc_options);
    theta_sums = at::zeros({s.N, s.P, 2, 3}, acc_options);
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, feat_t.scalar_type(), "emulation_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto a = make_args<scalar_t>(s, feat_t, coeffs, mask_t, grad_t);
    Sink<acc_t> sink;
    sink.want_feat = want_feat, sink.want_params = want_params;
    sink.C = s.C, sink.plane_size = s.Hin * s.Win, sink.P = s.P, sink.H = s.H, sink.W = s.W;
    sink.grad_feat = want_feat ? buffers.buffer.mutable_data_ptr<acc_t>() : nullptr;
    sink.grad_mask = want_params ? mask_buffer.mutable_data_ptr<acc_t>() : nullptr;
    sink.theta_sums = want_params ? theta_sums.mutable_data_ptr<acc_t>() : nullptr;
    part_warp_host::for_each_feat_chunk(s, buffers, want_feat, [&](int64_t n0, int64_t n1) {
      sink.n_begin = n0;
      for_each_thread(s, n0, n1, [&](int64_t n, int64_t c0, int64_t x, int64_t y) {
        if (s.bilinear) {
          backward_tile<kCudaTileChannels, true>(a, n, c0, x, y, true, sink);
        } else {
          backward_tile<kCudaTileChannels, false>(a, n, c0, x, y, true, sink);
        }
      });
    });
  });
  at::Tensor grad_theta, grad_mask;
  if (want_params) {
    grad_theta = theta_sums.to(theta_t.scalar_type());
    grad_mask = mask_buffer.to(mask_t.scalar_type());
  }
  return {want_feat ? buffers.grad_feat : at::Tensor(), grad_theta, grad_mask};
}

// The chunk plan the CUDA backward would make for these inputs: (samples per chunk, in place).
std::tuple<int64_t, bool> feat_chunks(const at::Tensor& feat_t, const at::Tensor& theta_t,
                                      const at::Tensor& mask_t) {
  const Sizes s = part_warp_host::check_inputs(feat_t, theta_t, mask_t, "bilinear");
  const auto acc = part_warp_host::theta_for_kernels(theta_t, feat_t).options();
  const auto plan = part_warp_host::plan_feat_chunks(s, feat_t.element_size(),
                                                     acc.dtype().itemsize(),
                                                     acc.dtype() == feat_t.dtype(),
                                                     part_warp_host::feat_buffer_budget());
  return {plan.samples, plan.in_place};
}

// The bytes one forward (grad_out undefined) or one grad_feat-only backward moves, per tensor.
pybind11::dict traffic(const std::optional<at::Tensor>& grad_t, const at::Tensor& feat_t,
                       const at::Tensor& theta_t, const at::Tensor& mask_t, const std::string& mode) {
  Traffic t;
  current = &t;
  try {
    if (grad_t.has_value()) {
      backward(*grad_t, feat_t, theta_t, mask_t, mode, true, false);
    } else {
      forward(feat_t, theta_t, mask_t, mode);
    }
  } catch (...) {
    current = nullptr;
    throw;
  }
  current = nullptr;
  pybind11::dict requested, touched;
  for (int k = 0; k < kTensors; ++k) {
    requested[kNames[k]] = t.requested[k];
    touched[kNames[k]] = t.touched_bytes[k];
  }
  pybind11::dict result;
  result["requested"] = requested;
  result["touched"] = touched;
  result["feat_atomics"] = t.feat_atomics;
  result["mask_atomics"] = t.mask_atomics;
  return result;
}

}  // namespace
}  // namespace testing
}  // namespace msgen

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Test-only: the CUDA part_warp kernels' per-thread code run serially on the CPU";
  m.def("part_warp", &msgen::testing::forward, "The CUDA forward's threads, one after another.");
  m.def("part_warp_backward", &msgen::testing::backward,
        "The CUDA backward (its host chunk loop included): (grad_feat, grad_theta, grad_mask).");
  m.def("feat_chunks", &msgen::testing::feat_chunks,
        "The CUDA backward's chunk plan: (samples per chunk, in place).");
  m.def("traffic", &msgen::testing::traffic,
        "Bytes of one forward (grad_out None) or grad_feat backward: requested and touched per tensor.");
}
