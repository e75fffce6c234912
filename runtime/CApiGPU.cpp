// The runtime half of the C API on GPU tensors: the launch sequence shared by
// kernels compiled at run time and kernels loaded from artifacts
// (ImageLauncher), the launcher of artifacts with GPU entries, and
// heed_synchronize. No MLIR or LLVM here.
#include "heed/Runtime/CApiSupport.h"

#include <map>
#include <mutex>

namespace heed::capi {

std::optional<GPUPlatform> platformOfDevice(int32_t deviceType) {
  if (deviceType == HEED_DEVICE_CUDA)
    return GPUPlatform::CUDA;
  if (deviceType == HEED_DEVICE_ROCM)
    return GPUPlatform::HIP;
  return std::nullopt;
}

std::string tensorsOf(GPUPlatform platform) {
  return platform == GPUPlatform::CUDA ? "CUDA tensors (device type 2)"
                                       : "ROCm tensors (device type 10)";
}

heed_status ImageLauncher::launch(const AttentionArgs &args, int32_t deviceType,
                                  int32_t deviceId, void *stream) const {
  std::optional<GPUPlatform> platform = platformOfDevice(deviceType);
  std::string where = deviceName(deviceType, deviceId), chip;
  if (!platform || !serves(*platform, chip))
    return fail(HEED_ERROR_UNSUPPORTED,
                "heed_attention: kernel '" + kernelInfo.name + "' was compiled for " +
                    builtFor() + " only; its tensors must be " + devices() +
                    ", but they are on " + where +
                    " (compile it with target NULL or \"cpu\", or export it with a target "
                    "for that platform, to run it where its tensors are)");
  if (std::string why = gpuUnavailable(*platform); !why.empty())
    return fail(HEED_ERROR_UNSUPPORTED, "heed_attention: cannot run on " + where +
                                            " (device type " + std::to_string(deviceType) +
                                            "): " + why);
  if (std::string why = checkGPUDevice(*platform, args, deviceId); !why.empty())
    return fail(HEED_ERROR_INVALID_ARGUMENT, "heed_attention: " + why);
  if (chip.empty()) {
    std::lock_guard<std::mutex> lock(chipsMutex);
    std::string &known = chips[{*platform, deviceId}];
    if (known.empty()) {
      std::string why;
      known = gpuChip(*platform, deviceId, why);
      if (known.empty())
        return fail(HEED_ERROR_RUN, "heed_attention: " + why);
    }
    chip = known;
  }
  std::shared_ptr<const GPUImage> img;
  if (heed_status status = image(*platform, chip, img))
    return status;
  // Before anything that would invalidate a capture on the stream (a
  // module's first load); HEED_ERROR_UNSUPPORTED, not the launch's RUN.
  if (std::string why = gpuCaptureRefusal(*platform, deviceId, stream); !why.empty())
    return fail(HEED_ERROR_UNSUPPORTED, "heed_attention: " + why);
  if (std::string why = img->load(deviceId); !why.empty())
    return fail(HEED_ERROR_LOAD, "heed_attention: loading variant '" + kernelInfo.name + "' (" +
                                     img->entry().target + ", " +
                                     img->entry().info.gpu->format + ") on " + where + ": " +
                                     why);
  if (std::string err = img->launch(kernelInfo, args, deviceId, stream,
                                    GPULaunchOptions::fromEnvironment());
      !err.empty())
    return fail(HEED_ERROR_RUN, "heed_attention: " + err);
  return HEED_OK;
}

namespace {

/// A kernel loaded from an artifact with GPU entries.
class ArtifactLauncher final : public ImageLauncher {
public:
  ArtifactLauncher(KernelInfo info, Artifact gpuEntries)
      : ImageLauncher(std::move(info)), entries(std::move(gpuEntries)) {}

  std::string devices() const override {
    std::string text;
    for (GPUPlatform p : {GPUPlatform::CUDA, GPUPlatform::HIP}) {
      std::string chip;
      if (serves(p, chip))
        text += (text.empty() ? "" : " or ") + tensorsOf(p);
    }
    return text;
  }

protected:
  bool serves(GPUPlatform platform, std::string &chip) const override {
    chip.clear();
    for (const ArtifactEntry &e : entries.entries)
      if (gpuPlatformOf(e.target) == platform)
        return true;
    return false;
  }
  std::string builtFor() const override {
    std::string text;
    for (const ArtifactEntry &e : entries.entries)
      text += (text.empty() ? "" : ", ") + e.target + " (" + e.info.gpu->format + ")";
    return text;
  }
  heed_status image(GPUPlatform platform, const std::string &chip,
                    std::shared_ptr<const GPUImage> &out) const override {
    std::lock_guard<std::mutex> lock(mutex);
    auto &cached = images[{platform, chip}];
    if (!cached) {
      std::string why;
      const ArtifactEntry *entry = selectGPUEntry(entries, gpuTargetPrefix(platform), chip, why);
      if (!entry)
        return fail(HEED_ERROR_LOAD, "heed_attention: kernel '" + info().name + "': " + why);
      cached = std::make_shared<const GPUImage>(std::make_shared<const ArtifactEntry>(*entry));
    }
    out = cached;
    return HEED_OK;
  }

private:
  Artifact entries; ///< the GPU entries only
  mutable std::mutex mutex;
  mutable std::map<std::pair<GPUPlatform, std::string>, std::shared_ptr<const GPUImage>> images;
};

} // namespace

std::shared_ptr<const ImageLauncher> artifactLauncher(const Artifact &artifact) {
  Artifact gpu;
  for (const ArtifactEntry &e : artifact.entries)
    if (gpuPlatformOf(e.target) && e.info.gpu)
      gpu.entries.push_back(e);
  if (gpu.entries.empty())
    return nullptr;
  KernelInfo info = gpu.entries.front().info;
  info.gpu.reset();
  return std::make_shared<const ArtifactLauncher>(std::move(info), std::move(gpu));
}

} // namespace heed::capi

using namespace heed;

extern "C" heed_status heed_synchronize(int32_t deviceType, int32_t deviceId, void *stream) {
  std::optional<GPUPlatform> platform = capi::platformOfDevice(deviceType);
  if (!platform)
    return capi::fail(HEED_ERROR_INVALID_ARGUMENT,
                      "heed_synchronize: device type " + std::to_string(deviceType) +
                          " is not a GPU (CUDA: 2, ROCm: 10)");
  if (deviceId < 0)
    return capi::fail(HEED_ERROR_INVALID_ARGUMENT,
                      "heed_synchronize: negative device id " + std::to_string(deviceId));
  if (std::string why = gpuUnavailable(*platform); !why.empty())
    return capi::fail(HEED_ERROR_UNSUPPORTED, "heed_synchronize: " + why);
  if (std::string why = gpuCaptureRefusal(*platform, deviceId, stream); !why.empty())
    return capi::fail(HEED_ERROR_UNSUPPORTED, "heed_synchronize: " + why);
  if (std::string err = synchronizeGPU(*platform, deviceId, stream); !err.empty())
    return capi::fail(HEED_ERROR_RUN, "heed_synchronize: " + err);
  return capi::ok();
}
