// The on-disk kernel cache: one artifact file per cache key, written
// atomically, verified on every read, evicted least-recently-used past a size
// limit. No MLIR or LLVM here: heed-cache and deployed programs use it alone.
#ifndef HEED_RUNTIME_DISKCACHE_H
#define HEED_RUNTIME_DISKCACHE_H

#include "heed/Runtime/Artifact.h"

#include <cstdint>
#include <string>
#include <vector>

namespace heed {

class DiskCache {
public:
  /// $HEED_CACHE_DIR, else $XDG_CACHE_HOME/heed, else $HOME/.cache/heed.
  static std::string defaultDirectory();
  /// $HEED_CACHE_MAX_BYTES, else 2 GiB.
  static uint64_t defaultMaxBytes();

  DiskCache(std::string directory, uint64_t maxBytes);
  const std::string &directory() const { return dir; }
  uint64_t maxBytes() const { return limit; }

  /// The file that holds `key`'s artifact.
  std::string pathFor(const Digest &key) const;

  enum class LoadResult { Hit, Miss, Rejected };
  /// Reads and verifies `key`'s entry. An entry that is truncated, corrupt,
  /// of another format version or for another key is removed and reported
  /// as Rejected with `note` saying what was wrong; the caller rebuilds it.
  LoadResult load(const Digest &key, Artifact &out, std::string &note);

  /// Writes the entry atomically (a temporary file renamed into place), then
  /// evicts least-recently-used entries past the size limit. On failure (a
  /// read-only directory, a full disk) returns false and says why; nothing
  /// partial is left behind.
  bool store(const Digest &key, const Artifact &artifact, std::string &error);

  struct Entry {
    std::string path;
    std::string key;    ///< hex
    uint64_t bytes = 0;
    int64_t lastUse = 0; ///< seconds since the epoch (file mtime)
    /// From the artifact, when it verifies; a GPU entry's target is followed by
    /// its image format and kernel, e.g. "hip:gfx942 (hsaco, matrix cores)".
    std::string kernel, targets;
    std::string problem;         ///< why it does not verify, or ""
  };
  /// Every entry, most recently used first; verifies each when `verify`.
  std::vector<Entry> list(bool verify) const;
  /// Removes every entry (and stray temporary files); returns the count.
  unsigned clear();
  /// Removes least-recently-used entries until the total is under the limit.
  void evict();

private:
  std::string dir;
  uint64_t limit;
};

/// Reads a whole file; false with a message on error.
bool readFile(const std::string &path, std::string &out, std::string &error);

} // namespace heed

#endif
