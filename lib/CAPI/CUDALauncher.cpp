// C API kernels on CUDA tensors (see CUDALauncher.h).
#include "CUDALauncher.h"

#include "heed/Compiler/GPU.h"
#include "heed/Compiler/KernelCache.h"
#include "heed/Runtime/CUDA.h"
#include "heed/Runtime/Sha256.h"

#include <optional>
#include <unordered_map>

namespace heed::capi {

struct CUDAModuleSlot {
  std::mutex mutex; ///< held while compiling or loading
  std::optional<GPUKernelBinary> binary;
  std::unique_ptr<cuda::KernelModule> module; ///< set once, never replaced
};

namespace {

/// The process-wide table: one slot per (variant, config, chip, compiler).
struct ModuleTable {
  std::mutex mutex;
  std::unordered_map<std::string, std::shared_ptr<CUDAModuleSlot>> slots;
};

ModuleTable &table() {
  static ModuleTable *t = new ModuleTable(); // never destroyed: modules outlive exit order
  return *t;
}

/// The kernel cache's key, with the NVPTX triple and the chip as the target:
/// the canonical variant, config and compiler identity, as for CPU kernels.
std::string moduleKey(const spec::Variant &variant, const KernelConfig &config,
                      const std::string &chip) {
  CPUTarget target{"nvptx64-nvidia-cuda", chip, "gpu-kernel=auto"};
  return toHex(KernelCache::key(variant, config, target));
}

std::string deviceName(int32_t deviceId) { return "CUDA device " + std::to_string(deviceId); }

} // namespace

CUDALauncher::CUDALauncher(spec::Variant variant, KernelConfig config, std::string chip,
                           bool shared)
    : variant(std::move(variant)), config(config), fixedChip(std::move(chip)), shared(shared) {
  kernelInfo = describeKernel(this->variant, this->config);
}

std::shared_ptr<CUDAModuleSlot> CUDALauncher::slot(const std::string &chip) const {
  std::lock_guard<std::mutex> lock(mutex);
  auto &mine = slots[chip];
  if (mine)
    return mine;
  if (shared) {
    ModuleTable &t = table();
    std::string key = moduleKey(variant, config, chip);
    std::lock_guard<std::mutex> tableLock(t.mutex);
    auto &entry = t.slots[key];
    if (!entry)
      entry = std::make_shared<CUDAModuleSlot>();
    mine = entry;
  } else {
    mine = std::make_shared<CUDAModuleSlot>();
  }
  return mine;
}

/// With `slot.mutex` held.
heed_status CUDALauncher::compile(CUDAModuleSlot &slot, const std::string &chip) const {
  if (slot.binary)
    return HEED_OK;
  auto target = CUDATarget::parse(chip);
  if (!target)
    return fail(HEED_ERROR_UNSUPPORTED, llvm::toString(target.takeError()));
  auto binary = compileCUDA(variant, config, *target);
  if (!binary)
    return fail(HEED_ERROR_COMPILE, "compiling variant '" + variant.name + "' for " + chip + ": " +
                                        llvm::toString(binary.takeError()));
  slot.binary = std::move(*binary);
  return HEED_OK;
}

heed_status CUDALauncher::compileNow() const {
  if (fixedChip.empty())
    return HEED_OK;
  auto s = slot(fixedChip);
  std::lock_guard<std::mutex> lock(s->mutex);
  return compile(*s, fixedChip);
}

heed_status CUDALauncher::launch(const AttentionArgs &args, int32_t deviceId, void *stream) const {
  std::string why;
  if (!cuda::driver(why))
    return fail(HEED_ERROR_UNSUPPORTED, "heed_attention: cannot run on " + deviceName(deviceId) +
                                            " (device type 2): " + why);
  if (deviceId != 0)
    return fail(HEED_ERROR_UNSUPPORTED,
                "heed_attention: the tensors are on " + deviceName(deviceId) +
                    "; heed runs CUDA kernels on device 0 only so far (choose the GPU with "
                    "CUDA_VISIBLE_DEVICES)");
  if (!kernelInfo.gate.empty())
    return fail(HEED_ERROR_UNSUPPORTED, "heed_attention: variant '" + variant.name +
                                            "' gates heads per token (gate = ...), which "
                                            "runs on CPU tensors only so far");
  std::string chip = fixedChip;
  if (chip.empty()) {
    int capability = cuda::computeCapability(why);
    if (capability < 0)
      return fail(HEED_ERROR_RUN, "heed_attention: " + why);
    chip = "sm_" + std::to_string(capability);
  }
  std::shared_ptr<CUDAModuleSlot> s = slot(chip);
  const cuda::KernelModule *module = nullptr;
  int64_t blockRows = 0, threads = 0;
  {
    std::lock_guard<std::mutex> lock(s->mutex);
    if (!s->module) {
      if (heed_status status = compile(*s, chip))
        return status;
      const GPUKernelBinary &b = *s->binary;
      auto loaded = cuda::KernelModule::load(b.cubin ? *b.cubin : b.ptx, b.kernelName, why);
      if (!loaded)
        return fail(HEED_ERROR_LOAD, "heed_attention: loading variant '" + variant.name + "' (" +
                                         chip + ", " + (b.cubin ? "cubin" : "PTX") + "): " + why);
      s->module = std::move(loaded);
    }
    module = s->module.get();
    blockRows = s->binary->blockRows;
    threads = s->binary->threads;
  }
  // The module stays alive: `s` holds it, and a slot's module is never replaced.
  if (std::string err = module->launchAttention(kernelInfo, args, blockRows, threads, stream);
      !err.empty())
    return fail(HEED_ERROR_RUN, "heed_attention: " + err);
  return HEED_OK;
}

void clearCUDAModules() {
  ModuleTable &t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  t.slots.clear();
}

} // namespace heed::capi
