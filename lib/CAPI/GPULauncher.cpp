// C API kernels on GPU tensors (see GPULauncher.h).
#include "GPULauncher.h"

#include "heed/Compiler/GPU.h"
#include "heed/Compiler/KernelCache.h"
#include "heed/Runtime/CUDA.h"
#include "heed/Runtime/HIP.h"
#include "heed/Runtime/Sha256.h"

#include "llvm/Support/ErrorHandling.h"

#include <optional>
#include <unordered_map>

namespace heed::capi {

namespace {

/// A compiled kernel, as the platform's module loader takes it: a kernel
/// cache entry (image in `binary`, launch shape in `info.gpu`).
struct GPUBinary {
  std::shared_ptr<const ArtifactEntry> entry;
  const GPULaunch &launch() const { return *entry->info.gpu; }
};

/// A loaded module of either platform.
class GPUModule {
public:
  virtual ~GPUModule() = default;
  virtual std::string launchAttention(const KernelInfo &info, const AttentionArgs &args,
                                      const GPUBinary &binary, void *stream) const = 0;
};

template <typename Module>
class PlatformModule final : public GPUModule {
public:
  explicit PlatformModule(std::unique_ptr<Module> module) : module(std::move(module)) {}
  std::string launchAttention(const KernelInfo &info, const AttentionArgs &args,
                              const GPUBinary &binary, void *stream) const override {
    const GPULaunch &l = binary.launch();
    return module->launchAttention(info, args, l.blockRows, l.threads, stream, l.sharedBytes);
  }

private:
  std::unique_ptr<Module> module;
};

template <typename Module>
std::unique_ptr<GPUModule> loadModule(const GPUBinary &binary, std::string &error) {
  auto module = Module::load(binary.entry->binary, binary.launch().kernelName, error);
  if (!module)
    return nullptr;
  return std::make_unique<PlatformModule<Module>>(std::move(module));
}

/// What differs between the platforms; everything else is GPULauncher's one
/// path.
struct GPUPlatform {
  GPUPlatformKind kind;
  int32_t deviceType;         ///< heed_device_type of its tensors
  const char *name;           ///< "CUDA": messages
  const char *target;         ///< "cuda": heed_compile's target
  GPUVendor vendor;           ///< whose compiler
  const char *visibleDevices; ///< the variable that picks the GPU
  /// "" when the runtime is usable, else why not.
  std::string (*unavailable)();
  /// Device 0's chip, for launches with none given; "" with `error`.
  std::string (*deviceChip)(std::string &error);
  /// "" when heed compiles for `chip`, else why not.
  std::string (*checkChip)(const std::string &chip);
  std::unique_ptr<GPUModule> (*load)(const GPUBinary &binary, std::string &error);
};

constexpr const char *kDefaultAMDChip = "gfx942";

const GPUPlatform kPlatforms[] = {
    {GPUPlatformKind::CUDA, HEED_DEVICE_CUDA, "CUDA", "cuda", GPUVendor::NVIDIA,
     "CUDA_VISIBLE_DEVICES",
     [] {
       std::string why;
       return cuda::driver(why) ? std::string() : why;
     },
     [](std::string &error) {
       int capability = cuda::computeCapability(error);
       return capability < 0 ? std::string() : "sm_" + std::to_string(capability);
     },
     [](const std::string &chip) {
       auto target = CUDATarget::parse(chip);
       return target ? std::string() : llvm::toString(target.takeError());
     },
     loadModule<cuda::KernelModule>},
    {GPUPlatformKind::ROCm, HEED_DEVICE_ROCM, "ROCm", "rocm", GPUVendor::AMD,
     "HIP_VISIBLE_DEVICES",
     [] {
       std::string why;
       return hip::runtime(why) ? std::string() : why;
     },
     [](std::string &) { return std::string(kDefaultAMDChip); },
     [](const std::string &chip) {
       auto target = AMDGPUTarget::parse(chip);
       return target ? std::string() : llvm::toString(target.takeError());
     },
     loadModule<hip::KernelModule>},
};

const GPUPlatform &platformOf(GPUPlatformKind kind) {
  for (const GPUPlatform &p : kPlatforms)
    if (p.kind == kind)
      return p;
  llvm_unreachable("every GPUPlatformKind has an entry in kPlatforms");
}

const GPUPlatform *platformFor(int32_t deviceType) {
  for (const GPUPlatform &p : kPlatforms)
    if (p.deviceType == deviceType)
      return &p;
  return nullptr;
}

std::string tensorsOf(const GPUPlatform &p) {
  return std::string(p.name) + " tensors (device type " + std::to_string(p.deviceType) + ")";
}

/// The process-wide table: one slot per (variant, config, platform, chip,
/// compiler).
struct ModuleTable {
  std::mutex mutex;
  std::unordered_map<std::string, std::shared_ptr<GPUModuleSlot>> slots;
};

ModuleTable &table() {
  static ModuleTable *t = new ModuleTable(); // never destroyed: modules outlive exit order
  return *t;
}

/// The kernel cache's key of the GPU kernel: the canonical variant, config,
/// platform, chip and compiler identity.
std::string moduleKey(const spec::Variant &variant, const KernelConfig &config,
                      const GPUPlatform &platform, const std::string &chip) {
  return toHex(KernelCache::key(variant, config, GPUTarget{platform.vendor, chip}));
}

} // namespace

struct GPUModuleSlot {
  std::mutex mutex; ///< held while compiling or loading
  std::optional<GPUBinary> binary;
  std::unique_ptr<GPUModule> module; ///< set once, never replaced
};

std::string GPUChoice::label() const {
  std::string target = platformOf(platform).target;
  return chip.empty() ? target : target + ":" + chip;
}

bool parseGPUTarget(llvm::StringRef target, GPUChoice &choice, std::string &error) {
  for (const GPUPlatform &p : kPlatforms) {
    llvm::StringRef rest = target;
    if (!rest.consume_front(p.target) || (!rest.empty() && !rest.consume_front(":")))
      continue;
    choice = {p.kind, rest.str()};
    if (!choice.chip.empty())
      error = p.checkChip(choice.chip);
    return true;
  }
  return false;
}

std::vector<GPUChoice> everyGPU() {
  std::vector<GPUChoice> all;
  for (const GPUPlatform &p : kPlatforms)
    all.push_back({p.kind, ""});
  return all;
}

GPULauncher::GPULauncher(spec::Variant variant, KernelConfig config,
                         std::vector<GPUChoice> choices, bool shared)
    : variant(std::move(variant)), config(config), choices(std::move(choices)), shared(shared) {
  kernelInfo = describeKernel(this->variant, this->config);
}

std::string GPULauncher::devices() const {
  std::string text;
  for (size_t i = 0; i < choices.size(); ++i)
    text += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") +
            tensorsOf(platformOf(choices[i].platform));
  return text;
}

std::shared_ptr<GPUModuleSlot> GPULauncher::slot(GPUPlatformKind platform,
                                                 const std::string &chip) const {
  std::lock_guard<std::mutex> lock(mutex);
  auto &mine = slots[{platform, chip}];
  if (mine)
    return mine;
  if (shared) {
    ModuleTable &t = table();
    std::string key = moduleKey(variant, config, platformOf(platform), chip);
    std::lock_guard<std::mutex> tableLock(t.mutex);
    auto &entry = t.slots[key];
    if (!entry)
      entry = std::make_shared<GPUModuleSlot>();
    mine = entry;
  } else {
    mine = std::make_shared<GPUModuleSlot>();
  }
  return mine;
}

/// With `slot.mutex` held.
heed_status GPULauncher::compile(GPUModuleSlot &slot, GPUPlatformKind platform,
                                 const std::string &chip) const {
  if (slot.binary)
    return HEED_OK;
  const GPUPlatform &p = platformOf(platform);
  if (std::string why = p.checkChip(chip); !why.empty())
    return fail(HEED_ERROR_UNSUPPORTED, why);
  // Through the kernel cache (memory, disk) unless use_cache = 0.
  GPUTarget target{p.vendor, chip};
  auto entry = [&]() -> llvm::Expected<std::shared_ptr<const ArtifactEntry>> {
    if (shared)
      return KernelCache::global().getGPU(variant, config, target);
    auto compiled = compileGPUEntry(variant, config, target);
    if (!compiled)
      return compiled.takeError();
    return std::make_shared<const ArtifactEntry>(std::move(*compiled));
  }();
  if (!entry) {
    // Without ld.lld there is no HSACO: not a compile failure, a missing tool.
    heed_status status = p.vendor == GPUVendor::AMD && findLld().empty()
                             ? HEED_ERROR_UNSUPPORTED
                             : HEED_ERROR_COMPILE;
    return fail(status, "compiling variant '" + variant.name + "' for " + chip + ": " +
                            llvm::toString(entry.takeError()));
  }
  slot.binary = GPUBinary{std::move(*entry)};
  return HEED_OK;
}

heed_status GPULauncher::compileNow() const {
  for (const GPUChoice &c : choices) {
    if (c.chip.empty())
      continue;
    auto s = slot(c.platform, c.chip);
    std::lock_guard<std::mutex> lock(s->mutex);
    if (heed_status status = compile(*s, c.platform, c.chip))
      return status;
  }
  return HEED_OK;
}

heed_status GPULauncher::launch(const AttentionArgs &args, int32_t deviceType, int32_t deviceId,
                                void *stream) const {
  const GPUPlatform *p = platformFor(deviceType);
  const GPUChoice *choice = nullptr;
  for (const GPUChoice &c : choices)
    if (p && c.platform == p->kind)
      choice = &c;
  if (!choice) {
    std::string labels;
    for (const GPUChoice &c : choices)
      labels += (labels.empty() ? "" : ", ") + c.label();
    return fail(HEED_ERROR_UNSUPPORTED,
                "heed_attention: kernel '" + variant.name + "' was compiled for " + labels +
                    " only; its tensors must be " + devices() + ", but they are on " +
                    deviceName(deviceType, deviceId) + " (compile it with target NULL or "
                    "\"cpu\" to run it where its tensors are)");
  }
  std::string where = deviceName(deviceType, deviceId);
  if (std::string why = p->unavailable(); !why.empty())
    return fail(HEED_ERROR_UNSUPPORTED, "heed_attention: cannot run on " + where +
                                            " (device type " + std::to_string(deviceType) +
                                            "): " + why);
  if (deviceId != 0)
    return fail(HEED_ERROR_UNSUPPORTED, "heed_attention: the tensors are on " + where +
                                            "; heed runs " + p->name +
                                            " kernels on device 0 only so far (choose the "
                                            "GPU with " + p->visibleDevices + ")");
  if (!kernelInfo.gate.empty())
    return fail(HEED_ERROR_UNSUPPORTED, "heed_attention: variant '" + variant.name +
                                            "' gates heads per token (gate = ...), which "
                                            "runs on CPU tensors only so far");
  std::string chip = choice->chip, why;
  if (chip.empty()) {
    chip = p->deviceChip(why);
    if (chip.empty())
      return fail(HEED_ERROR_RUN, "heed_attention: " + why);
  }
  std::shared_ptr<GPUModuleSlot> s = slot(p->kind, chip);
  const GPUModule *module = nullptr;
  const GPUBinary *binary = nullptr;
  {
    std::lock_guard<std::mutex> lock(s->mutex);
    if (!s->module) {
      if (heed_status status = compile(*s, p->kind, chip))
        return status;
      const GPUBinary &b = *s->binary;
      auto loaded = p->load(b, why);
      if (!loaded)
        return fail(HEED_ERROR_LOAD, "heed_attention: loading variant '" + variant.name + "' (" +
                                         chip + ", " + b.launch().format + "): " + why);
      s->module = std::move(loaded);
    }
    module = s->module.get();
    binary = &*s->binary;
  }
  // Both stay alive and unchanged: `s` holds them, and once a slot has a
  // module, neither is replaced.
  if (std::string err = module->launchAttention(kernelInfo, args, *binary, stream);
      !err.empty())
    return fail(HEED_ERROR_RUN, "heed_attention: " + err);
  return HEED_OK;
}

void clearGPUModules() {
  ModuleTable &t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  t.slots.clear();
}

} // namespace heed::capi
