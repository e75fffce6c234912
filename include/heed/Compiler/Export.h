// Ahead-of-time export: a variant compiled for CPU and GPU targets into one
// artifact, which becomes a package a deployed program builds against with
// no MLIR or LLVM (see docs/runtime.md):
//
//   dir/<name>.heedk              the artifact (every target's binary)
//   dir/<name>.h, dir/<name>.c    typed load and launch functions (host
//                                 pointers; device pointers and a stream when
//                                 there are GPU entries), the artifact
//                                 embedded as bytes
//   dir/include/heed/heed.h       the C API
//   dir/lib/libheed_runtime.a     loading and launching
//   dir/heed_aotConfig.cmake      find_package(heed_aot): heed::runtime and
//                                 one heed::<name> per exported kernel
#ifndef HEED_COMPILER_EXPORT_H
#define HEED_COMPILER_EXPORT_H

#include "heed/Compiler/Compiler.h"
#include "heed/Compiler/GPU.h"
#include "heed/Runtime/Artifact.h"

#include "llvm/Support/Error.h"

#include <string>

namespace heed {

/// How GPU targets are built.
struct ExportOptions {
  GPUKernelKind kind = GPUKernelKind::Auto; ///< matrix cores where they apply, or forced
  int64_t mfma = 32;                        ///< AMD: the MFMA shape
};

/// `variant` compiled for every target of `targets` (comma-separated), in
/// that order, into one artifact:
///  - CPU targets as compileArtifact takes them ("cpu", "cpu:native",
///    "cpu:<LLVM CPU>");
///  - NVIDIA chips "sm_80", "sm_90", "sm_90a", ... (also "cuda:sm_90"): a
///    "cuda:<chip>" cubin when ptxas is found (findPtxas; HEED_PTXAS=none
///    skips it), and the PTX of the newest chip listed (of every chip without
///    ptxas), which the driver compiles at load for the chip it finds: an
///    sm_90 device runs an artifact built for sm_80 from its PTX;
///  - AMD chips "gfx90a", "gfx942", "gfx950" (also "hip:gfx942"): an HSACO
///    (needs ld.lld).
/// The GPU targets compile in parallel, beside the CPU ones.
llvm::Expected<Artifact> compileExportArtifact(const spec::Variant &variant,
                                               const KernelConfig &config,
                                               const std::string &targets,
                                               const ExportOptions &options = {});

struct AotPackageOptions {
  std::string runtimeArchive; ///< libheed_runtime.a to copy
  std::string header;         ///< heed.h to copy
  std::string source;         ///< what the kernel was compiled from (for comments)
};

/// The C header with the typed launch functions for `artifact`'s kernel
/// (heed_<name>_run on host memory; heed_<name>_run_device on device memory
/// and a stream, when the artifact has GPU entries).
std::string aotHeader(const Artifact &artifact, const std::string &source);
/// The C source: the artifact's bytes and the typed functions.
std::string aotSource(const Artifact &artifact, const std::string &artifactBytes);

/// Writes the package for `artifact` into `dir` (created if missing).
llvm::Error writeAotPackage(const Artifact &artifact, const std::string &dir,
                            const AotPackageOptions &options);

} // namespace heed

#endif
