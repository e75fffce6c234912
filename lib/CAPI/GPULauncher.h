// C API kernels on GPU tensors (CUDA and ROCm): the variant compiled for the
// chip the call meets, the loaded images kept in memory, launched by
// ImageLauncher (the runtime's sequence, shared with kernels loaded from
// artifacts). What differs between the platforms is a table in
// GPULauncher.cpp.
#ifndef HEED_CAPI_GPULAUNCHER_H
#define HEED_CAPI_GPULAUNCHER_H

#include "heed/Compiler/Compiler.h"
#include "heed/Compiler/GPU.h"
#include "heed/Runtime/CApiSupport.h"

#include "llvm/ADT/StringRef.h"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace heed::capi {

/// A platform a launcher serves, and the chip to compile for: "" takes it
/// from the device at the first launch (CUDA: its compute capability; ROCm:
/// gfx942, HIP has no arch query through heed's dlopen'ed API).
struct GPUChoice {
  GPUPlatform platform;
  std::string chip;
  /// heed_kernel_target's text: "cuda", "cuda:sm_90", "rocm", "rocm:gfx942".
  std::string label() const;
};

/// heed_compile's GPU-only targets: "cuda", "cuda:sm_XX", "rocm",
/// "rocm:gfxNNN". False when `target` names no GPU platform (a CPU target is
/// the caller's); else true with `choice` set, or with `error` set when the
/// chip is one heed cannot compile for.
bool parseGPUTarget(llvm::StringRef target, GPUChoice &choice, std::string &error);

/// Every GPU platform with the chip from the device: what a kernel with CPU
/// code also runs on.
std::vector<GPUChoice> everyGPU();

/// What one (variant, config, platform, chip) compiled and loaded to; shared
/// by every kernel handle of the same key.
struct GPUModuleSlot;

class GPULauncher final : public ImageLauncher {
public:
  /// Serves tensors of the platforms in `choices`. `shared`: find and keep
  /// the modules in the process-wide table and the images in the kernel
  /// cache, memory and disk (heed_compile's use_cache), else this launcher
  /// compiles and keeps its own.
  /// `kind`: which GPU kernel (heed_compile_options.gpu_kernel).
  GPULauncher(spec::Variant variant, KernelConfig config, std::vector<GPUChoice> choices,
              bool shared, GPUKernelKind kind);

  /// Compiles for every chip given now, so heed_compile reports what fails
  /// (modules are loaded at the first launch). HEED_OK or the failure.
  heed_status compileNow() const;

  std::string devices() const override;

protected:
  bool serves(GPUPlatform platform, std::string &chip) const override;
  std::string builtFor() const override;
  heed_status image(GPUPlatform platform, const std::string &chip,
                    std::shared_ptr<const GPUImage> &out) const override;

private:
  std::shared_ptr<GPUModuleSlot> slot(GPUPlatform platform, const std::string &chip) const;
  heed_status compile(GPUModuleSlot &slot, GPUPlatform platform,
                      const std::string &chip) const;

  spec::Variant variant;
  KernelConfig config;
  std::vector<GPUChoice> choices;
  bool shared;
  GPUKernelKind kind;
  mutable std::mutex mutex;
  /// By platform and chip.
  mutable std::map<std::pair<GPUPlatform, std::string>, std::shared_ptr<GPUModuleSlot>>
      slots;
};

/// Drops the process-wide table of GPU modules (heed_cache_clear); modules
/// that kernel handles still use stay loaded until those are released.
void clearGPUModules();

} // namespace heed::capi

#endif
