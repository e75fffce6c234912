// Glue shared by the two halves of the C API (heed.h): the runtime half in
// heed_runtime and the compiler half in libheed.
#ifndef HEED_RUNTIME_CAPISUPPORT_H
#define HEED_RUNTIME_CAPISUPPORT_H

#include "heed/Runtime/GPUImage.h"
#include "heed/Runtime/Launch.h"
#include "heed/heed.h"

#include <map>
#include <memory>
#include <mutex>
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
/// compiles it for the GPU it meets and caches the loaded module. A kernel
/// loaded from an artifact with GPU entries gets one that picks the entry
/// for the device's chip (artifactLauncher).
class DeviceLauncher {
public:
  virtual ~DeviceLauncher() = default;
  /// Queues the kernel on tensors of device `deviceId` of heed_device_type
  /// `deviceType` (already checked against the kernel) on `stream` (see
  /// launchGPUAttention for when its own errors are reported). HEED_OK, or
  /// the status with the message recorded by fail().
  virtual heed_status launch(const AttentionArgs &args, int32_t deviceType, int32_t deviceId,
                             void *stream) const = 0;
  /// The tensors it runs on, for messages: "CUDA tensors (device type 2)".
  virtual std::string devices() const = 0;
};

/// The GPU platform of a heed_device_type (HEED_DEVICE_CUDA, _ROCM).
std::optional<GPUPlatform> platformOfDevice(int32_t deviceType);
/// "CUDA tensors (device type 2)".
std::string tensorsOf(GPUPlatform platform);

/// A DeviceLauncher whose kernel is a GPUImage per platform and chip: the
/// launch sequence of both launchers (the platform's runtime, the device of
/// the tensors, its chip, the image for it, loaded on the device, launched
/// with GPULaunchOptions::fromEnvironment()); a subclass finds the image.
class ImageLauncher : public DeviceLauncher {
public:
  explicit ImageLauncher(KernelInfo info) : kernelInfo(std::move(info)) {}
  heed_status launch(const AttentionArgs &args, int32_t deviceType, int32_t deviceId,
                     void *stream) const final;
  const KernelInfo &info() const { return kernelInfo; }

protected:
  /// Whether this kernel runs on `platform`'s tensors; `chip` is the chip it
  /// was built for there ("": the device's).
  virtual bool serves(GPUPlatform platform, std::string &chip) const = 0;
  /// "cuda:sm_90, rocm": what it was built for, for messages.
  virtual std::string builtFor() const = 0;
  /// The image for `chip`: HEED_OK, or the status with fail() recorded.
  virtual heed_status image(GPUPlatform platform, const std::string &chip,
                            std::shared_ptr<const GPUImage> &out) const = 0;

private:
  KernelInfo kernelInfo;
  /// Each device's chip (platform, device -> gpuChip), asked once per
  /// launcher: a ROCm device's is read from its properties, too dear for
  /// every call.
  mutable std::mutex chipsMutex;
  mutable std::map<std::pair<GPUPlatform, int32_t>, std::string> chips;
};

/// The launcher of a kernel loaded from `artifact`: each device takes the
/// entry selectGPUEntry picks for its chip. Null when the artifact has no
/// GPU entry.
std::shared_ptr<const ImageLauncher> artifactLauncher(const Artifact &artifact);

/// A C handle owning a reference to the CPU kernel `kernel` and, if given,
/// the launcher for GPU tensors.
heed_kernel *wrap(std::shared_ptr<LoadedKernel> kernel,
                  std::shared_ptr<const DeviceLauncher> device = nullptr);
/// A C handle for a kernel with no CPU code: it runs on GPU tensors only.
heed_kernel *wrapDeviceOnly(const KernelInfo &info, const std::string &target,
                            std::shared_ptr<const DeviceLauncher> device);

} // namespace heed::capi

#endif
