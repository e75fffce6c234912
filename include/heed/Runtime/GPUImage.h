// A GPU kernel image (an artifact entry holding a cubin, PTX or an HSACO)
// loaded on the devices it is launched on, through the runtime its target
// names (CUDA or HIP), and what both of the C API's GPU launchers (kernels
// compiled at run time, kernels loaded from artifacts) ask of devices. Part
// of heed_runtime: no MLIR or LLVM here.
#ifndef HEED_RUNTIME_GPUIMAGE_H
#define HEED_RUNTIME_GPUIMAGE_H

#include "heed/Runtime/Artifact.h"
#include "heed/Runtime/GPUAttentionLaunch.h"
#include "heed/Runtime/Launch.h"

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace heed {

enum class GPUPlatform { CUDA, HIP };

/// The platform of an artifact target: "cuda:<chip>" or "hip:<chip>".
std::optional<GPUPlatform> gpuPlatformOf(const std::string &target);
/// "cuda" or "hip": the prefix of its artifact targets.
const char *gpuTargetPrefix(GPUPlatform platform);

/// "" when the platform's runtime is loaded and sees a device, else why not.
std::string gpuUnavailable(GPUPlatform platform);

/// The chip `device` is, as artifact targets name it: "sm_<compute
/// capability>" on CUDA; on HIP, which gives heed no architecture query,
/// $HEED_HIP_CHIP or gfx942. "" with `error` saying why.
std::string gpuChip(GPUPlatform platform, int device, std::string &error);

/// "" when the tensors' memory is on `device`, as the runtime tells from q's
/// data pointer (CUDA: always; HIP: where hipPointerGetAttribute exists),
/// else what is wrong. `device` is the caller's device id (heed_tensor's
/// device_id); a tensor of another device, or host memory, is refused here
/// rather than faulting in the kernel.
std::string checkGPUDevice(GPUPlatform platform, const AttentionArgs &args, int device);

/// Waits for `stream` of `device` and reports the first kernel error heed
/// launches on it recorded since the last report.
std::string synchronizeGPU(GPUPlatform platform, int device, void *stream);
/// "" unless `stream` of `device` is being captured into a graph: then why
/// heed refuses to issue work on it (the C API asks before loading modules or
/// allocating for a call).
std::string gpuCaptureRefusal(GPUPlatform platform, int device, void *stream);

/// One image, a module per device, loaded at the first use on that device.
/// Thread-safe.
class GPUImage {
public:
  /// `entry` must be a GPU entry (target "cuda:..." or "hip:...", info.gpu).
  explicit GPUImage(std::shared_ptr<const ArtifactEntry> entry);
  ~GPUImage();

  /// Loads the image on `device` if it is not yet: "" or the loader's error.
  std::string load(int device) const;
  /// Queues the kernel on tensors of `device` (loaded first if needed).
  std::string launch(const KernelInfo &info, const AttentionArgs &args, int device, void *stream,
                     const GPULaunchOptions &options) const;
  /// Queues the backward (launchGPUBackward): this image the dQ kernel,
  /// `dkdv` the dK/dV kernel, both loaded on `device` first if needed. CUDA
  /// only (an HIP image says so).
  std::string launchBackward(const KernelInfo &info, const GPUBackwardTensors &args,
                             const std::vector<unsigned> &gradients, const GPUImage &dkdv,
                             int device, void *stream, const GPULaunchOptions &options) const;

  const ArtifactEntry &entry() const { return *image; }
  GPUPlatform platform() const { return kind; }

  class Module; ///< the image loaded on one device (CUDA or HIP)

private:
  /// The module on `device`, loaded first if needed; null with `error`.
  std::shared_ptr<const Module> loaded(int device, std::string &error) const;

  std::shared_ptr<const ArtifactEntry> image;
  GPUPlatform kind;
  mutable std::mutex mutex;
  mutable std::map<int, std::shared_ptr<const Module>> modules;
};

} // namespace heed

#endif
