// Kernel: a compiled variant as the C++ API hands it out — a loaded binary
// (heed_runtime's LoadedKernel) found through the KernelCache.
#include "heed/Compiler/KernelCache.h"

#include <chrono>

namespace heed {

const char *toString(CacheOutcome outcome) {
  switch (outcome) {
  case CacheOutcome::Compiled: return "compiled";
  case CacheOutcome::DiskHit: return "disk cache hit";
  case CacheOutcome::MemoryHit: return "memory cache hit";
  }
  return "?";
}

struct Kernel::Impl {
  std::shared_ptr<LoadedKernel> loaded;
  spec::Variant variant;
  KernelConfig config;
  double seconds = 0;
  CacheOutcome outcome = CacheOutcome::Compiled;
};

Kernel::Kernel(std::shared_ptr<LoadedKernel> loaded, const spec::Variant &variant,
               const KernelConfig &config, double seconds, CacheOutcome outcome)
    : impl(new Impl{std::move(loaded), variant, config, seconds, outcome}) {}
Kernel::~Kernel() = default;
const spec::Variant &Kernel::variant() const { return impl->variant; }
const KernelConfig &Kernel::config() const { return impl->config; }
double Kernel::compileSeconds() const { return impl->seconds; }
CacheOutcome Kernel::cacheOutcome() const { return impl->outcome; }
const std::shared_ptr<LoadedKernel> &Kernel::loaded() const { return impl->loaded; }

llvm::Expected<std::unique_ptr<Kernel>> Kernel::compile(const spec::Variant &variant,
                                                        const KernelConfig &config) {
  auto start = std::chrono::steady_clock::now();
  CacheOutcome outcome = CacheOutcome::Compiled;
  auto loaded = KernelCache::global().get(variant, config, &outcome);
  if (!loaded)
    return loaded.takeError();
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return std::make_unique<Kernel>(std::move(*loaded), variant, config, seconds, outcome);
}

llvm::Error Kernel::run(const AttentionArgs &args, unsigned threads, RunStats *stats) const {
  std::string err = impl->loaded->run(args, threads, stats);
  if (!err.empty())
    return llvm::createStringError(llvm::inconvertibleErrorCode(), err);
  return llvm::Error::success();
}

} // namespace heed
