// The kernel cache: memory (bounded LRU of loaded kernels) -> disk
// (DiskCache, content-addressed artifacts) -> compile.
//
// The key is a SHA-256 over the canonical form of the variant (its
// expression trees, parameters and buffers, exactly: floats in hex), the
// kernel configuration (dtype, head dims, layout, lse, scale, tiles,
// analysis), the target (triple, CPU, every feature), and the compiler's
// identity (heed version, a hash of heed's compiler sources, the LLVM
// version). Batch, heads and sequence lengths are run-time arguments and
// not part of it: a new length never recompiles.
#ifndef HEED_COMPILER_KERNELCACHE_H
#define HEED_COMPILER_KERNELCACHE_H

#include "heed/Compiler/Compiler.h"
#include "heed/Runtime/DiskCache.h"

#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace heed {

struct CacheStats {
  uint64_t memoryHits = 0, diskHits = 0, compiles = 0;
  uint64_t rejectedEntries = 0; ///< disk entries found corrupt and rebuilt
  uint64_t storeFailures = 0;   ///< disk writes that failed (memory-only since)
};

class KernelCache {
public:
  /// The process-wide cache: disk directory DiskCache::defaultDirectory()
  /// unless $HEED_CACHE is "off" or "memory" (memory only); memory entries
  /// $HEED_CACHE_MEMORY_ENTRIES (default 64).
  static KernelCache &global();

  /// `directory` "" keeps the cache in memory only.
  KernelCache(std::string directory, uint64_t maxDiskBytes, size_t memoryEntries);

  /// The kernel for (variant, config) on this machine's CPU.
  llvm::Expected<std::shared_ptr<LoadedKernel>>
  get(const spec::Variant &variant, const KernelConfig &config,
      CacheOutcome *outcome = nullptr);

  static Digest key(const spec::Variant &variant, const KernelConfig &config,
                    const CPUTarget &target);
  /// The same key from targetDigest(target), computed once per target.
  static Digest key(const Digest &target, const spec::Variant &variant,
                    const KernelConfig &config);
  static Digest targetDigest(const CPUTarget &target);

  /// Uses `directory` from now on ("" = memory only).
  void setDirectory(const std::string &directory);
  std::string directory() const;
  /// nullopt when the disk cache is off.
  std::optional<DiskCache> disk() const;
  void clearMemory();
  CacheStats stats() const;

private:
  using Entry = std::pair<Digest, std::shared_ptr<LoadedKernel>>;
  mutable std::mutex mutex;
  std::string dir;
  uint64_t maxDiskBytes;
  size_t memoryEntries;
  bool diskWritable = true;
  std::list<Entry> lru; ///< most recently used first
  std::map<Digest, std::list<Entry>::iterator> index;
  CacheStats counters;
  CPUTarget host;
  Digest hostDigest;
  std::unordered_map<std::string, Digest> keyMemo; ///< key text -> key, recent ones
};

/// heed's version and a hash of the compiler sources it was built from.
const char *compilerIdentity();

} // namespace heed

#endif
