// The kernel cache: memory (bounded LRUs of loaded CPU kernels and of GPU
// images) -> disk (DiskCache, content-addressed artifacts) -> compile.
//
// The key is a SHA-256 over the canonical form of the variant (its
// expression trees, parameters and buffers, exactly: floats in hex), the
// kernel configuration (dtype, head dims, layout, lse, scale, tiles,
// analysis), the target (CPU: triple, CPU, every feature; GPU: platform,
// chip, kernel kind, MFMA shape), and the compiler's identity (heed
// version, a hash of heed's compiler sources, the LLVM version). Batch,
// heads and sequence lengths are run-time arguments and not part of it: a
// new length never recompiles.
//
// A CPU key and a GPU key never meet (their target texts differ), and each
// side checks what it reads: get() loads only CPU entries (hostRuns),
// getGPU() returns only an entry that checkGPUEntry accepts for its target.
// A disk entry carries the text its key was computed from under its
// checksum, and is served only to a request with the same text: a file
// copied or renamed onto another key's entry is rejected and rebuilt.
// Kernels of another kind (the backward, getKind) write "kind NAME" in
// their key text: a forward and a backward of one variant never meet.
#ifndef HEED_COMPILER_KERNELCACHE_H
#define HEED_COMPILER_KERNELCACHE_H

#include "heed/Compiler/Compiler.h"
#include "heed/Compiler/GPU.h"
#include "heed/Runtime/DiskCache.h"

#include "llvm/ADT/STLFunctionalExtras.h"

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

  /// A CPU kernel of another kind than the attention forward for (variant,
  /// config) on this machine (`kind` names it, e.g. "backward": its key and
  /// request say so, and never equal a forward's or another kind's).
  /// Memory, then disk, then `compile` and store, as get(); `check` says
  /// why a binary loaded from disk is not one of this kind ("" when it is),
  /// and such an entry is rejected and rebuilt.
  llvm::Expected<std::shared_ptr<LoadedKernel>>
  getKind(llvm::StringRef kind, const spec::Variant &variant, const KernelConfig &config,
          llvm::function_ref<llvm::Expected<ArtifactEntry>()> compile,
          llvm::function_ref<std::string(const LoadedKernel &)> check,
          CacheOutcome *outcome = nullptr);

  /// The GPU kernel for (variant, config) on `target`: an entry whose
  /// target is target.entryTarget(), whose binary is the image the
  /// platform's module loader takes (a cubin, or PTX the CUDA driver
  /// JIT-compiles when there was no ptxas; an HSACO) and whose info.gpu is
  /// the launch shape. Memory, then disk, then compileGPUEntry and store.
  llvm::Expected<std::shared_ptr<const ArtifactEntry>>
  getGPU(const spec::Variant &variant, const KernelConfig &config, const GPUTarget &target,
         CacheOutcome *outcome = nullptr);

  /// `kind` "" is the attention forward (get()), else getKind()'s.
  static Digest key(const spec::Variant &variant, const KernelConfig &config,
                    const CPUTarget &target, llvm::StringRef kind = "");
  static Digest key(const spec::Variant &variant, const KernelConfig &config,
                    const GPUTarget &target);
  /// The same key from targetDigest(target), computed once per target.
  static Digest key(const Digest &target, const spec::Variant &variant,
                    const KernelConfig &config);
  static Digest targetDigest(const CPUTarget &target);
  static Digest targetDigest(const GPUTarget &target);
  /// The text a key is the SHA-256 of (the target digest, the config and the
  /// canonical variant). A disk entry stores it, and a lookup serves an
  /// entry only when the stored text is its own.
  static std::string request(const Digest &target, const spec::Variant &variant,
                             const KernelConfig &config, llvm::StringRef kind = "");

  /// Uses `directory` from now on ("" = memory only).
  void setDirectory(const std::string &directory);
  std::string directory() const;
  /// nullopt when the disk cache is off.
  std::optional<DiskCache> disk() const;
  void clearMemory();
  CacheStats stats() const;

private:
  /// The most recently used values by key, at most `limit` of them.
  template <class T> struct Recent {
    using Entry = std::pair<Digest, std::shared_ptr<T>>;
    std::list<Entry> order; ///< most recently used first
    std::map<Digest, typename std::list<Entry>::iterator> index;
    std::shared_ptr<T> find(const Digest &key);
    void put(const Digest &key, std::shared_ptr<T> value, size_t limit);
    void clear();
  };
  /// Memory -> disk (`load` turns a verified artifact into a T, or says why
  /// it cannot) -> `compile` and store.
  template <class T>
  llvm::Expected<std::shared_ptr<T>>
  lookup(const Digest &key, const std::string &request, Recent<T> &memory,
         llvm::function_ref<std::shared_ptr<T>(const Artifact &, std::string &)> load,
         llvm::function_ref<llvm::Expected<ArtifactEntry>()> compile, CacheOutcome *outcome);

  /// The key of a request text, from keyMemo when it is recent.
  Digest memoKey(const std::string &text);

  mutable std::mutex mutex;
  std::string dir;
  uint64_t maxDiskBytes;
  size_t memoryEntries;
  bool diskWritable = true;
  Recent<LoadedKernel> kernels;         ///< CPU
  Recent<const ArtifactEntry> gpuImages; ///< GPU
  CacheStats counters;
  CPUTarget target; ///< what CPU kernels are compiled for (CPUTarget::jit)
  Digest targetKey;  ///< its digest, in every CPU key
  std::unordered_map<std::string, Digest> keyMemo; ///< key text -> key, recent ones
};

/// heed's version and a hash of the compiler sources it was built from.
const char *compilerIdentity();

} // namespace heed

#endif
