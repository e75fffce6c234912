// GPU images on devices, through CUDA or HIP (see GPUImage.h).
#include "heed/Runtime/GPUImage.h"

#include "heed/Runtime/CUDA.h"
#include "heed/Runtime/HIP.h"

#include <cstdio>
#include <cstdlib>
#include <type_traits>

namespace heed {

std::optional<GPUPlatform> gpuPlatformOf(const std::string &target) {
  if (target.rfind("cuda:", 0) == 0)
    return GPUPlatform::CUDA;
  if (target.rfind("hip:", 0) == 0)
    return GPUPlatform::HIP;
  return std::nullopt;
}

const char *gpuTargetPrefix(GPUPlatform platform) {
  return platform == GPUPlatform::CUDA ? "cuda" : "hip";
}

std::string gpuUnavailable(GPUPlatform platform) {
  std::string why;
  bool ok = platform == GPUPlatform::CUDA ? cuda::driver(why) != nullptr
                                          : hip::runtime(why) != nullptr;
  return ok ? "" : why;
}

std::string gpuChip(GPUPlatform platform, int device, std::string &error) {
  if (platform == GPUPlatform::CUDA) {
    int capability = cuda::computeCapability(device, error);
    return capability < 0 ? "" : "sm_" + std::to_string(capability);
  }
  if (!hip::runtime(error))
    return "";
  // $HEED_HIP_CHIP first (a chip the device's properties do not name right),
  // then the device's own, else gfx942.
  if (const char *chip = std::getenv("HEED_HIP_CHIP"); chip && *chip)
    return chip;
  std::string chip = hip::deviceChip(device, error);
  if (!error.empty())
    return "";
  return chip.empty() ? "gfx942" : chip;
}

std::string checkGPUDevice(GPUPlatform platform, const AttentionArgs &args, int device) {
  const char *name = platform == GPUPlatform::CUDA ? "CUDA" : "ROCm";
  std::string why;
  int actual = platform == GPUPlatform::CUDA ? cuda::deviceOf(args.q.data, why)
                                             : hip::deviceOf(args.q.data, why);
  if (actual < 0 && why.empty())
    return ""; // the runtime cannot tell: the caller's device id stands
  char pointer[32];
  std::snprintf(pointer, sizeof pointer, "%p", args.q.data);
  if (actual < 0)
    return std::string("q's data (") + pointer + ") is not memory of a " + name +
           " device: " + why;
  if (actual != device)
    return "the tensors are labelled " + std::string(name) + " device " +
           std::to_string(device) + ", but q's data (" + pointer + ") is on device " +
           std::to_string(actual);
  return "";
}

std::string gpuCaptureRefusal(GPUPlatform platform, int device, void *stream) {
  return platform == GPUPlatform::CUDA ? cuda::captureRefusal(device, stream)
                                       : hip::captureRefusal(device, stream);
}

std::string synchronizeGPU(GPUPlatform platform, int device, void *stream) {
  return platform == GPUPlatform::CUDA ? cuda::synchronize(device, stream)
                                       : hip::synchronize(device, stream);
}

/// A module of either runtime.
class GPUImage::Module {
public:
  virtual ~Module() = default;
  virtual std::string launch(const KernelInfo &info, const AttentionArgs &args, void *stream,
                             const GPULaunchOptions &options) const = 0;
  /// The backward: this module dQ's kernel, `dkdv` dK/dV's (of the same
  /// platform and device).
  virtual std::string launchBackward(const KernelInfo &info, const GPUBackwardTensors &args,
                                     const std::vector<unsigned> &gradients, const Module &dkdv,
                                     void *stream, const GPULaunchOptions &options) const = 0;
};

namespace {
template <typename KernelModule>
class PlatformModule final : public GPUImage::Module {
public:
  explicit PlatformModule(std::unique_ptr<KernelModule> module) : module(std::move(module)) {}
  std::string launch(const KernelInfo &info, const AttentionArgs &args, void *stream,
                     const GPULaunchOptions &options) const override {
    return module->launchAttention(info, args, stream, options);
  }
  std::string launchBackward(const KernelInfo &info, const GPUBackwardTensors &args,
                             const std::vector<unsigned> &gradients, const Module &dkdv,
                             void *stream, const GPULaunchOptions &options) const override {
    auto *other = dynamic_cast<const PlatformModule *>(&dkdv);
    if (!other)
      return "the backward's two kernels are of different platforms";
    return module->launchBackward(info, args, gradients, *other->module, stream, options);
  }

private:
  std::unique_ptr<KernelModule> module;
};

template <typename KernelModule>
std::shared_ptr<const GPUImage::Module> loadOn(const ArtifactEntry &entry, int device,
                                               std::string &error) {
  auto module = KernelModule::load(entry.binary, *entry.info.gpu, device, error);
  if (!module)
    return nullptr;
  return std::make_shared<PlatformModule<KernelModule>>(std::move(module));
}
} // namespace

GPUImage::GPUImage(std::shared_ptr<const ArtifactEntry> entry)
    : image(std::move(entry)),
      kind(gpuPlatformOf(image->target).value_or(GPUPlatform::CUDA)) {}

GPUImage::~GPUImage() = default;

std::string GPUImage::load(int device) const {
  std::lock_guard<std::mutex> lock(mutex);
  if (modules.count(device))
    return "";
  if (!image->info.gpu || !gpuPlatformOf(image->target))
    return "'" + image->target + "' is not a GPU image";
  std::string error;
  auto module = kind == GPUPlatform::CUDA ? loadOn<cuda::KernelModule>(*image, device, error)
                                          : loadOn<hip::KernelModule>(*image, device, error);
  if (!module)
    return error;
  modules[device] = std::move(module);
  return "";
}

std::shared_ptr<const GPUImage::Module> GPUImage::loaded(int device, std::string &error) const {
  if (!(error = load(device)).empty())
    return nullptr;
  std::lock_guard<std::mutex> lock(mutex);
  return modules.at(device);
}

std::string GPUImage::launch(const KernelInfo &info, const AttentionArgs &args, int device,
                             void *stream, const GPULaunchOptions &options) const {
  std::string error;
  auto module = loaded(device, error);
  return module ? module->launch(info, args, stream, options) : error;
}

std::string GPUImage::launchBackward(const KernelInfo &info, const GPUBackwardTensors &args,
                                     const std::vector<unsigned> &gradients,
                                     const GPUImage &dkdv, int device, void *stream,
                                     const GPULaunchOptions &options) const {
  std::string error;
  auto dq = loaded(device, error);
  auto other = dq ? dkdv.loaded(device, error) : nullptr;
  return other ? dq->launchBackward(info, args, gradients, *other, stream, options) : error;
}

} // namespace heed
