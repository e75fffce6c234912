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
/// Runs a kernel on CUDA tensors. The compiler half (libheed) attaches one
/// to every kernel heed_compile makes: it keeps the variant, compiles it for
/// the GPU it meets and caches the loaded module. Kernels loaded from
/// artifacts have none (they hold CPU code only).
class DeviceLauncher {
public:
  virtual ~DeviceLauncher() = default;
  /// Launches on tensors of CUDA device `deviceId` (already checked against
  /// the kernel) on `stream`; returns when the kernel has finished. HEED_OK,
  /// or the status with the message recorded by fail().
  virtual heed_status launch(const AttentionArgs &args, int32_t deviceId,
                             void *stream) const = 0;
};

/// A C handle owning a reference to the CPU kernel `kernel` and, if given,
/// the launcher for CUDA tensors.
heed_kernel *wrap(std::shared_ptr<LoadedKernel> kernel,
                  std::shared_ptr<const DeviceLauncher> device = nullptr);
/// A C handle for a kernel with no CPU code: it runs on CUDA tensors only.
heed_kernel *wrapDeviceOnly(const KernelInfo &info, const std::string &target,
                            std::shared_ptr<const DeviceLauncher> device);

} // namespace heed::capi

#endif
