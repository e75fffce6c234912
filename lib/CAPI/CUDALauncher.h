// C API kernels on CUDA tensors: the variant compiled for the GPU the call
// meets, the loaded modules kept in memory, launches on the caller's stream.
#ifndef HEED_CAPI_CUDALAUNCHER_H
#define HEED_CAPI_CUDALAUNCHER_H

#include "heed/Compiler/Compiler.h"
#include "heed/Runtime/CApiSupport.h"

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace heed::capi {

/// What one (variant, config, chip) compiled and loaded to; shared by every
/// kernel handle of the same key.
struct CUDAModuleSlot;

class CUDALauncher final : public DeviceLauncher {
public:
  /// `chip` "" takes the chip from the device's compute capability at the
  /// first launch ("sm_90" on an H100); "sm_XX" forces one. `shared`: find
  /// and keep the module in the process-wide table (heed_compile's
  /// use_cache), else this launcher keeps its own.
  CUDALauncher(spec::Variant variant, KernelConfig config, std::string chip, bool shared);

  /// Compiles for the forced chip now, so heed_compile reports what fails
  /// (the module is loaded at the first launch). HEED_OK or the failure.
  heed_status compileNow() const;

  heed_status launch(const AttentionArgs &args, int32_t deviceId, void *stream) const override;

  const KernelInfo &info() const { return kernelInfo; }

private:
  std::shared_ptr<CUDAModuleSlot> slot(const std::string &chip) const;
  heed_status compile(CUDAModuleSlot &slot, const std::string &chip) const;

  spec::Variant variant;
  KernelConfig config;
  KernelInfo kernelInfo;
  std::string fixedChip;
  bool shared;
  mutable std::mutex mutex;
  mutable std::map<std::string, std::shared_ptr<CUDAModuleSlot>> slots; ///< by chip
};

/// Drops the process-wide table of CUDA modules (heed_cache_clear); modules
/// that kernel handles still use stay loaded until those are released.
void clearCUDAModules();

} // namespace heed::capi

#endif
