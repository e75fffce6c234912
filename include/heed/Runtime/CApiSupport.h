// Glue shared by the two halves of the C API (heed.h): the runtime half in
// heed_runtime and the compiler half in libheed.
#ifndef HEED_RUNTIME_CAPISUPPORT_H
#define HEED_RUNTIME_CAPISUPPORT_H

#include "heed/Runtime/Launch.h"
#include "heed/heed.h"

#include <memory>
#include <string>

namespace heed::capi {

/// Records `message` as this thread's last error and returns `status`.
heed_status fail(heed_status status, const std::string &message);
/// Clears the last error and returns HEED_OK.
heed_status ok();
/// "the CPU", "CUDA device 0", "ROCm device 1": where tensors of that
/// heed_device_type and id live, for messages.
std::string deviceName(int32_t deviceType, int32_t deviceId);

/// Runs a kernel on GPU tensors (CUDA or ROCm). The compiler half (libheed)
/// attaches one to every kernel heed_compile makes: it keeps the variant,
/// compiles it for the GPU it meets and caches the loaded module. Kernels
/// loaded from artifacts have none (they hold CPU code only).
class DeviceLauncher {
public:
  virtual ~DeviceLauncher() = default;
  /// Launches on tensors of device `deviceId` of heed_device_type
  /// `deviceType` (already checked against the kernel) on `stream`; returns
  /// when the kernel has finished. HEED_OK, or the status with the message
  /// recorded by fail().
  virtual heed_status launch(const AttentionArgs &args, int32_t deviceType, int32_t deviceId,
                             void *stream) const = 0;
  /// The tensors it runs on, for messages: "CUDA tensors (device type 2)".
  virtual std::string devices() const = 0;
};

/// A C handle owning a reference to the CPU kernel `kernel` and, if given,
/// the launcher for GPU tensors.
heed_kernel *wrap(std::shared_ptr<LoadedKernel> kernel,
                  std::shared_ptr<const DeviceLauncher> device = nullptr);
/// A C handle for a kernel with no CPU code: it runs on GPU tensors only.
heed_kernel *wrapDeviceOnly(const KernelInfo &info, const std::string &target,
                            std::shared_ptr<const DeviceLauncher> device);

} // namespace heed::capi

#endif
