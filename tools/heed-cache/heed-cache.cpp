// heed-cache: inspect and empty the on-disk kernel cache.
//
//   heed-cache list    every entry, most recently used first (verified); GPU
//                      entries show their image, e.g. "cuda:sm_90 (cubin, matrix cores)"
//   heed-cache stats   directory, entry count, bytes, limit
//   heed-cache clear   remove every entry
//
// The directory is $HEED_CACHE_DIR, else $XDG_CACHE_HOME/heed, else
// ~/.cache/heed (what the compiler uses); --dir=PATH overrides it.
#include "heed/Runtime/DiskCache.h"

#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>

namespace {

int usage(FILE *to) {
  std::fprintf(to, "usage: heed-cache [--dir=PATH] list|stats|clear\n"
                   "  list   every entry (key, size, last use, kernel, targets), verified\n"
                   "  stats  directory, entries, bytes in use, size limit\n"
                   "  clear  remove every entry\n");
  return to == stderr ? 2 : 0;
}

std::string humanBytes(uint64_t n) {
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(n);
  int u = 0;
  while (v >= 1024 && u < 4)
    v /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

} // namespace

int main(int argc, char **argv) {
  std::string dir = heed::DiskCache::defaultDirectory(), command;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--dir=", 0) == 0)
      dir = a.substr(6);
    else if (a == "-h" || a == "--help")
      return usage(stdout);
    else if (command.empty() && a[0] != '-')
      command = a;
    else {
      std::fprintf(stderr, "heed-cache: unexpected argument '%s'\n", a.c_str());
      return usage(stderr);
    }
  }
  heed::DiskCache cache(dir, heed::DiskCache::defaultMaxBytes());
  if (command == "list") {
    auto entries = cache.list(/*verify=*/true);
    std::printf("%-16s %10s  %-19s  %-20s %s\n", "key", "size", "last use", "kernel", "targets");
    for (const auto &e : entries) {
      char when[32];
      std::time_t t = std::time_t(e.lastUse);
      std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
      std::printf("%-16s %10s  %-19s  %-20s %s\n", e.key.substr(0, 16).c_str(),
                  humanBytes(e.bytes).c_str(), when,
                  e.problem.empty() ? e.kernel.c_str() : "(invalid)",
                  e.problem.empty() ? e.targets.c_str() : e.problem.c_str());
    }
    std::printf("%zu entr%s in %s\n", entries.size(), entries.size() == 1 ? "y" : "ies",
                dir.c_str());
    return 0;
  }
  if (command == "stats") {
    auto entries = cache.list(/*verify=*/true);
    uint64_t bytes = 0;
    size_t invalid = 0;
    for (const auto &e : entries) {
      bytes += e.bytes;
      invalid += !e.problem.empty();
    }
    std::printf("directory: %s\nentries:   %zu (%zu invalid)\nbytes:     %llu (%s)\nlimit:     "
                "%llu (%s)\n",
                dir.c_str(), entries.size(), invalid, (unsigned long long)bytes,
                humanBytes(bytes).c_str(), (unsigned long long)cache.maxBytes(),
                humanBytes(cache.maxBytes()).c_str());
    return 0;
  }
  if (command == "clear") {
    unsigned n = cache.clear();
    std::printf("removed %u entr%s from %s\n", n, n == 1 ? "y" : "ies", dir.c_str());
    return 0;
  }
  if (command.empty())
    return usage(stderr);
  std::fprintf(stderr, "heed-cache: unknown command '%s'\n", command.c_str());
  return usage(stderr);
}
