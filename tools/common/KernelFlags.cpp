#include "KernelFlags.h"

#include "heed/Runtime/Tensor.h"

namespace cl = llvm::cl;

namespace heed::tools {

cl::OptionCategory kernelCategory("kernel options (heed-run and heed-compile)");

cl::opt<std::string> dtype("dtype", cl::desc("q/k/v/out storage: f32 | f16 | bf16"),
                           cl::init("f32"), cl::cat(kernelCategory));
cl::opt<std::string> layout("layout", cl::desc("bhsd | bshd"), cl::init("bhsd"),
                            cl::cat(kernelCategory));
cl::opt<int64_t> headDim("head-dim", cl::desc("head dim of q and k"), cl::init(64),
                         cl::cat(kernelCategory));
cl::opt<int64_t> headDimV("head-dim-v", cl::desc("head dim of v (default: --head-dim)"),
                          cl::init(0), cl::cat(kernelCategory));
cl::opt<double> scale("scale", cl::desc("score scale (default 1/sqrt(head-dim))"), cl::init(0),
                      cl::cat(kernelCategory));
cl::opt<int64_t> blockQ("block-q",
                        cl::desc("query rows per work item (vector width; 0: by schedule, 32 "
                                 "for prefill, 16 for patches and packed decode)"),
                        cl::init(0), cl::cat(kernelCategory));
cl::opt<int64_t> blockKV("block-kv", cl::desc("keys per KV block"), cl::init(16),
                         cl::cat(kernelCategory));
cl::opt<bool> noAnalysis("no-analysis",
                         cl::desc("no mask analysis: visit every KV block and evaluate the "
                                  "mask everywhere"),
                         cl::cat(kernelCategory));
cl::opt<bool> noPatchTiling("no-patch-tiling",
                            cl::desc("flat tiles even where the mask sees a 2-D/3-D token grid"),
                            cl::cat(kernelCategory));

llvm::Expected<KernelConfig> kernelConfigFromFlags() {
  KernelConfig config;
  auto fail = [](const std::string &msg) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
  };
  if (!parseDType(dtype, config.dtype))
    return fail("unknown --dtype=" + dtype + " (expected f32, f16 or bf16)");
  if (!parseLayout(layout, config.layout))
    return fail("unknown --layout=" + layout + " (expected bhsd or bshd)");
  config.headDim = headDim;
  config.headDimV = headDimV;
  config.scale = scale;
  config.blockQ = blockQ;
  config.blockKV = blockKV;
  config.analyzeMask = !noAnalysis;
  config.patchTiling = !noPatchTiling;
  return config;
}

} // namespace heed::tools
