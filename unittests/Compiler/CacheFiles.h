// Files for the kernel cache tests: a temporary cache directory, raw entry
// bytes read and written, the files of a cache directory.
#ifndef HEED_UNITTESTS_COMPILER_CACHEFILES_H
#define HEED_UNITTESTS_COMPILER_CACHEFILES_H

#include "heed/Runtime/DiskCache.h"

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <dirent.h>
#include <unistd.h>

namespace heed::test {

/// A fresh directory, removed with everything in it at the end.
struct TempDir {
  std::string path;
  TempDir() {
    char name[] = "/tmp/heed-cache-test-XXXXXX";
    path = mkdtemp(name);
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

inline std::string readBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void writeBytes(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

/// Every file under dir/v<format> (entries and anything stray), by name.
inline std::vector<std::string> filesIn(const std::string &dir) {
  std::vector<std::string> out;
  if (DIR *d = opendir((dir + "/v" + std::to_string(kCacheFormatVersion)).c_str())) {
    while (dirent *e = readdir(d))
      if (e->d_name[0] != '.')
        out.push_back(e->d_name);
    closedir(d);
  }
  return out;
}

} // namespace heed::test

#endif // HEED_UNITTESTS_COMPILER_CACHEFILES_H
