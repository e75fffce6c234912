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

/// The version of the disk cache's entry format (the directory
/// <dir>/v<version> holds its entries): 2 wraps an artifact in a header of
/// its own whose checksum covers the key and the request.
inline constexpr uint32_t kCacheFormatVersion = 2;
/// The largest entry the cache reads (a CPU kernel is tens of KiB, a GPU
/// image a few MiB): a bigger file is rejected, never read.
inline constexpr uint64_t kMaxCacheEntryBytes = uint64_t(1) << 30;
/// The largest file readFile reads unless told otherwise.
inline constexpr uint64_t kMaxFileBytes = uint64_t(1) << 30;

class DiskCache {
public:
  /// $HEED_CACHE_DIR, else $XDG_CACHE_HOME/heed, else $HOME/.cache/heed.
  static std::string defaultDirectory();
  /// $HEED_CACHE_MAX_BYTES, else 2 GiB.
  static uint64_t defaultMaxBytes();

  DiskCache(std::string directory, uint64_t maxBytes);
  const std::string &directory() const { return dir; }
  uint64_t maxBytes() const { return limit; }

  /// The file that holds `key`'s entry.
  std::string pathFor(const Digest &key) const;

  /// An entry's bytes: a header (magic, version, key, sizes, and a SHA-256
  /// over the header, the request and the artifact), the request (the text
  /// the key was computed from) and the artifact.
  static std::string encodeEntry(const Digest &key, const std::string &request,
                                 const Artifact &artifact);
  /// Verifies and splits encodeEntry's output; "" or what is wrong.
  static std::string decodeEntry(const std::string &bytes, Digest &key, std::string &request,
                                 Artifact &artifact);

  enum class LoadResult { Hit, Miss, Rejected };
  /// Reads and verifies `key`'s entry. Only a regular file is read (never
  /// through a symbolic link, never a FIFO or device), at most
  /// kMaxCacheEntryBytes. An entry that is not such a file, is truncated,
  /// corrupt or of another format version, or was written for another key
  /// or another request (`request` is the text the key was computed from)
  /// is reported as Rejected with `note` saying what was wrong and whether it
  /// could be removed; the caller rebuilds it.
  LoadResult load(const Digest &key, const std::string &request, Artifact &out,
                  std::string &note);

  /// Writes the entry atomically (a temporary file renamed into place), then
  /// evicts least-recently-used entries past the size limit. On failure (a
  /// read-only directory, a full disk) returns false and says why; nothing
  /// partial is left behind.
  bool store(const Digest &key, const std::string &request, const Artifact &artifact,
             std::string &error);

  /// Removes the entry file at `path` after it was rejected for `problem`:
  /// the warning to print, which says "removed" only when it was.
  static std::string discard(const std::string &path, const std::string &problem);

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
  /// Symbolic links are not followed, and only regular files are read.
  std::vector<Entry> list(bool verify) const;
  /// Removes every entry (and stray temporary files); returns the count.
  unsigned clear();
  /// Removes least-recently-used entries until the total is under the limit.
  void evict();

private:
  std::string dir;
  uint64_t limit;
};

/// Reads a whole file of at most `maxBytes`; false with a message on error
/// (a larger file is an error, read no further than the limit).
bool readFile(const std::string &path, std::string &out, std::string &error,
              uint64_t maxBytes = kMaxFileBytes);

} // namespace heed

#endif
