// msgen::part_warp: the host-side helpers shared by the CPU op (part_warp.cpp), the CUDA op
// (part_warp_cuda.cu) and the test-only CPU emulation of the CUDA per-thread code
// (testing/part_warp_emulation.cpp): argument checks and the backward's chunk plan.
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>

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

int64_t feat_buffer_budget() {
  const char* hook = std::getenv("MSGEN_WARP_FEAT_BUFFER_BYTES");
  if (hook == nullptr || *hook == '\0') {
    return kFeatBufferBytes;
  }
  char* end = nullptr;
  const long long bytes = std::strtoll(hook, &end, 10);
  TORCH_CHECK_VALUE(end != hook && *end == '\0' && bytes > 0,
                    "MSGEN_WARP_FEAT_BUFFER_BYTES must be a positive integer, got '", hook, "'");
  return static_cast<int64_t>(bytes);
}

FeatChunks plan_feat_chunks(const Sizes& s, int64_t feat_element_size, int64_t acc_element_size,
                            bool same_type, int64_t budget) {
  const int64_t sample_bytes = std::max<int64_t>(s.C * s.Hin * s.Win * acc_element_size, 1);
  const int64_t out_bytes = s.N * s.C * s.H * s.W * feat_element_size;
  const int64_t N = std::max<int64_t>(s.N, 1);
  const int64_t samples = std::clamp<int64_t>(std::min(budget, out_bytes) / sample_bytes, 1, N);
  return {samples, samples >= s.N && same_type};
}

FeatBuffers make_feat_buffers(const Sizes& s, const at::Tensor& feat,
                              const at::TensorOptions& acc_options) {
  FeatBuffers b;
  const bool same_type = acc_options.dtype() == feat.dtype();
  b.plan = plan_feat_chunks(s, feat.element_size(), acc_options.dtype().itemsize(), same_type,
                            feat_buffer_budget());
  b.grad_feat = b.plan.in_place ? at::zeros({s.N, s.C, s.Hin, s.Win}, feat.options())
                                : at::empty({s.N, s.C, s.Hin, s.Win}, feat.options());
  b.buffer = b.plan.in_place ? b.grad_feat
                             : at::empty({b.plan.samples, s.C, s.Hin, s.Win}, acc_options);
  return b;
}

}  // namespace part_warp_host
}  // namespace msgen
