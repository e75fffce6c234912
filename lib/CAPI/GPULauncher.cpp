// C API kernels on GPU tensors (see GPULauncher.h).
#include "GPULauncher.h"

#include "heed/Compiler/GPU.h"
#include "heed/Compiler/KernelCache.h"
#include "heed/Runtime/Sha256.h"

#include "llvm/Support/ErrorHandling.h"

#include <optional>
#include <unordered_map>

namespace heed::capi {

namespace {

/// What differs between the platforms for compiling: the rest is the
/// runtime's (GPUImage, ImageLauncher).
struct PlatformCompiler {
  GPUPlatform platform;
  const char *target; ///< "cuda": heed_compile's target
  GPUVendor vendor;   ///< whose compiler
  /// "" when heed compiles for `chip`, else why not.
  std::string (*checkChip)(const std::string &chip);
};

const PlatformCompiler kPlatforms[] = {
    {GPUPlatform::CUDA, "cuda", GPUVendor::NVIDIA,
     [](const std::string &chip) {
       auto target = CUDATarget::parse(chip);
       return target ? std::string() : llvm::toString(target.takeError());
     }},
    {GPUPlatform::HIP, "rocm", GPUVendor::AMD,
     [](const std::string &chip) {
       auto target = AMDGPUTarget::parse(chip);
       return target ? std::string() : llvm::toString(target.takeError());
     }},
};

const PlatformCompiler &compilerOf(GPUPlatform platform) {
  for (const PlatformCompiler &p : kPlatforms)
    if (p.platform == platform)
      return p;
  llvm_unreachable("every GPUPlatform has an entry in kPlatforms");
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
                      const PlatformCompiler &platform, const std::string &chip,
                      GPUKernelKind kind) {
  return toHex(KernelCache::key(variant, config, GPUTarget{platform.vendor, chip, kind}));
}

} // namespace

/// A compiled image, loaded on each device at its first launch there.
struct GPUModuleSlot {
  std::mutex mutex; ///< held while compiling
  std::shared_ptr<const GPUImage> image; ///< set once, never replaced
};

std::string GPUChoice::label() const {
  std::string target = compilerOf(platform).target;
  return chip.empty() ? target : target + ":" + chip;
}

bool parseGPUTarget(llvm::StringRef target, GPUChoice &choice, std::string &error) {
  for (const PlatformCompiler &p : kPlatforms) {
    llvm::StringRef rest = target;
    if (!rest.consume_front(p.target) || (!rest.empty() && !rest.consume_front(":")))
      continue;
    choice = {p.platform, rest.str()};
    if (!choice.chip.empty())
      error = p.checkChip(choice.chip);
    return true;
  }
  return false;
}

std::vector<GPUChoice> everyGPU() {
  std::vector<GPUChoice> all;
  for (const PlatformCompiler &p : kPlatforms)
    all.push_back({p.platform, ""});
  return all;
}

GPULauncher::GPULauncher(spec::Variant variant, KernelConfig config,
                         std::vector<GPUChoice> choices, bool shared, GPUKernelKind kind)
    : ImageLauncher(describeKernel(variant, config)), variant(std::move(variant)),
      config(config), choices(std::move(choices)), shared(shared), kind(kind) {}

std::string GPULauncher::devices() const {
  std::string text;
  for (size_t i = 0; i < choices.size(); ++i)
    text += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") +
            tensorsOf(choices[i].platform);
  return text;
}

bool GPULauncher::serves(GPUPlatform platform, std::string &chip) const {
  for (const GPUChoice &c : choices)
    if (c.platform == platform) {
      chip = c.chip;
      return true;
    }
  return false;
}

std::string GPULauncher::builtFor() const {
  std::string labels;
  for (const GPUChoice &c : choices)
    labels += (labels.empty() ? "" : ", ") + c.label();
  return labels;
}

std::shared_ptr<GPUModuleSlot> GPULauncher::slot(GPUPlatform platform,
                                                 const std::string &chip) const {
  std::lock_guard<std::mutex> lock(mutex);
  auto &mine = slots[{platform, chip}];
  if (mine)
    return mine;
  if (shared) {
    ModuleTable &t = table();
    std::string key = moduleKey(variant, config, compilerOf(platform), chip, kind);
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
heed_status GPULauncher::compile(GPUModuleSlot &slot, GPUPlatform platform,
                                 const std::string &chip) const {
  if (slot.image)
    return HEED_OK;
  const PlatformCompiler &p = compilerOf(platform);
  if (std::string why = p.checkChip(chip); !why.empty())
    return fail(HEED_ERROR_UNSUPPORTED, why);
  // Through the kernel cache (memory, disk) unless use_cache = 0.
  GPUTarget target{p.vendor, chip, kind};
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
  slot.image = std::make_shared<const GPUImage>(std::move(*entry));
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

heed_status GPULauncher::image(GPUPlatform platform, const std::string &chip,
                               std::shared_ptr<const GPUImage> &out) const {
  std::shared_ptr<GPUModuleSlot> s = slot(platform, chip);
  std::lock_guard<std::mutex> lock(s->mutex);
  if (heed_status status = compile(*s, platform, chip))
    return status;
  out = s->image;
  return HEED_OK;
}

void clearGPUModules() {
  ModuleTable &t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  t.slots.clear();
}

} // namespace heed::capi
