// The Python module msgen._C. The ops themselves register with the dispatcher through
// TORCH_LIBRARY in their own files; importing this module loads them. build_info() reports what
// this binary was compiled against, so a mismatch can be named when it is loaded.
#include <torch/extension.h>

namespace {

pybind11::dict build_info() {
  pybind11::dict info;
  info["torch"] = MSGEN_TORCH_VERSION;
#ifdef MSGEN_WITH_CUDA
  info["with_cuda"] = true;
#else
  info["with_cuda"] = false;
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "msgen compiled ops (registered as torch.ops.msgen.*)";
  m.def("build_info", &build_info, "What this extension was compiled against.");
}
