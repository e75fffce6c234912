// Compiling a variant for NVIDIA GPUs: the kernel module lowered through
// NVVM to PTX (LLVM's NVPTX backend), then to a cubin with ptxas when the
// CUDA toolkit is present. See docs/passes.md ("GPU").
#ifndef HEED_COMPILER_GPU_H
#define HEED_COMPILER_GPU_H

#include "heed/Compiler/Compiler.h"

#include "llvm/Support/Error.h"

#include <optional>
#include <string>

namespace heed {

/// An NVIDIA target: "sm_80", "sm_90", "sm_90a", ...
struct CUDATarget {
  std::string chip;
  static llvm::Expected<CUDATarget> parse(const std::string &name);
};

/// What the GPU compile produced.
struct GPUKernelBinary {
  std::string kernelName; ///< the entry point
  int64_t blockRows = 0;  ///< query rows per block (grid x = ceil(Sq / blockRows))
  int64_t threads = 0;    ///< threads per block
  bool tensorCores = false; ///< --attn-lower-to-nvgpu (else the SIMT baseline)
  std::string ptx;
  std::optional<std::string> cubin; ///< when ptxas was found
  std::string resources;            ///< ptxas -v: registers, shared memory, spills
};

/// Lowers `variant` to the module of --attn-lower-to-gpu (stage "gpu") or
/// all the way to PTX and, with ptxas, a cubin.
/// Which kernel: the tensor-core one where it applies (f16, head dims
/// multiples of 16 up to 128, no gate), else the SIMT baseline; or forced.
enum class GPUKernelKind { Auto, TensorCores, SIMT };
llvm::Expected<std::string> emitGPUModule(const spec::Variant &variant,
                                          const KernelConfig &config,
                                          GPUKernelKind kind = GPUKernelKind::Auto);
llvm::Expected<GPUKernelBinary> compileCUDA(const spec::Variant &variant,
                                            const KernelConfig &config,
                                            const CUDATarget &target,
                                            GPUKernelKind kind = GPUKernelKind::Auto);

/// ptxas from $HEED_PTXAS, $CUDA_HOME/bin, /usr/local/cuda/bin or PATH; "" if none.
std::string findPtxas();

} // namespace heed

#endif
