// C API kernels on GPU tensors (CUDA and ROCm): the variant compiled for the
// chip the call meets, the loaded modules kept in memory, launches on the
// caller's stream. One code path; what differs between the platforms is a
// table of GPUPlatform entries in GPULauncher.cpp.
#ifndef HEED_CAPI_GPULAUNCHER_H
#define HEED_CAPI_GPULAUNCHER_H

#include "heed/Compiler/Compiler.h"
#include "heed/Runtime/CApiSupport.h"

#include "llvm/ADT/StringRef.h"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace heed::capi {

/// The GPU platforms of the C API, by the heed_device_type of their tensors.
enum class GPUPlatformKind { CUDA, ROCm };

/// A platform a launcher serves, and the chip to compile for: "" takes it
/// from the device at the first launch (CUDA: its compute capability; ROCm:
/// gfx942, HIP has no arch query through heed's dlopen'ed API).
struct GPUChoice {
  GPUPlatformKind platform;
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

class GPULauncher final : public DeviceLauncher {
public:
  /// Serves tensors of the platforms in `choices`. `shared`: find and keep
  /// the modules in the process-wide table and the images in the kernel
  /// cache, memory and disk (heed_compile's use_cache), else this launcher
  /// compiles and keeps its own.
  GPULauncher(spec::Variant variant, KernelConfig config, std::vector<GPUChoice> choices,
              bool shared);

  /// Compiles for every chip given now, so heed_compile reports what fails
  /// (modules are loaded at the first launch). HEED_OK or the failure.
  heed_status compileNow() const;

  heed_status launch(const AttentionArgs &args, int32_t deviceType, int32_t deviceId,
                     void *stream) const override;
  std::string devices() const override;

  const KernelInfo &info() const { return kernelInfo; }

private:
  std::shared_ptr<GPUModuleSlot> slot(GPUPlatformKind platform, const std::string &chip) const;
  heed_status compile(GPUModuleSlot &slot, GPUPlatformKind platform,
                      const std::string &chip) const;

  spec::Variant variant;
  KernelConfig config;
  KernelInfo kernelInfo;
  std::vector<GPUChoice> choices;
  bool shared;
  mutable std::mutex mutex;
  /// By platform and chip.
  mutable std::map<std::pair<GPUPlatformKind, std::string>, std::shared_ptr<GPUModuleSlot>>
      slots;
};

/// Drops the process-wide table of GPU modules (heed_cache_clear); modules
/// that kernel handles still use stay loaded until those are released.
void clearGPUModules();

} // namespace heed::capi

#endif
