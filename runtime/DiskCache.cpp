// The on-disk kernel cache (see DiskCache.h).
#include "heed/Runtime/DiskCache.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace heed {

namespace {

constexpr const char *kSuffix = ".heedk";

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

} // namespace

bool readFile(const std::string &path, std::string &out, std::string &error) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = "cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  out.clear();
  char buffer[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      error = "cannot read " + path + ": " + std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0)
      break;
    out.append(buffer, size_t(n));
  }
  ::close(fd);
  return true;
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
  return dir + "/v" + std::to_string(kArtifactVersion) + "/" + toHex(key) + kSuffix;
}

DiskCache::LoadResult DiskCache::load(const Digest &key, Artifact &out, std::string &note) {
  std::string path = pathFor(key), bytes, error;
  if (!readFile(path, bytes, error))
    return LoadResult::Miss;
  std::string problem = out.parse(bytes);
  if (problem.empty() && out.key != key)
    problem = "the entry was written for another key";
  if (!problem.empty()) {
    ::unlink(path.c_str());
    note = "cache entry " + path + " was rejected (" + problem + "); removed, rebuilding";
    return LoadResult::Rejected;
  }
  ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0); // mark as recently used
  return LoadResult::Hit;
}

bool DiskCache::store(const Digest &key, const Artifact &artifact, std::string &error) {
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
  std::string bytes = artifact.serialize();
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
  std::string folder = dir + "/v" + std::to_string(kArtifactVersion);
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
    if (::stat(entry.path.c_str(), &st) != 0)
      continue;
    entry.bytes = uint64_t(st.st_size);
    entry.lastUse = int64_t(st.st_mtime);
    if (verify) {
      std::string bytes, error;
      Artifact a;
      if (!readFile(entry.path, bytes, error)) {
        entry.problem = error;
      } else if (std::string p = a.parse(bytes); !p.empty()) {
        entry.problem = p;
      } else if (toHex(a.key) != entry.key) {
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
  std::string folder = dir + "/v" + std::to_string(kArtifactVersion);
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
