// heed-run's two GPU runtimes (--target=cuda|rocm), for the forward's
// runOnGPU and the backward's runBackwardOnGPU: what differs per platform
// (its buffers, modules, runtime, chip and compiler target).
#ifndef HEED_TOOLS_HEED_RUN_GPUBACKENDS_H
#define HEED_TOOLS_HEED_RUN_GPUBACKENDS_H

#include "heed/Compiler/GPU.h"
#include "heed/Runtime/CUDA.h"
#include "heed/Runtime/GPUImage.h"
#include "heed/Runtime/HIP.h"

#include "llvm/ADT/StringRef.h"

#include <string>

namespace heed::run {

struct CUDABackend {
  using Buffer = cuda::DeviceBuffer;
  using Module = cuda::KernelModule;
  static constexpr GPUPlatform kPlatform = GPUPlatform::CUDA;
  static constexpr const char *kName = "cuda"; ///< an artifact entry's prefix
  static bool available(std::string &why) { return cuda::driver(why) != nullptr; }
  static std::string deviceChip(std::string &why) { return gpuChip(kPlatform, 0, why); }
  /// The compiler's target for `chip` and `kind`.
  static llvm::Expected<GPUTarget> target(llvm::StringRef chip, GPUKernelKind kind) {
    auto parsed = CUDATarget::parse(chip.str());
    if (!parsed)
      return parsed.takeError();
    return GPUTarget{GPUVendor::NVIDIA, parsed->chip, kind};
  }
};

struct HIPBackend {
  using Buffer = hip::DeviceBuffer;
  using Module = hip::KernelModule;
  static constexpr GPUPlatform kPlatform = GPUPlatform::HIP;
  static constexpr const char *kName = "hip";
  static bool available(std::string &why) { return hip::runtime(why) != nullptr; }
  static std::string deviceChip(std::string &why) { return gpuChip(kPlatform, 0, why); }
  /// (No chip: gfx942. Without ld.lld, compileGPUEntry says so: ROCm loads
  /// only code objects.)
  static llvm::Expected<GPUTarget> target(llvm::StringRef chip, GPUKernelKind kind) {
    auto parsed = AMDGPUTarget::parse(chip.empty() ? "gfx942" : chip.str());
    if (!parsed)
      return parsed.takeError();
    return GPUTarget{GPUVendor::AMD, parsed->chip, kind, parsed->mfma};
  }
};

} // namespace heed::run

#endif
