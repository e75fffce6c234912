// The on-disk kernel cache (see DiskCache.h).
#include "heed/Runtime/DiskCache.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace heed {

namespace {

constexpr const char *kSuffix = ".heedk";
constexpr char kEntryMagic[8] = {'H', 'E', 'E', 'D', 'C', 'A', 'C', 'H'};
/// magic, version, reserved, key, request size, artifact size, SHA-256.
constexpr size_t kEntryHeader = 8 + 4 + 4 + 32 + 8 + 8 + 32;
constexpr size_t kChecksumAt = kEntryHeader - 32;

std::string envOr(const char *name) {
  const char *v = std::getenv(name);
  return v && *v ? v : "";
}

/// mkdir -p; false with errno set on failure.
bool makeDirectories(const std::string &path) {
  std::string partial;
  std::istringstream parts(path);
  std::string part;
  if (!path.empty() && path[0] == '/')
    partial = "/";
  while (std::getline(parts, part, '/')) {
    if (part.empty())
      continue;
    partial += part + "/";
    if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
      return false;
  }
  return true;
}

bool endsWith(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void putU64(std::string &out, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    out += char(v >> (8 * i));
}

uint64_t getU64(const std::string &bytes, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= uint64_t(uint8_t(bytes[at + i])) << (8 * i);
  return v;
}

/// Reads from `fd` until end of file, at most `maxBytes`; "" or what failed.
std::string readBounded(int fd, const std::string &path, uint64_t maxBytes, std::string &out) {
  out.clear();
  char buffer[1 << 16];
  for (;;) {
    size_t want = sizeof buffer;
    if (out.size() + want > maxBytes + 1) // one byte past the limit tells "too large"
      want = size_t(maxBytes + 1 - out.size());
    ssize_t n = ::read(fd, buffer, want);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return "cannot read " + path + ": " + std::strerror(errno);
    if (n == 0)
      return "";
    out.append(buffer, size_t(n));
    if (out.size() > maxBytes)
      return path + " is larger than " + std::to_string(maxBytes) + " bytes";
  }
}

/// What kind of file `mode` says it is, for messages.
const char *fileKind(mode_t mode) {
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

enum class EntryRead { Ok, Missing, Bad };

/// Reads a cache entry: a regular file, opened without following a
/// symbolic link and without blocking (a FIFO opens at once and is then
/// refused), of at most kMaxCacheEntryBytes by its size before any read.
EntryRead readEntryFile(const std::string &path, std::string &out, std::string &problem) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) // nothing there, or no directory yet
      return EntryRead::Missing;
    struct stat st;
    problem = errno == ELOOP && ::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)
                  ? std::string("a symbolic link, which the cache never follows")
                  : "cannot open it: " + std::string(std::strerror(errno));
    return EntryRead::Bad;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    problem = "cannot stat it: " + std::string(std::strerror(errno));
  } else if (!S_ISREG(st.st_mode)) {
    problem = std::string(fileKind(st.st_mode)) + ", not a regular file";
  } else if (uint64_t(st.st_size) > kMaxCacheEntryBytes) {
    problem = std::to_string(st.st_size) + " bytes, more than an entry may have (" +
              std::to_string(kMaxCacheEntryBytes) + ")";
  } else {
    problem = readBounded(fd, path, uint64_t(st.st_size), out);
  }
  ::close(fd);
  return problem.empty() ? EntryRead::Ok : EntryRead::Bad;
}

} // namespace

bool readFile(const std::string &path, std::string &out, std::string &error, uint64_t maxBytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = "cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  error = readBounded(fd, path, maxBytes, out);
  ::close(fd);
  return error.empty();
}

std::string DiskCache::encodeEntry(const Digest &key, const std::string &request,
                                   const Artifact &artifact) {
  std::string payload = artifact.serialize();
  std::string out(kEntryMagic, 8);
  for (int i = 0; i < 4; ++i)
    out += char(kCacheFormatVersion >> (8 * i));
  out.append(4, '\0');
  out.append(reinterpret_cast<const char *>(key.data()), key.size());
  putU64(out, request.size());
  putU64(out, payload.size());
  Digest sum = Sha256().update(out).update(request).update(payload).finish();
  out.append(reinterpret_cast<const char *>(sum.data()), sum.size());
  return out + request + payload;
}

std::string DiskCache::decodeEntry(const std::string &bytes, Digest &key, std::string &request,
                                   Artifact &artifact) {
  if (bytes.size() < kEntryHeader || std::memcmp(bytes.data(), kEntryMagic, 8) != 0)
    return "not a heed cache entry (bad magic or shorter than its header)";
  uint32_t version = 0;
  for (int i = 0; i < 4; ++i)
    version |= uint32_t(uint8_t(bytes[8 + i])) << (8 * i);
  if (version != kCacheFormatVersion)
    return "cache entry format version " + std::to_string(version) + ", this heed reads " +
           std::to_string(kCacheFormatVersion);
  uint64_t requestSize = getU64(bytes, 48), payloadSize = getU64(bytes, 56);
  uint64_t body = bytes.size() - kEntryHeader;
  if (requestSize > body || payloadSize != body - requestSize)
    return "cache entry truncated or padded: its header says " +
           std::to_string(requestSize) + " + " + std::to_string(payloadSize) +
           " bytes, the file has " + std::to_string(body);
  Digest sum = Sha256()
                   .update(bytes.data(), kChecksumAt)
                   .update(bytes.data() + kEntryHeader, size_t(body))
                   .finish();
  if (std::memcmp(sum.data(), bytes.data() + kChecksumAt, 32) != 0)
    return "cache entry checksum mismatch (the file is corrupt or was altered)";
  std::memcpy(key.data(), bytes.data() + 16, 32);
  request = bytes.substr(kEntryHeader, size_t(requestSize));
  if (std::string problem = artifact.parse(bytes.substr(kEntryHeader + size_t(requestSize)));
      !problem.empty())
    return problem;
  if (artifact.key != key)
    return "the artifact inside was built for another key";
  return "";
}

std::string DiskCache::discard(const std::string &path, const std::string &problem) {
  std::string note = "cache entry " + path + " was rejected (" + problem + "); ";
  if (::unlink(path.c_str()) == 0)
    return note + "removed, rebuilding";
  if (errno == ENOENT) // another process got there first
    return note + "rebuilding";
  return note + "could not remove it (" + std::strerror(errno) + "), rebuilding without it";
}

std::string DiskCache::defaultDirectory() {
  if (std::string d = envOr("HEED_CACHE_DIR"); !d.empty())
    return d;
  if (std::string d = envOr("XDG_CACHE_HOME"); !d.empty())
    return d + "/heed";
  if (std::string home = envOr("HOME"); !home.empty())
    return home + "/.cache/heed";
  return "/tmp/heed-cache-" + std::to_string(::getuid());
}

uint64_t DiskCache::defaultMaxBytes() {
  std::string v = envOr("HEED_CACHE_MAX_BYTES");
  if (!v.empty()) {
    char *end = nullptr;
    unsigned long long n = std::strtoull(v.c_str(), &end, 10);
    if (end && *end == '\0')
      return n;
  }
  return uint64_t(2) << 30;
}

DiskCache::DiskCache(std::string directory, uint64_t maxBytes)
    : dir(std::move(directory)), limit(maxBytes) {}

std::string DiskCache::pathFor(const Digest &key) const {
  return dir + "/v" + std::to_string(kCacheFormatVersion) + "/" + toHex(key) + kSuffix;
}

DiskCache::LoadResult DiskCache::load(const Digest &key, const std::string &request,
                                      Artifact &out, std::string &note) {
  std::string path = pathFor(key), bytes, problem;
  EntryRead read = readEntryFile(path, bytes, problem);
  if (read == EntryRead::Missing)
    return LoadResult::Miss;
  Digest stored{};
  std::string storedRequest;
  if (read == EntryRead::Ok)
    problem = decodeEntry(bytes, stored, storedRequest, out);
  if (problem.empty() && stored != key)
    problem = "the entry was written for another key";
  if (problem.empty() && storedRequest != request)
    problem = "the entry was written for another kernel: its stored request differs from "
              "this one";
  if (!problem.empty()) {
    note = discard(path, problem);
    return LoadResult::Rejected;
  }
  ::utimensat(AT_FDCWD, path.c_str(), nullptr, AT_SYMLINK_NOFOLLOW); // mark as recently used
  return LoadResult::Hit;
}

bool DiskCache::store(const Digest &key, const std::string &request, const Artifact &artifact,
                      std::string &error) {
  std::string final = pathFor(key);
  std::string folder = final.substr(0, final.rfind('/'));
  if (!makeDirectories(folder)) {
    error = "cannot create the cache directory " + folder + ": " + std::strerror(errno);
    return false;
  }
  static std::atomic<unsigned> counter{0};
  std::string temp = final + ".tmp." + std::to_string(::getpid()) + "." +
                     std::to_string(counter.fetch_add(1)) + "." +
                     std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    error = "cannot write to the cache directory " + folder + ": " + std::strerror(errno);
    return false;
  }
  std::string bytes = encodeEntry(key, request, artifact);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      error = "cannot write cache entry " + temp + ": " +
              std::strerror(n < 0 ? errno : ENOSPC);
      ::close(fd);
      ::unlink(temp.c_str());
      return false;
    }
    done += size_t(n);
  }
  if (::close(fd) != 0) {
    error = "cannot write cache entry " + temp + ": " + std::strerror(errno);
    ::unlink(temp.c_str());
    return false;
  }
  // rename() is atomic: a reader sees the old entry, no entry, or this one,
  // never a partial file. Concurrent writers of one key each rename a complete
  // file; the last one wins.
  if (::rename(temp.c_str(), final.c_str()) != 0) {
    error = "cannot move cache entry into place at " + final + ": " + std::strerror(errno);
    ::unlink(temp.c_str());
    return false;
  }
  evict();
  return true;
}

std::vector<DiskCache::Entry> DiskCache::list(bool verify) const {
  std::vector<Entry> out;
  std::string folder = dir + "/v" + std::to_string(kCacheFormatVersion);
  DIR *d = ::opendir(folder.c_str());
  if (!d)
    return out;
  while (dirent *e = ::readdir(d)) {
    std::string name = e->d_name;
    if (!endsWith(name, kSuffix))
      continue;
    Entry entry;
    entry.path = folder + "/" + name;
    entry.key = name.substr(0, name.size() - std::strlen(kSuffix));
    struct stat st;
    if (::lstat(entry.path.c_str(), &st) != 0)
      continue;
    entry.bytes = S_ISREG(st.st_mode) ? uint64_t(st.st_size) : 0;
    entry.lastUse = int64_t(st.st_mtime);
    if (verify) {
      std::string bytes, request;
      Digest key{};
      Artifact a;
      if (readEntryFile(entry.path, bytes, entry.problem) != EntryRead::Ok) {
        if (entry.problem.empty())
          entry.problem = "removed while listing";
      } else if (std::string p = decodeEntry(bytes, key, request, a); !p.empty()) {
        entry.problem = p;
      } else if (toHex(key) != entry.key) {
        entry.problem = "written for another key";
      } else {
        for (const ArtifactEntry &ae : a.entries) {
          entry.kernel = ae.info.name;
          entry.targets += (entry.targets.empty() ? "" : " ") + ae.target;
          if (const auto &g = ae.info.gpu) // e.g. "cuda:sm_90 (cubin, matrix cores)"
            entry.targets += " (" + g->format + (g->matrixCores ? ", matrix cores)" : ", SIMT)");
        }
      }
    }
    out.push_back(entry);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(),
            [](const Entry &a, const Entry &b) { return a.lastUse > b.lastUse; });
  return out;
}

unsigned DiskCache::clear() {
  unsigned removed = 0;
  std::string folder = dir + "/v" + std::to_string(kCacheFormatVersion);
  DIR *d = ::opendir(folder.c_str());
  if (!d)
    return 0;
  while (dirent *e = ::readdir(d)) {
    std::string name = e->d_name;
    if (endsWith(name, kSuffix) || name.find(std::string(kSuffix) + ".tmp.") != std::string::npos)
      removed += ::unlink((folder + "/" + name).c_str()) == 0 && endsWith(name, kSuffix);
  }
  ::closedir(d);
  return removed;
}

void DiskCache::evict() {
  std::vector<Entry> entries = list(/*verify=*/false);
  uint64_t total = 0;
  for (const Entry &e : entries)
    total += e.bytes;
  // Most recently used first: drop from the back.
  while (total > limit && !entries.empty()) {
    const Entry &victim = entries.back();
    if (::unlink(victim.path.c_str()) == 0)
      total -= victim.bytes;
    entries.pop_back();
  }
}

} // namespace heed
