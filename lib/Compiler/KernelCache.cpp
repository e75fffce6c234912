// The kernel cache (see KernelCache.h): key, memory LRU, disk, compile.
#include "heed/Compiler/KernelCache.h"

#include "heed/BuildId.h"

#include "llvm/Config/llvm-config.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <charconv>

namespace heed {

namespace {

void append(std::string &out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void appendHexFloat(std::string &out, double v) {
  char buf[40];
  int n = std::snprintf(buf, sizeof buf, "%a", v);
  out.append(buf, size_t(n));
}

/// Exact, unambiguous text of an expression tree (floats in hex). Plain
/// appends: a memory-cache hit builds it for a large tree in microseconds.
void canonical(const spec::Expr &e, std::string &out) {
  out += '(';
  append(out, int(e.kind));
  out += ' ';
  append(out, int(e.type));
  out += ' ';
  append(out, int(e.op));
  out += ' ';
  switch (e.kind) {
  case spec::ExprKind::Const:
    if (e.type == spec::ScalarType::F32)
      appendHexFloat(out, e.floatValue);
    else
      append(out, e.intValue);
    break;
  case spec::ExprKind::Index: append(out, int(e.index)); break;
  case spec::ExprKind::Load:
    out += 'L';
    append(out, e.buffer);
    break;
  default: break;
  }
  for (const spec::ExprPtr &o : e.operands) {
    out += ' ';
    canonical(*o, out);
  }
  out += ')';
}

std::string canonical(const spec::Variant &v) {
  std::string out = "variant ";
  append(out, int64_t(v.name.size()));
  out += ':' + v.name + '\n';
  for (const spec::Param &p : v.params) {
    out += "param " + p.name + ' ';
    append(out, int(p.type));
    out += ' ';
    append(out, p.intValue);
    out += ' ';
    appendHexFloat(out, p.floatValue);
    out += '\n';
  }
  for (const spec::BufferDecl &b : v.buffers) {
    out += "buffer " + b.name + ' ';
    append(out, int(b.elem));
    for (const std::string &d : b.shape)
      out += ' ' + d;
    out += '\n';
  }
  if (v.route) { // which subtree is the route decides how the kernel is specialized
    out += "route ";
    canonical(*v.route, out);
    for (int64_t c : v.routeCases) {
      out += ' ';
      append(out, c);
    }
    out += '\n';
  }
  if (v.gate) {
    out += "gate ";
    canonical(*v.gate, out);
    out += '\n';
  }
  if (v.normalize != spec::Normalization::Softmax || v.sink) {
    out += "normalize ";
    append(out, int(v.normalize));
    out += ' ';
    appendHexFloat(out, v.sigmoidBias);
    if (v.sink) {
      out += " sink ";
      canonical(*v.sink, out);
    }
    out += '\n';
  }
  out += "score ";
  canonical(*v.score, out);
  out += "\nmask ";
  canonical(*v.mask, out);
  out += '\n';
  return out;
}

void warn(const std::string &message) { std::fprintf(stderr, "heed: warning: %s\n", message.c_str()); }

size_t envSize(const char *name, size_t fallback) {
  const char *v = std::getenv(name);
  if (!v || !*v)
    return fallback;
  char *end = nullptr;
  unsigned long long n = std::strtoull(v, &end, 10);
  return end && *end == '\0' ? size_t(n) : fallback;
}

} // namespace

const char *compilerIdentity() {
  return "heed " HEED_VERSION_STRING " sources " HEED_SOURCE_HASH " llvm " LLVM_VERSION_STRING;
}

/// The digest of what is the same for every kernel of one compiler and
/// target (the target's feature string alone is ~1 KB): computed once per
/// cache, so a memory hit hashes only the config and the variant.
Digest KernelCache::targetDigest(const CPUTarget &target) {
  std::string text = std::string("heed kernel key 1\n") + compilerIdentity() + "\ntarget " +
                     target.triple + ' ' + target.cpu + ' ' + target.features + '\n';
  return sha256(text.data(), text.size());
}

namespace {
/// What the key hashes besides the target digest. The forward's has no
/// kind line (it starts with "config"), every other kind's one.
std::string keyText(const spec::Variant &variant, const KernelConfig &config,
                    llvm::StringRef kind = "") {
  std::string text = kind.empty() ? "" : "kind " + kind.str() + '\n';
  return text + "config " + config.canonical() + '\n' + canonical(variant);
}
/// The request a key is the SHA-256 of; a disk entry stores it, and a
/// lookup compares it with its own.
std::string requestOf(const Digest &target, const std::string &text) {
  return toHex(target) + '\n' + text;
}
Digest keyOf(const std::string &request) { return sha256(request.data(), request.size()); }
} // namespace

/// GPU targets write "gpu-target": no CPU target's text is the same.
Digest KernelCache::targetDigest(const GPUTarget &target) {
  std::string text = std::string("heed kernel key 1\n") + compilerIdentity() + "\ngpu-target " +
                     target.canonical() + '\n';
  return sha256(text.data(), text.size());
}

Digest KernelCache::key(const spec::Variant &variant, const KernelConfig &config,
                        const GPUTarget &target) {
  return key(targetDigest(target), variant, config);
}

Digest KernelCache::key(const Digest &target, const spec::Variant &variant,
                        const KernelConfig &config) {
  return keyOf(request(target, variant, config));
}

Digest KernelCache::key(const spec::Variant &variant, const KernelConfig &config,
                        const CPUTarget &target, llvm::StringRef kind) {
  return keyOf(request(targetDigest(target), variant, config, kind));
}

std::string KernelCache::request(const Digest &target, const spec::Variant &variant,
                                 const KernelConfig &config, llvm::StringRef kind) {
  return requestOf(target, keyText(variant, config, kind));
}

/// A memory hit should cost microseconds: the SHA-256 of a large
/// variant's text is tens of them, so recent texts map to their keys
/// (exact text comparison: as sound as hashing it).
Digest KernelCache::memoKey(const std::string &text) {
  std::lock_guard<std::mutex> lock(mutex);
  auto it = keyMemo.find(text);
  if (it != keyMemo.end())
    return it->second;
  Digest k = keyOf(text);
  if (keyMemo.size() >= 4 * memoryEntries)
    keyMemo.clear();
  keyMemo.emplace(text, k);
  return k;
}

KernelCache &KernelCache::global() {
  static KernelCache cache = [] {
    const char *mode = std::getenv("HEED_CACHE");
    bool diskOff = mode && (std::strcmp(mode, "off") == 0 || std::strcmp(mode, "memory") == 0);
    return KernelCache(diskOff ? "" : DiskCache::defaultDirectory(),
                       DiskCache::defaultMaxBytes(),
                       envSize("HEED_CACHE_MEMORY_ENTRIES", 64));
  }();
  return cache;
}

KernelCache::KernelCache(std::string directory, uint64_t maxDiskBytes, size_t memoryEntries)
    : dir(std::move(directory)), maxDiskBytes(maxDiskBytes),
      memoryEntries(std::max<size_t>(memoryEntries, 1)), target(CPUTarget::jit()),
      targetKey(targetDigest(target)) {}

void KernelCache::setDirectory(const std::string &directory) {
  std::lock_guard<std::mutex> lock(mutex);
  dir = directory;
  diskWritable = true;
}

std::string KernelCache::directory() const {
  std::lock_guard<std::mutex> lock(mutex);
  return dir;
}

std::optional<DiskCache> KernelCache::disk() const {
  std::lock_guard<std::mutex> lock(mutex);
  if (dir.empty())
    return std::nullopt;
  return DiskCache(dir, maxDiskBytes);
}

CacheStats KernelCache::stats() const {
  std::lock_guard<std::mutex> lock(mutex);
  return counters;
}

template <class T> std::shared_ptr<T> KernelCache::Recent<T>::find(const Digest &key) {
  auto it = index.find(key);
  if (it == index.end())
    return nullptr;
  order.splice(order.begin(), order, it->second);
  return it->second->second;
}

template <class T>
void KernelCache::Recent<T>::put(const Digest &key, std::shared_ptr<T> value, size_t limit) {
  if (index.count(key))
    return; // another thread got there first: keep the one callers already hold
  order.emplace_front(key, std::move(value));
  index[key] = order.begin();
  while (order.size() > limit) {
    index.erase(order.back().first);
    order.pop_back();
  }
}

template <class T> void KernelCache::Recent<T>::clear() {
  order.clear();
  index.clear();
}

void KernelCache::clearMemory() {
  std::lock_guard<std::mutex> lock(mutex);
  kernels.clear();
  gpuImages.clear();
}

template <class T>
llvm::Expected<std::shared_ptr<T>>
KernelCache::lookup(const Digest &k, const std::string &request, Recent<T> &memory,
                    llvm::function_ref<std::shared_ptr<T>(const Artifact &, std::string &)> load,
                    llvm::function_ref<llvm::Expected<ArtifactEntry>()> compile,
                    CacheOutcome *outcome) {
  std::optional<DiskCache> diskCache;
  bool writable;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (std::shared_ptr<T> hit = memory.find(k)) {
      ++counters.memoryHits;
      if (outcome)
        *outcome = CacheOutcome::MemoryHit;
      return hit;
    }
    if (!dir.empty())
      diskCache.emplace(dir, maxDiskBytes);
    writable = diskWritable;
  }
  auto remember = [&](std::shared_ptr<T> value) {
    std::lock_guard<std::mutex> lock(mutex);
    memory.put(k, std::move(value), memoryEntries);
  };

  if (diskCache) {
    Artifact artifact;
    std::string note;
    auto result = diskCache->load(k, request, artifact, note);
    if (result == DiskCache::LoadResult::Hit) {
      std::string error;
      if (std::shared_ptr<T> value = load(artifact, error)) {
        {
          std::lock_guard<std::mutex> lock(mutex);
          ++counters.diskHits;
        }
        remember(value);
        if (outcome)
          *outcome = CacheOutcome::DiskHit;
        return value;
      }
      // It verified but does not load (e.g. copied from another machine, or
      // an entry of the wrong kind): not trusted, rebuilt.
      note = DiskCache::discard(diskCache->pathFor(k), "it does not load: " + error);
      result = DiskCache::LoadResult::Rejected;
    }
    if (result == DiskCache::LoadResult::Rejected) {
      warn(note);
      std::lock_guard<std::mutex> lock(mutex);
      ++counters.rejectedEntries;
    }
  }

  auto entry = compile();
  if (!entry)
    return entry.takeError();
  Artifact artifact;
  artifact.key = k;
  artifact.entries.push_back(std::move(*entry));
  {
    std::lock_guard<std::mutex> lock(mutex);
    ++counters.compiles;
  }
  if (diskCache && writable) {
    std::string error;
    if (!diskCache->store(k, request, artifact, error)) {
      bool first;
      {
        std::lock_guard<std::mutex> lock(mutex);
        first = diskWritable;
        diskWritable = false;
        ++counters.storeFailures;
      }
      if (first)
        warn(error + "; kernels are cached in memory only from now on");
    }
  }
  std::string error;
  std::shared_ptr<T> value = load(artifact, error);
  if (!value)
    return llvm::createStringError(llvm::inconvertibleErrorCode(), error);
  remember(value);
  if (outcome)
    *outcome = CacheOutcome::Compiled;
  return value;
}

llvm::Expected<std::shared_ptr<LoadedKernel>>
KernelCache::get(const spec::Variant &variant, const KernelConfig &config,
                 CacheOutcome *outcome) {
  if (llvm::Error err = config.validateFor(variant))
    return std::move(err);
  std::string text = requestOf(targetKey, keyText(variant, config));
  Digest k = memoKey(text);
  return lookup<LoadedKernel>(
      k, text, kernels,
      [](const Artifact &artifact, std::string &error) {
        return LoadedKernel::load(artifact, error); // CPU entries only (hostRuns)
      },
      [&] { return compileEntry(variant, config, target); }, outcome);
}

llvm::Expected<std::shared_ptr<LoadedKernel>>
KernelCache::getKind(llvm::StringRef kind, const spec::Variant &variant,
                     const KernelConfig &config,
                     llvm::function_ref<llvm::Expected<ArtifactEntry>()> compile,
                     llvm::function_ref<std::string(const LoadedKernel &)> check,
                     CacheOutcome *outcome) {
  if (llvm::Error err = config.validateFor(variant))
    return std::move(err);
  if (kind.empty())
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "KernelCache::getKind: a kernel kind needs a name");
  std::string text = requestOf(targetKey, keyText(variant, config, kind));
  return lookup<LoadedKernel>(
      memoKey(text), text, kernels,
      [&](const Artifact &artifact, std::string &error) -> std::shared_ptr<LoadedKernel> {
        std::shared_ptr<LoadedKernel> loaded = LoadedKernel::load(artifact, error);
        if (loaded)
          error = check(*loaded);
        return error.empty() ? loaded : nullptr;
      },
      compile, outcome);
}

llvm::Expected<std::shared_ptr<const ArtifactEntry>>
KernelCache::getGPU(const spec::Variant &variant, const KernelConfig &config,
                    const GPUTarget &target, CacheOutcome *outcome) {
  if (llvm::Error err = config.validateFor(variant))
    return std::move(err);
  // GPU images are looked up once per process and launcher (the C API and
  // heed-run keep the loaded module), so the key is hashed every time.
  std::string entryTarget = target.entryTarget();
  std::string text = request(targetDigest(target), variant, config);
  return lookup<const ArtifactEntry>(
      keyOf(text), text, gpuImages,
      [&](const Artifact &artifact, std::string &error) -> std::shared_ptr<const ArtifactEntry> {
        if (artifact.entries.size() != 1) {
          error = "a GPU cache entry holds one image, this one " +
                  std::to_string(artifact.entries.size());
          return nullptr;
        }
        error = checkGPUEntry(artifact.entries.front(), entryTarget);
        if (!error.empty())
          return nullptr;
        return std::make_shared<const ArtifactEntry>(artifact.entries.front());
      },
      [&] { return compileGPUEntry(variant, config, target); }, outcome);
}

} // namespace heed
