// Ahead-of-time export: an artifact becomes a package a deployed program
// builds against with no MLIR or LLVM (see docs/runtime.md):
//
//   dir/<name>.heedk              the artifact (every target's binary)
//   dir/<name>.h, dir/<name>.c    typed load and launch functions, the
//                                 artifact embedded as bytes
//   dir/include/heed/heed.h       the C API
//   dir/lib/libheed_runtime.a     loading and launching
//   dir/heed_aotConfig.cmake      find_package(heed_aot): heed::runtime and
//                                 one heed::<name> per exported kernel
#ifndef HEED_COMPILER_EXPORT_H
#define HEED_COMPILER_EXPORT_H

#include "heed/Runtime/Artifact.h"

#include "llvm/Support/Error.h"

#include <string>

namespace heed {

struct AotPackageOptions {
  std::string runtimeArchive; ///< libheed_runtime.a to copy
  std::string header;         ///< heed.h to copy
  std::string source;         ///< what the kernel was compiled from (for comments)
};

/// The C header with the typed launch function for `info`'s kernel.
std::string aotHeader(const KernelInfo &info, const std::string &source);
/// The C source: the artifact's bytes and the typed functions.
std::string aotSource(const KernelInfo &info, const std::string &artifactBytes);

/// Writes the package for `artifact` into `dir` (created if missing).
llvm::Error writeAotPackage(const Artifact &artifact, const std::string &dir,
                            const AotPackageOptions &options);

} // namespace heed

#endif
