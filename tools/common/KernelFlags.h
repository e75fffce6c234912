// The command-line options heed-run and heed-compile share: the kernel
// configuration both spell the same way (--dtype, --layout, --head-dim,
// --head-dim-v, --scale, --block-q, --block-kv, --no-analysis,
// --no-patch-tiling), defined once, and their translation to a KernelConfig.
// Each tool adds its own options (--lse, the serving flags, ...) on top.
#ifndef HEED_TOOLS_COMMON_KERNELFLAGS_H
#define HEED_TOOLS_COMMON_KERNELFLAGS_H

#include "heed/Compiler/Compiler.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/Error.h"

#include <string>

namespace heed::tools {

/// The category the shared options are listed under (--help).
extern llvm::cl::OptionCategory kernelCategory;

extern llvm::cl::opt<std::string> dtype, layout;
extern llvm::cl::opt<int64_t> headDim, headDimV, blockQ, blockKV;
extern llvm::cl::opt<double> scale;
extern llvm::cl::opt<bool> noAnalysis, noPatchTiling;

/// The configuration the shared options ask for (the rest at KernelConfig's
/// defaults), or what is malformed: an unknown --dtype or --layout.
llvm::Expected<KernelConfig> kernelConfigFromFlags();

} // namespace heed::tools

#endif
